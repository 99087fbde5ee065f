"""Shared fixtures: the simulator over real HTTP, a Prefect API for the whole session.

PREFECT_HOME is pointed at a temporary folder before anything imports Prefect, so the suite
never touches a user's profile or database.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="regards-order-prefect-"))
os.environ.pop("PREFECT_API_URL", None)

import pytest
from pydantic import SecretStr

from regards_order.settings import Connection, DownloadOptions
from regards_order.simulator import Scenario, Simulator

USER = "demo@example.org"
PASSWORD = "demo-password-7f3a"


def scenario(orders: list[dict[str, Any]], **settings: Any) -> Scenario:
    """A scenario with the test user, the given orders and settings."""
    document: dict[str, Any] = {
        "project": "test",
        "users": [{"username": USER, "password": PASSWORD, "tokens": ["long-lived-token-91c2"]}],
        "orders": orders,
    }
    document.update(settings)
    return Scenario.model_validate(document)


@pytest.fixture
def start_simulator() -> Iterator[Callable[[Scenario], Simulator]]:
    """Start simulators on 127.0.0.1 (port 0); each is stopped after the test."""
    started: list[Simulator] = []

    def start(loaded: Scenario) -> Simulator:
        simulator = Simulator(loaded)
        simulator.start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


def connection_for(simulator: Simulator, **overrides: Any) -> Connection:
    """A connection of the test user to `simulator`."""
    values: dict[str, Any] = {
        "host": simulator.url,
        "project": "test",
        "username": USER,
        "password": SecretStr(PASSWORD),
    }
    values.update(overrides)
    return Connection(**values)


#: Fast pacing for tests: no real waiting between polls or retries.
FAST = DownloadOptions(poll_interval=0.05, max_poll_interval=0.2, retry_delay=0.0, retries=3)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """One Prefect API (test harness, own database) for every flow run of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
