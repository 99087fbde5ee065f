"""`prefect server start` on 127.0.0.1 for the tests that need a real server (deployments,
workers, events), with the recorder batching every server of the project gets, and the
process helpers it needs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from regards_order.cli.server import SERVER_SETTINGS
from tests.helpers.waiting import free_port, wait_until

PREFECT = Path(sys.executable).with_name("prefect")


@contextlib.contextmanager
def using(api_url: str) -> Iterator[None]:
    """Point this process's Prefect at `api_url` for the block. On leaving, the process-wide
    event and log workers are drained and dropped: they keep the URL they first saw, and
    would otherwise go on sending to this server after it stops (every later test's events
    and logs lost)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield
    finally:
        APILogWorker.drain_all()
        EventsWorker.drain_all()


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
        env.update(SERVER_SETTINGS)
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
        wait_until(self._healthy, f"the Prefect server at {self.url}", timeout=300, every=0.5)

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

        with using(self.api_url), get_client(sync_client=True) as client:
            yield client

    def deployment(self, name: str, flow: str = "download-order") -> Any:
        """The deployment `<flow>/<name>`."""
        with self.client() as client:
            return client.read_deployment_by_name(f"{flow}/{name}")

    def run(self, deployment: str, flow: str = "download-order", **parameters: Any) -> Any:
        """Start a run of `<flow>/<deployment>` through the API, without waiting."""
        from prefect.deployments import run_deployment

        with using(self.api_url):
            return run_deployment(f"{flow}/{deployment}", parameters=parameters, timeout=0)

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

        return wait_until(final, f"flow run {flow_run_id} to end", timeout=timeout, every=0.5)
