"""Running the `regards-order` command line as a user does: a real subprocess, its exit code,
its stdout and stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from regards_order.simulator import Simulator
from tests.helpers.scenarios import LONG_LIVED_TOKEN, PASSWORD, USER

CLI = str(Path(sys.executable).with_name("regards-order"))


def cli(
    *args: str, env: dict[str, str] | None = None, api: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the command line; with `api`, against the session's Prefect API (faster start)."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("REGARDS_")
    }
    environment.pop("PREFECT_API_URL", None)
    if api:
        environment["PREFECT_API_URL"] = api
    environment.update(env or {})
    return subprocess.run(
        [CLI, *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def download_args(sim: Simulator, order_id: int, target: Path, *extra: str) -> list[str]:
    return [
        "download",
        str(order_id),
        "--host",
        sim.url,
        "--project",
        "test",
        "--username",
        USER,
        "--target",
        str(target),
        "--poll-interval",
        "0.05",
        "--max-poll-interval",
        "0.2",
        "--retry-delay",
        "0",
        "--retries",
        "2",
        *extra,
    ]


def assert_no_secret_and_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert PASSWORD not in output
    assert LONG_LIVED_TOKEN not in output
    assert "Traceback" not in output


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def start_cli(args: list[str], api: str, **env: str) -> subprocess.Popen[str]:
    """Start the command line in the background, against the Prefect API `api`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("REGARDS_")}
    environment.update({"PREFECT_API_URL": api, "REGARDS_PASSWORD": PASSWORD, **env})
    return subprocess.Popen(
        [CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=environment,
    )


def file_stats(sim: Simulator, file_id: int) -> dict[str, Any]:
    stats: dict[str, Any] = sim.stats()["files"][str(file_id)]
    return stats


def delivered(target: Path) -> list[str]:
    return sorted(
        p.name for p in target.iterdir() if not p.name.startswith(".") and p.name != "MD5SUMS"
    )
