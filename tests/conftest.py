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
from regards_order.cli.server import SERVER_SETTINGS

for _name, _value in SERVER_SETTINGS.items():
    os.environ.setdefault(_name, _value)
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
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from regards_order.simulator import Scenario, Simulator
from tests.helpers.targets import DeliveryTarget, make_target
from tests.helpers.wheel import InstalledWheel, install_wheel

# A busy machine makes examples slow, never wrong: no per-example deadline.
settings.register_profile("patient", deadline=None)
settings.load_profile("patient")


@pytest.fixture(scope="session", autouse=True)
def cpu_hogs() -> Iterator[int]:
    """With REGARDS_TEST_CPU_HOGS=N, N busy loops run for the whole session (make test-loaded):
    every test then meets a machine whose cores are already taken."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(int(os.environ.get("REGARDS_TEST_CPU_HOGS") or 0))
    ]
    yield len(hogs)
    for hog in hogs:
        hog.terminate()
        hog.wait()


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


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> InstalledWheel:
    """The wheel built from this checkout, installed alone in a fresh virtual environment."""
    return install_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(params=["local", "memory", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> DeliveryTarget:
    """A fresh, empty target of each kind; S3 ones live in their own bucket on moto."""
    endpoint = request.getfixturevalue("s3_endpoint") if request.param == "s3" else None
    return make_target(request.param, str(tmp_path), endpoint)
