"""Shared fixtures: the simulator over real HTTP, a Prefect API for the whole session.

PREFECT_HOME is pointed at a temporary folder before anything imports Prefect, so the suite
never touches a user's profile or database.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="regards-order-prefect-"))
os.environ.pop("PREFECT_API_URL", None)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# moto's S3 accepts any credentials; never let a test reach real AWS with real ones.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_PROFILE", None)

import logging
from pathlib import Path

import pytest
from targets import DeliveryTarget, make_target

from regards_order.simulator import Scenario, Simulator


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


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One Prefect API (test harness, own database) for every flow run of the session."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, for the whole session."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(params=["local", "memory", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> DeliveryTarget:
    """A fresh, empty target of each kind; S3 ones live in their own bucket on moto."""
    endpoint = request.getfixturevalue("s3_endpoint") if request.param == "s3" else None
    return make_target(request.param, str(tmp_path), endpoint)
