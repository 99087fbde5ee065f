"""Credentials never travel as parameters: in-process, Secret block, or environment."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from pydantic import SecretStr

from regards_order.errors import ConfigurationError
from regards_order.flows.download_order import download_order
from regards_order.simulator import Scenario, Simulator
from regards_order.tasks.credentials import resolve_credentials
from tests.helpers.scenarios import FAST, LONG_LIVED_TOKEN, PASSWORD, USER, connection_for, scenario

pytestmark = pytest.mark.usefixtures("prefect_api")

Start = Callable[[Scenario], Simulator]


def test_password_from_a_secret_block(
    start_simulator: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REGARDS_PASSWORD", raising=False)
    Secret(value=PASSWORD).save("regards-password-test", overwrite=True)
    sim = start_simulator(scenario([]))
    connection = connection_for(sim, password=None, password_block="regards-password-test")
    resolved = asyncio.run(resolve_credentials(connection))
    assert resolved.password is not None and resolved.password.get_secret_value() == PASSWORD


def test_token_from_the_environment(
    start_simulator: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGARDS_TOKEN", LONG_LIVED_TOKEN)
    sim = start_simulator(scenario([]))
    resolved = asyncio.run(resolve_credentials(connection_for(sim, username=None, password=None)))
    assert resolved.token == SecretStr(LONG_LIVED_TOKEN)


def test_no_credentials_is_a_clear_error(
    start_simulator: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REGARDS_TOKEN", "REGARDS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    sim = start_simulator(scenario([]))
    with pytest.raises(ConfigurationError, match="REGARDS_PASSWORD or REGARDS_TOKEN"):
        asyncio.run(resolve_credentials(connection_for(sim, password=None)))
    with pytest.raises(ConfigurationError, match="no Prefect Secret block named 'missing'"):
        asyncio.run(
            resolve_credentials(connection_for(sim, password=None, password_block="missing"))
        )


def test_flow_run_parameters_hold_no_secret(start_simulator: Start, tmp_path: Path) -> None:
    sim = start_simulator(
        scenario([{"id": 8, "owner": USER, "generate": [{"count": 1, "size": 10}]}])
    )
    state = asyncio.run(
        download_order(
            order_id=8,
            target=str(tmp_path),
            connection=connection_for(sim),
            options=FAST,
            return_state=True,
        )
    )
    assert state.is_completed(), state.message

    async def parameters() -> dict[str, object]:
        async with get_client() as client:
            run = await client.read_flow_run(state.state_details.flow_run_id)
            return run.parameters

    stored = str(asyncio.run(parameters()))
    assert USER in stored  # the parameters are there...
    assert PASSWORD not in stored and "password'" not in stored  # ...but not the password


@pytest.mark.parametrize("source", ["block", "environment"])
def test_a_sites_own_client_secret_is_never_a_parameter(
    start_simulator: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    site_secret = "site-client-secret-3c9e"
    order = {"id": 31, "owner": USER, "generate": [{"count": 2, "size": 100}]}
    sim = start_simulator(scenario([order], client_id="site-client", client_secret=site_secret))
    overrides: dict[str, object] = {"client_id": "site-client"}
    if source == "block":
        Secret(value=site_secret).save("site-client-secret", overwrite=True)
        overrides["client_secret_block"] = "site-client-secret"
        monkeypatch.delenv("REGARDS_CLIENT_SECRET", raising=False)
    else:
        monkeypatch.setenv("REGARDS_CLIENT_SECRET", site_secret)
    state = asyncio.run(
        download_order(
            order_id=31,
            target=str(tmp_path),
            connection=connection_for(sim, **overrides),
            options=FAST,
            return_state=True,
        )
    )
    assert state.is_completed(), state.message
    assert sim.stats()["logins"] >= 1  # the server took the site's client credentials

    async def parameters() -> str:
        async with get_client() as client:
            run = await client.read_flow_run(state.state_details.flow_run_id)
        return str(run.parameters)

    stored = asyncio.run(parameters())
    assert "site-client" in stored and site_secret not in stored
