"""Crashes, stops and leaks: the real command line in a subprocess, killed or stopped midway."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from regards_order.record import RECORD_FOLDER
from regards_order.simulator import Scenario, Simulator
from regards_order.simulator.content import content_md5
from tests.helpers.cli import download_args, file_stats, start_cli
from tests.helpers.scenarios import LONG_LIVED_TOKEN, PASSWORD, USER, scenario
from tests.helpers.targets import DeliveryTarget, make_target
from tests.helpers.waiting import md5, wait_until

Start = Callable[[Scenario], Simulator]
MiB = 1024 * 1024


def big_order(order_id: int, stall: float) -> Scenario:
    """An order of three small files and a 24 MiB one whose first download stalls midway
    (after 12 MiB: on S3 the multipart upload has begun by then)."""
    big = {
        "id": 1,
        "filename": "big.nc",
        "size": 24 * MiB,
        "faults": [{"kind": "stall", "at_byte": 12 * MiB, "seconds": stall}],
    }
    small = [{"count": 3, "size": 1000}]
    return scenario([{"id": order_id, "owner": USER, "files": [big], "generate": small}])


def target_args(target: DeliveryTarget, args: list[str]) -> list[str]:
    args[args.index("--target") + 1] = target.url
    if target.endpoint:
        args += ["--storage-option", f"endpoint_url={target.endpoint}"]
    return args


def writing_midway(target: DeliveryTarget, sim: Simulator) -> bool:
    """The big file is halfway, and its partial (or its multipart upload) is at the target."""
    if file_stats(sim, 1)["bytes_written"] < 12 * MiB:
        return False
    return bool(target.pending_uploads() if target.kind == "s3" else target.leftovers())


@pytest.fixture(params=["local", "s3"])
def cli_target(request: pytest.FixtureRequest, tmp_path: Path) -> DeliveryTarget:
    endpoint = request.getfixturevalue("s3_endpoint") if request.param == "s3" else None
    return make_target(request.param, str(tmp_path), endpoint)


def test_sigkill_mid_file_then_a_rerun_delivers_all_and_leaves_nothing_else(
    start_simulator: Start, cli_target: DeliveryTarget, prefect_api: str
) -> None:
    sim = start_simulator(big_order(5, stall=5.0))
    args = target_args(cli_target, download_args(sim, 5, Path("unused"), "--concurrency", "1"))
    process = start_cli(args, prefect_api)
    wait_until(lambda: writing_midway(cli_target, sim), "the big file midway, partly written")
    process.kill()
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    # The server noticed the abort: the file left the available list for good.
    wait_until(lambda: sim.state.file_state(1) == "DOWNLOAD_ERROR", "the server to see the abort")
    assert "big.nc" not in cli_target.names()  # nothing at the final path
    record = json.loads(cli_target.read(f"{RECORD_FOLDER}/order-5.json"))
    assert "1" in record["files"]  # ...but the durable record remembers it

    rerun = start_cli([*args, "--json"], prefect_api)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    report = json.loads(out)
    assert report["ok"] and len(report["files"]) == 4
    assert md5(cli_target.read("big.nc")) == content_md5(5, 1, 24 * MiB)
    assert file_stats(sim, 1)["completed"] == 1 and file_stats(sim, 1)["aborted"] == 1
    # Only the delivered files and the record: the dead run's partial, its pending upload and
    # its lease are gone, though it died seconds ago.
    names = ["big.nc", "file-00000.dat", "file-00001.dat", "file-00002.dat"]
    assert cli_target.everything() == sorted([*names, "MD5SUMS", f"{RECORD_FOLDER}/order-5.json"])
    assert cli_target.pending_uploads() == []


def test_a_live_runs_partial_is_never_taken_for_a_dead_ones(
    start_simulator: Start, cli_target: DeliveryTarget, prefect_api: str
) -> None:
    sim = start_simulator(big_order(8, stall=600.0))
    args = target_args(cli_target, download_args(sim, 8, Path("unused"), "--concurrency", "1"))
    stalled = start_cli(args, prefect_api)
    try:
        wait_until(lambda: writing_midway(cli_target, sim), "the first run midway, stalled")
        second = start_cli(args, prefect_api)  # the same order, the same target, meanwhile
        _, err = second.communicate(timeout=300)
        assert second.returncode == 0, err
        assert md5(cli_target.read("big.nc")) == content_md5(8, 1, 24 * MiB)
        # The first run still writes: its partial (or upload) is still there.
        assert writing_midway(cli_target, sim), "the second run removed a live run's partial"
    finally:
        stalled.kill()
        stalled.wait(timeout=30)


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
