"""Prefect's embedded default, made cheap and patient.

With no PREFECT_API_URL, Prefect starts a temporary server of its own the first time a flow
needs an API, after the command line has imported Prefect, and gives up after 20 s: on a busy
machine its import alone takes longer. The command line starts that server itself instead, as
its very first step, so that its start overlaps the command line's own imports and checks, and
waits for it as long as the machine needs. The server dies with the command line.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

#: Settings of every Prefect server the project starts (this one, the benchmark's, the
#: tests'): the task-run recorder writes state events in batches of up to 200 within a second,
#: instead of one transaction per event (16.6 ms of server CPU per task run; 2.3 ms so). Its
#: interval is truncated to whole seconds, and 0 makes it spin.
SERVER_SETTINGS = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}

#: How long the temporary server may take to answer, at most (REGARDS_PREFECT_START_TIMEOUT).
START_TIMEOUT_SECONDS = 600.0

#: Who answers the remedy of a server that cannot start.
REMEDY = (
    "start a Prefect server (`prefect server start`) and set "
    "PREFECT_API_URL=http://127.0.0.1:4200/api"
)


class ServerUnavailable(Exception):
    """The temporary Prefect server could not be started."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    """Linux: the server gets SIGTERM when the command line dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TemporaryServer:
    """A Prefect server in a subprocess, for the length of one command."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        environment = {
            **os.environ,
            **SERVER_SETTINGS,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        environment.pop("PREFECT_API_URL", None)
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "--factory",
                "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                "--port", str(self.port), "--log-level", "error", "--lifespan", "on",
            ],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )  # fmt: skip

    @classmethod
    def start(cls) -> TemporaryServer:
        """Start the server and point this process's Prefect at it (before Prefect is
        imported: its settings are read from the environment)."""
        server = cls()
        os.environ["PREFECT_API_URL"] = server.api_url
        return server

    def wait_ready(self, timeout: float | None = None) -> None:
        """Return once the server answers; raise ServerUnavailable if it exits or takes
        longer than `timeout` seconds."""
        limit = timeout or float(os.environ.get("REGARDS_PREFECT_START_TIMEOUT", 0) or 0)
        deadline = time.monotonic() + (limit or START_TIMEOUT_SECONDS)
        while True:
            if self.process.poll() is not None:
                raise ServerUnavailable(
                    f"the temporary Prefect server exited ({self._last_words()}): {REMEDY}"
                )
            if self._healthy():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ServerUnavailable(
                    f"the temporary Prefect server did not answer within "
                    f"{limit or START_TIMEOUT_SECONDS:g} s: {REMEDY}"
                )
            time.sleep(0.1)

    def _healthy(self) -> bool:
        url = f"{self.api_url}/health"
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url, timeout=5) as answer,  # noqa: S310 - our own http URL
        ):
            return bool(answer.status == 200)
        return False

    def _last_words(self) -> str:
        self._log.seek(0)
        lines = [line for line in self._log.read().decode(errors="replace").splitlines() if line]
        return lines[-1].strip()[:200] if lines else f"exit code {self.process.returncode}"

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s), once this process's Prefect
        has sent it the logs and events it still holds: after, it would try for a minute
        to reach a server that is gone, and say so."""
        if "prefect" in sys.modules and self.process.poll() is None:
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=10)
            EventsWorker.drain_all(timeout=10)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
