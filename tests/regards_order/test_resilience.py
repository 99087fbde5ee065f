"""Crashes, stops and leaks: the real command line in a subprocess, killed or stopped midway."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support import LONG_LIVED_TOKEN, PASSWORD, USER, scenario
from test_cli import CLI, download_args

from regards_order.record import RECORD_FOLDER
from regards_order.simulator import Scenario, Simulator
from regards_order.simulator.content import content_md5

Start = Callable[[Scenario], Simulator]
MiB = 1024 * 1024


def start_cli(args: list[str], api: str, **env: str) -> subprocess.Popen[str]:
    import os

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


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def file_stats(sim: Simulator, file_id: int) -> dict[str, Any]:
    stats: dict[str, Any] = sim.stats()["files"][str(file_id)]
    return stats


def delivered(target: Path) -> list[str]:
    return sorted(p.name for p in target.iterdir() if not p.name.startswith("."))


def test_sigkill_mid_file_then_resume_fetches_the_forgotten_file(
    start_simulator: Start, tmp_path: Path, prefect_api: str
) -> None:
    big = {
        "id": 1,
        "filename": "big.nc",
        "size": 8 * MiB,
        "faults": [{"kind": "stall", "at_byte": 2 * MiB, "seconds": 1.5}],
    }
    sim = start_simulator(
        scenario(
            [{"id": 5, "owner": USER, "files": [big], "generate": [{"count": 3, "size": 1000}]}]
        )
    )
    target = tmp_path / "t"
    process = start_cli(download_args(sim, 5, target, "--concurrency", "1"), prefect_api)
    wait_until(lambda: file_stats(sim, 1)["bytes_written"] >= 2 * MiB, "the big file midway")
    process.kill()
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    # The server noticed the abort: the file left the available list for good.
    wait_until(lambda: sim.state.file_state(1) == "DOWNLOAD_ERROR", "the server to see the abort")
    assert not (target / "big.nc").exists()  # no partial file at the final path
    record = json.loads((target / RECORD_FOLDER / "order-5.json").read_text())
    assert "1" in record["files"]  # ...but the durable record remembers it

    rerun = start_cli(download_args(sim, 5, target, "--json"), prefect_api)
    out, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, err
    report = json.loads(out)
    assert report["ok"] and len(report["files"]) == 4
    assert hashlib.md5((target / "big.nc").read_bytes()).hexdigest() == content_md5(5, 1, 8 * MiB)
    assert file_stats(sim, 1)["completed"] == 1 and file_stats(sim, 1)["aborted"] == 1
    assert delivered(target) == ["big.nc", "file-00000.dat", "file-00001.dat", "file-00002.dat"]


def test_sigterm_stops_cleanly_and_says_what_is_left(
    start_simulator: Start, tmp_path: Path, prefect_api: str
) -> None:
    slow = {
        "id": 1,
        "filename": "slow.nc",
        "size": 6 * MiB,
        "faults": [{"kind": "slow", "bytes_per_second": MiB, "times": 1}],
    }
    sim = start_simulator(
        scenario(
            [{"id": 6, "owner": USER, "files": [slow], "generate": [{"count": 2, "size": 500}]}]
        )
    )
    target = tmp_path / "t"
    process = start_cli(download_args(sim, 6, target, "--json"), prefect_api)
    wait_until(lambda: file_stats(sim, 1)["bytes_written"] >= MiB, "the slow file in flight")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM: stopping cleanly" in err
    report = json.loads(out)
    outcomes = {f["filename"]: f for f in report["files"]}
    assert outcomes["slow.nc"]["outcome"] == "failed"
    assert "stopped" in outcomes["slow.nc"]["error"]
    assert "interrupted" in " ".join(report["problems"])
    assert not list(target.glob("*slow*"))  # the partial was removed, nothing at the final path
    record = json.loads((target / RECORD_FOLDER / "order-6.json").read_text())
    assert "1" in record["files"]
    assert "Traceback" not in err

    rerun = start_cli(download_args(sim, 6, target), prefect_api)
    _, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, err
    digest = hashlib.md5((target / "slow.nc").read_bytes()).hexdigest()
    assert digest == content_md5(6, 1, 6 * MiB)


def test_no_secret_in_anything_a_run_produces(
    start_simulator: Start, tmp_path: Path, prefect_api: str
) -> None:
    files = [{"filename": "flaky.bin", "size": 2000, "faults": [{"kind": "status", "status": 503}]}]
    sim = start_simulator(
        scenario([{"id": 7, "owner": USER, "files": files, "generate": [{"count": 2, "size": 10}]}])
    )
    target = tmp_path / "t"
    debug = {"PREFECT_LOGGING_LEVEL": "DEBUG", "PREFECT_LOGGING_ROOT_LEVEL": "DEBUG"}
    with_password = start_cli(download_args(sim, 7, target, "--json"), prefect_api, **debug)
    out1, err1 = with_password.communicate(timeout=180)
    assert with_password.returncode == 0, err1
    token_run = start_cli(
        ["download", "7", "--host", sim.url, "--project", "test", "--target", str(target)],
        prefect_api,
        REGARDS_TOKEN=LONG_LIVED_TOKEN,
        **debug,
    )
    out2, err2 = token_run.communicate(timeout=180)
    assert token_run.returncode == 0, err2
    assert "DEBUG" in err1  # debug logging really was on

    from prefect.client.orchestration import get_client

    async def everything_in_prefect() -> str:
        async with get_client() as client:
            runs = await client.read_flow_runs()
            artifacts = await client.read_artifacts()
            logs = await client.read_logs()
        return " ".join(
            [str(r.parameters) for r in runs]
            + [str(a.data) + str(a.description) for a in artifacts]
            + [log.message for log in logs]
        )

    record = (target / RECORD_FOLDER / "order-7.json").read_text()
    produced = " ".join([out1, err1, out2, err2, record, asyncio.run(everything_in_prefect())])
    secrets = [PASSWORD, LONG_LIVED_TOKEN, *sim.state.issued_tokens()]
    assert len(secrets) >= 3  # at least one login token was issued
    for secret in secrets:
        assert secret not in produced
