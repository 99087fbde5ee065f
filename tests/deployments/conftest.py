"""Session fixtures of the deployment tests: a real Prefect server, serve.py, the simulator.

The REGARDS password is in serve.py's environment only, never in a parameter; the simulator
serves one order per test, so that no test sees another's downloads.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from regards_order.simulator import Simulator
from tests.helpers.deployments import ORDER_SCHEDULED, Served, session_scenario
from tests.helpers.prefect_server import PrefectServer
from tests.helpers.scenarios import PASSWORD, USER


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` for the whole session, stopped (process group) at the end."""
    server = PrefectServer(tmp_path_factory.mktemp("prefect-server"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def regards() -> Iterator[Simulator]:
    """The REGARDS simulator of the session, over real HTTP on 127.0.0.1."""
    with Simulator(session_scenario()) as simulator:
        yield simulator


@pytest.fixture(scope="session")
def served(
    prefect_server: PrefectServer, regards: Simulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """serve.py for the whole session, configured as the docs say, password in its env only."""
    folder = tmp_path_factory.mktemp("serve")
    env = prefect_server.client_env(
        REGARDS_HOST=regards.url,
        REGARDS_PROJECT="test",
        REGARDS_USERNAME=USER,
        REGARDS_PASSWORD=PASSWORD,
        REGARDS_SCHEDULED_ORDER_ID=str(ORDER_SCHEDULED),
        REGARDS_SCHEDULED_TARGET=str(folder / "scheduled"),
        REGARDS_UNPACK_ARCHIVES="1",
    )
    serving = Served(prefect_server, env, folder)
    try:
        serving.start()
        yield serving
    finally:
        serving.stop()
