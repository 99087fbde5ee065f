"""Broken servers and failing targets: clear, specific failures; nothing delivered unverified."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from regards_order.report import Outcome
from regards_order.simulator import Scenario, Simulator
from regards_order.simulator.content import content_md5
from tests.helpers.flow_runs import run, run_state
from tests.helpers.scenarios import FAST, USER, connection_for, generated, scenario
from tests.helpers.waiting import md5

pytestmark = pytest.mark.usefixtures("prefect_api")

Start = Callable[[Scenario], Simulator]
PATIENT = FAST.model_copy(update={"max_poll_errors": 3})


def fault(endpoint: str, kind: str, times: int | None = None, **more: Any) -> dict[str, Any]:
    return {"endpoint": endpoint, "kind": kind, "times": times, **more}


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ([fault("files", "html")], "answered text/html, not JSON: '<html><body>Request Rejected"),
        (
            [fault("order", "html", status=403)],
            "HTTP 403 access denied (not your order?) (Request Rejected)",
        ),
        ([fault("files", "empty")], "the server answered an empty body"),
        ([fault("order", "malformed_json")], "answered application/json, not JSON"),
        ([fault("files", "bad_metadata")], "the file listing contradicts itself"),
    ],
)
def test_broken_answers_fail_with_a_specific_error(
    start_simulator: Start, tmp_path: Path, faults: list[dict[str, Any]], expected: str
) -> None:
    sim = start_simulator(scenario([generated(1, 2, 100)], faults=faults))
    state = run_state(1, tmp_path, connection_for(sim), PATIENT)
    assert state.is_failed()
    assert expected in state.message
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert "999999" not in sim.stats()["files"]  # the phantom file was never believed


@pytest.mark.parametrize("kind", ["html", "empty", "malformed_json", "bad_metadata"])
def test_a_passing_burst_of_garbage_is_retried(
    start_simulator: Start, tmp_path: Path, kind: str
) -> None:
    sim = start_simulator(scenario([generated(1, 3, 100)], faults=[fault("files", kind, 2)]))
    state, report = run(1, tmp_path, connection_for(sim), PATIENT)
    assert state.is_completed(), state.message
    assert report.counts["downloaded"] == 3


def test_bad_sizes(start_simulator: Start, tmp_path: Path) -> None:
    files = [
        {"filename": "negative.bin", "size": 100, "listed_size": -5},
        {"filename": "unsized.bin", "size": 100, "listed_size": "absent"},
        {"filename": "liar.bin", "size": 100, "listed_size": 99},
    ]
    sim = start_simulator(scenario([{"id": 1, "owner": USER, "files": files}]))
    state, report = run(1, tmp_path, connection_for(sim))
    assert state.is_failed()
    outcomes = {f.filename: f for f in report.files}
    assert "negative size (-5)" in (outcomes["negative.bin"].error or "")
    # Refused, yet read to its end and discarded, for the server to release its suborder.
    negative = sim.stats()["files"]["1"]
    assert negative["requests"] == 1 and negative["completed"] == 1
    # No size announced: verified by the MD5 (and the Content-Length) alone.
    assert outcomes["unsized.bin"].outcome is Outcome.DOWNLOADED
    assert outcomes["unsized.bin"].md5 == content_md5(1, 2, 100)
    # A size that disagrees with the bytes: never delivered.
    assert outcomes["liar.bin"].outcome is Outcome.FAILED
    assert "received 100 bytes, the server's record says 99" in (outcomes["liar.bin"].error or "")
    assert not (tmp_path / "liar.bin").exists() and not (tmp_path / "negative.bin").exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount tiny tmpfs filesystems (root only) and unmount them after the test."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


def test_disk_full_fails_at_once_and_leaves_nothing(
    start_simulator: Start, small_disk: Callable[[str], Path]
) -> None:
    disk = small_disk("size=1m")
    files = [
        {"filename": "big.bin", "size": 3 * 1024 * 1024},
        {"filename": "small.bin", "size": 10},
    ]
    sim = start_simulator(scenario([{"id": 1, "owner": USER, "files": files}]))
    # One at a time: the big file fills the disk, fails, and its partial makes room again.
    one_by_one = FAST.model_copy(update={"concurrency": 1})
    state, report = run(1, disk, connection_for(sim), one_by_one)
    assert state.is_failed()
    big = next(f for f in report.files if f.filename == "big.bin")
    assert big.outcome is Outcome.FAILED and big.attempts == 1  # no retry storm
    assert "No space left on device" in (big.error or "")
    assert sim.stats()["files"]["1"]["requests"] == 1
    assert sorted(p.name for p in disk.iterdir()) == [".regards-order", "MD5SUMS", "small.bin"]
    assert (disk / "MD5SUMS").read_text() == f"{md5(disk / 'small.bin')}  small.bin\n"


def test_read_only_target_is_refused_before_any_download(
    start_simulator: Start, small_disk: Callable[[str], Path]
) -> None:
    disk = small_disk("size=1m,ro")
    sim = start_simulator(scenario([generated(1, 2, 10)]))
    state = run_state(1, disk / "sub", connection_for(sim))
    assert state.is_failed()
    assert "Read-only file system" in state.message
    assert sim.stats()["requests"].get("download", 0) == 0


def test_two_runs_of_one_order_at_once(start_simulator: Start, tmp_path: Path) -> None:
    sim = start_simulator(
        scenario([generated(1, 16, 200_000)], suborder_max_files=4, restore_seconds=0.05)
    )
    connection = connection_for(sim)

    async def both() -> list[Any]:
        from regards_order.flows.download_order import download_order

        runs = [
            download_order(
                order_id=1,
                target=str(tmp_path),
                connection=connection,
                options=FAST,
                return_state=True,
            )
            for _ in range(2)
        ]
        return list(await asyncio.gather(*runs))

    states = asyncio.run(both())
    assert all(state.is_completed() for state in states), [s.message for s in states]
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert names.pop(0) == "MD5SUMS"
    assert names == [f"o1-{i:03d}.bin" for i in range(16)]  # each file once, no duplicate
    for i, name in enumerate(names):
        digest = hashlib.md5((tmp_path / name).read_bytes()).hexdigest()
        assert digest == content_md5(1, i + 1, 200_000)
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name]
    # Whatever each run saw, the record ends up knowing every file.
    again, report = run(1, tmp_path, connection)
    assert again.is_completed() and report.counts == {"downloaded": 0, "skipped": 16, "failed": 0}


def test_order_expiring_soon_is_warned_about(start_simulator: Start, tmp_path: Path) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    sim = start_simulator(scenario([generated(1, 1, 10, expiration_date=soon)]))
    state, report = run(1, tmp_path, connection_for(sim))
    assert state.is_completed()
    assert any("expires at" in warning for warning in report.warnings)
