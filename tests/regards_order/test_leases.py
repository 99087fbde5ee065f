"""Dead runs' leftovers go at once, live runs' stay: leases on a local target, with real
processes standing for the other runs (one alive, one that has exited)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from regards_order.leases import (
    LEASE_FOLDER,
    LEASE_TTL_SECONDS,
    Lease,
    _process_started,
    claim_target,
)
from regards_order.record import RECORD_FOLDER
from regards_order.transfer import PARTIAL_SUFFIX, Target, open_target


@pytest.fixture
def target(tmp_path: Path) -> Target:
    destination = open_target(str(tmp_path / "t"))
    destination.check()
    return destination


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.terminate()
    process.wait()


def exited_pid() -> tuple[int, str | None]:
    process = subprocess.Popen(["sleep", "0"])
    started = _process_started(process.pid)
    process.wait()
    return process.pid, started


def lease_of(target: Target, run_id: str, pid: int, started: str | None, host: str) -> Path:
    from regards_order.leases import _boot_id

    lease = Lease(run_id=run_id, host=host, boot_id=_boot_id(), pid=pid, pid_started=started)
    path = Path(target.path(f"{LEASE_FOLDER}/{run_id}.json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lease.model_dump_json())
    return path


def partial_of(target: Target, run_id: str, name: str = "data.nc") -> Path:
    path = Path(target.path(f".{name}.run-{run_id}.0badc0de{PARTIAL_SUFFIX}"))
    path.write_bytes(b"half a file")
    return path


def test_a_dead_runs_partials_and_lease_go_a_live_ones_stay(
    target: Target, other_process: subprocess.Popen[bytes]
) -> None:
    import socket

    host = socket.gethostname()
    dead_pid, dead_started = exited_pid()
    dead_lease = lease_of(target, "deadbeef0001", dead_pid, dead_started, host)
    live_lease = lease_of(
        target, "a1fe00000001", other_process.pid, _process_started(other_process.pid), host
    )
    dead_partial = partial_of(target, "deadbeef0001")
    live_partial = partial_of(target, "a1fe00000001", "other.nc")
    record_partial = Path(target.path(f"{RECORD_FOLDER}/order-1.json.run-deadbeef0001.1234"))
    record_partial = record_partial.with_name(record_partial.name + PARTIAL_SUFFIX)
    record_partial.write_bytes(b"{")
    lease, removed = claim_target(target)
    assert removed == 2
    assert not dead_partial.exists() and not record_partial.exists() and not dead_lease.exists()
    assert live_partial.exists() and live_lease.exists()
    lease.release()
    assert not Path(lease.path).exists()


def test_a_reused_pid_does_not_keep_a_dead_run_alive(target: Target) -> None:
    import socket

    # The pid is this very process's, but the start time recorded is another process's.
    lease_of(target, "deadbeef0002", os.getpid(), "1", socket.gethostname())
    partial = partial_of(target, "deadbeef0002")
    claim_target(target)[0].release()
    assert not partial.exists()


def test_another_machines_run_is_alive_until_its_lease_is_stale(target: Target) -> None:
    path = lease_of(target, "e15e00000001", 1, "1", "another-host")
    partial = partial_of(target, "e15e00000001")
    claim_target(target)[0].release()
    assert partial.exists() and path.exists()  # renewed just now: alive
    old = time.time() - LEASE_TTL_SECONDS - 5
    os.utime(path, (old, old))
    claim_target(target)[0].release()
    assert not partial.exists() and not path.exists()


def test_a_partial_without_a_run_id_goes_only_once_stale(target: Target) -> None:
    legacy = Path(target.path(f".data.nc.0badc0de{PARTIAL_SUFFIX}"))
    legacy.write_bytes(b"x")
    claim_target(target)[0].release()
    assert legacy.exists()
    old = time.time() - 3600
    os.utime(legacy, (old, old))
    claim_target(target)[0].release()
    assert not legacy.exists()


def test_after_a_run_only_the_record_folder_remains(target: Target) -> None:
    lease, _ = claim_target(target)
    lease.release()
    assert not Path(target.path(LEASE_FOLDER)).exists()
