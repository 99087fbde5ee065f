"""What the deployment tests share: the Prefect server, the serve script, the scenario, checks.

`prefect server start` runs on a free port of 127.0.0.1 with its own PREFECT_HOME, in its own
process group; `deployments/serve.py` runs as a subprocess pointed at it. The tests talk to
that server through `PrefectServer.client()`, never through the session's test harness.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from support import PASSWORD, USER, scenario

from regards_order.simulator import Scenario, Simulator
from regards_order.simulator.content import content_md5
from regards_order.transfer import PARTIAL_SUFFIX

REPO = Path(__file__).resolve().parents[2]
SERVE_SCRIPT = REPO / "deployments" / "serve.py"
PREFECT = Path(sys.executable).with_name("prefect")

#: A second REGARDS user whose password only a Prefect Secret block holds.
OPS_USER = "ops@example.org"
OPS_PASSWORD = "ops-password-5d1e"

#: One order per test (the simulator forgets a file once it is downloaded).
ORDER_SERVE, ORDER_UI, ORDER_OVERLAP, ORDER_SECRET, ORDER_WORKER = 101, 102, 103, 104, 105
#: An order of slow files for the scheduled deployment's concurrency limit.
ORDER_LIMITED = 106
#: The scheduled deployment's order: never run by the tests (its schedule is read back).
ORDER_SCHEDULED = 999
#: An order the simulator does not know.
ORDER_UNKNOWN = 424242

#: Fast pacing for runs started by the tests (the UI run keeps the flow's defaults).
FAST_OPTIONS = {"poll_interval": 0.2, "max_poll_interval": 1.0, "retry_delay": 0.2}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def stop_group(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM the process group of `process`, then SIGKILL what is left after `grace` s."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived their parent
    process.wait()


def start_process(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own process group, output to `log`."""
    with log.open("ab") as output:
        return subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )


def tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class PrefectServer:
    """`prefect server start` on 127.0.0.1, and what the tests need to talk to it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        self.log = home / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def client_env(self, **extra: str) -> dict[str, str]:
        """The environment of a process that uses this server as its API (and nothing else)."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PREFECT_", "REGARDS_"))
        }
        env.update(
            PREFECT_API_URL=self.api_url,
            PREFECT_HOME=str(self.home / "client"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_RUNNER_POLL_FREQUENCY="1",
            PREFECT_WORKER_QUERY_SECONDS="1",
            PREFECT_LOGGING_LEVEL="INFO",
        )
        env.update(extra)
        return env

    def start(self) -> None:
        env = self.client_env(
            PREFECT_HOME=str(self.home / "server"),
            PREFECT_SERVER_API_HOST="127.0.0.1",
            PREFECT_SERVER_API_PORT=str(self.port),
            PREFECT_UI_API_URL=self.api_url,  # where the browser's UI finds the API
        )
        del env["PREFECT_API_URL"]
        argv = [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = start_process(argv, env, self.log, self.home)
        wait_until(self._healthy, 120, f"the Prefect server at {self.url}\n{tail(self.log)}", 0.5)

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"prefect server start exited:\n{tail(self.log)}")
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A synchronous Prefect client of this server (not of the session's test harness)."""
        from prefect import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with (
            temporary_settings(updates={PREFECT_API_URL: self.api_url}),
            get_client(sync_client=True) as client,
        ):
            yield client

    def deployment(self, name: str) -> Any:
        """The deployment `download-order/<name>`."""
        with self.client() as client:
            return client.read_deployment_by_name(f"download-order/{name}")

    def run(self, deployment: str, **parameters: Any) -> Any:
        """Start a run of `deployment` through the API (`run_deployment`), without waiting."""
        from prefect.deployments import run_deployment
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            return run_deployment(f"download-order/{deployment}", parameters=parameters, timeout=0)

    def runs_of(self, deployment: str, **parameters: Any) -> list[UUID]:
        """Ids of the runs of `deployment` whose parameters include `parameters`."""
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        found = self.deployment(deployment)
        with self.client() as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id]))
            )
        return [
            run.id
            for run in runs
            if all(run.parameters.get(key) == value for key, value in parameters.items())
        ]

    def flow_run(self, flow_run_id: UUID | str) -> Any:
        with self.client() as client:
            return client.read_flow_run(UUID(str(flow_run_id)))

    def wait_final(self, flow_run_id: UUID | str, timeout: float = 90) -> Any:
        """The flow run once its state is final (Completed, Failed, Crashed, Cancelled)."""

        def final() -> Any:
            run = self.flow_run(flow_run_id)
            return run if run.state is not None and run.state.is_final() else None

        return wait_until(final, timeout, f"flow run {flow_run_id} to end", 0.5)


class Served:
    """`deployments/serve.py` in a subprocess: the deployments and their runner."""

    def __init__(self, server: PrefectServer, env: dict[str, str], folder: Path) -> None:
        self.server = server
        self.env = env
        self.folder = folder
        self.log = folder / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self) -> None:
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        argv = [sys.executable, str(SERVE_SCRIPT)]
        self.process = start_process(argv, self.env, self.log, self.folder)
        wait_until(self._serving, 90, f"serve.py to serve its deployments\n{tail(self.log)}", 0.5)

    def _serving(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"serve.py exited with {self.process.returncode}:\n{tail(self.log)}")
        with self.log.open("rb") as log:
            log.seek(self._log_start)
            # The runner prints this once every deployment is applied and it polls for runs.
            return b"Your deployments are being served" in log.read()

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)
            self.process = None

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """Stop serving for the duration of the block (its runner would race a worker)."""
        self.stop()
        try:
            yield
        finally:
            self.start()


def session_scenario() -> Scenario:
    """One order per test; the test user's password is in serve.py's environment, the ops
    user's only in a Secret block."""
    slow = [{"kind": "slow", "bytes_per_second": 96_000, "times": None}]
    overlap_files = [
        {"filename": f"slow-{i}.bin", "size": 128_000, "faults": slow} for i in range(8)
    ]

    def generated(order_id: int, count: int, owner: str = USER) -> dict[str, Any]:
        name = f"o{order_id}-{{i:02d}}.bin"
        return {
            "id": order_id,
            "owner": owner,
            "generate": [{"count": count, "size": 40_000, "name": name}],
        }

    return scenario(
        [
            generated(ORDER_SERVE, 5),
            generated(ORDER_UI, 3),
            {"id": ORDER_OVERLAP, "owner": USER, "files": overlap_files},
            generated(ORDER_SECRET, 3, owner=OPS_USER),
            generated(ORDER_WORKER, 4),
            {"id": ORDER_LIMITED, "owner": USER, "files": overlap_files[:4]},
        ],
        users=[
            {"username": USER, "password": PASSWORD},
            {"username": OPS_USER, "password": OPS_PASSWORD},
        ],
        suborder_max_files=4,
        # Every order restores at once: no test waits for another test's order to be fetched.
        max_active_suborders=100,
    )


def expected_files(simulator: Simulator, order_id: int) -> dict[str, str]:
    """File name -> MD5 of every file of `order_id`, as the simulator generates them."""
    files = simulator.scenario.resolve()[order_id]
    return {f.filename: content_md5(order_id, f.id, f.size) for f in files}


def delivered_files(folder: Path) -> dict[str, str]:
    """File name -> MD5 of every file delivered to `folder` (the record folder aside)."""
    return {
        path.name: hashlib.md5(path.read_bytes()).hexdigest()
        for path in folder.iterdir()
        if path.is_file()
    }


def assert_delivered(simulator: Simulator, order_id: int, folder: Path) -> None:
    """Every file of the order is in `folder` with its MD5, nothing else, nothing partial."""
    assert delivered_files(folder) == expected_files(simulator, order_id)
    assert not [p for p in folder.rglob("*") if p.name.endswith(PARTIAL_SUFFIX)]
