"""Which runs are writing to a target now, so that a dead run's leftovers are removed at once.

A run writes a lease, `<target>/.regards-order/runs/<run id>.json`, when it starts, renews it
while it goes and removes it when it ends; its partial files carry its run id in their names.
A lease is alive when it names a process of this machine that still exists (same host and
boot, same pid and process start time), or, for a run on another machine, when it was renewed
less than `LEASE_TTL_SECONDS` ago. So a run killed with -9 is known dead at once by any later
run on its machine, and after the TTL elsewhere; two live runs never take each other's
leftovers for a dead run's.

S3 multipart uploads carry no run id: a run claims the key of each upload it may leave
pending (transfer.write_verified), and a pending upload that no live run claims is a dead
run's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from pathlib import Path

from pydantic import BaseModel, ValidationError

from regards_order.record import RECORD_FOLDER
from regards_order.transfer import Target, modified_at, write_small

LEASE_FOLDER = f"{RECORD_FOLDER}/runs"

#: A lease of another machine not renewed for this long belongs to a run that died.
LEASE_TTL_SECONDS = 180.0

#: How often a live run renews its lease.
LEASE_RENEW_SECONDS = 30.0


class Lease(BaseModel):
    """Who holds a run's lease, and since when."""

    run_id: str
    host: str
    boot_id: str | None
    pid: int
    pid_started: str | None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_started(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


def _this_process() -> Lease:
    pid = os.getpid()
    return Lease(
        run_id=secrets.token_hex(6),
        host=socket.gethostname(),
        boot_id=_boot_id(),
        pid=pid,
        pid_started=_process_started(pid),
    )


class RunLease:
    """This run's lease on a target."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.lease = _this_process()
        self.path = target.path(f"{LEASE_FOLDER}/{self.lease.run_id}.json")
        self._renewed_at = float("-inf")

    @property
    def run_id(self) -> str:
        """The id this run's partial files carry."""
        return self.lease.run_id

    def acquire(self) -> None:
        """Write the lease: this run writes to the target from now on."""
        self._write()

    def renew(self, now: float) -> None:
        """Rewrite the lease if it was last written `LEASE_RENEW_SECONDS` before `now`
        (a monotonic clock)."""
        if now - self._renewed_at >= LEASE_RENEW_SECONDS:
            self._write()
            self._renewed_at = now

    def release(self) -> None:
        """Remove the lease (and the folder of leases once empty): this run is over."""
        with contextlib.suppress(OSError):
            self.target.fs.rm(self.path)
        if not self.target.writes_objects:
            with contextlib.suppress(OSError):
                self.target.fs.rmdir(self.target.path(LEASE_FOLDER))  # only if empty

    def _write(self) -> None:
        write_small(self.target, self.path, self.lease.model_dump_json().encode())

    def live_runs(self) -> list[Lease]:
        """The leases of the runs writing to the target now, this one among them; the leases
        of dead runs are removed on the way."""
        now = modified_at(self.target, self.path)  # the target's clock, this very moment
        live = []
        for path in _lease_files(self.target):
            lease = _read(self.target, path)
            if lease is not None and self._alive(lease, path, now):
                live.append(lease)
            elif lease is None or lease.run_id != self.run_id:
                with contextlib.suppress(OSError):
                    self.target.fs.rm(path)
        return live

    def _alive(self, lease: Lease, path: str, now: float | None) -> bool:
        if lease.run_id == self.run_id:
            return True
        mine = self.lease
        if lease.host == mine.host and lease.boot_id is not None and lease.boot_id == mine.boot_id:
            return _process_started(lease.pid) == lease.pid_started
        renewed = modified_at(self.target, path)
        return now is None or renewed is None or now - renewed < LEASE_TTL_SECONDS


def _lease_files(target: Target) -> list[str]:
    try:
        return [str(p) for p in target.fs.ls(target.path(LEASE_FOLDER), detail=False)]
    except FileNotFoundError:
        return []


def _read(target: Target, path: str) -> Lease | None:
    try:
        return Lease.model_validate_json(target.fs.cat_file(path))
    except (OSError, ValueError, ValidationError):
        return None


def claim_target(target: Target) -> tuple[RunLease, int]:
    """Take a lease on `target` for this run and remove what dead runs left there (partial
    files, pending uploads, leases); return the lease and how many leftovers went."""
    lease = RunLease(target)
    lease.acquire()
    live = lease.live_runs()
    ids = {other.run_id for other in live}
    # On S3, the root's pending uploads cover every folder; elsewhere each folder has partials.
    folders = [""] if target.writes_objects else ["", RECORD_FOLDER, LEASE_FOLDER]
    removed = sum(
        target.remove_leftovers(target.path(folder) if folder else target.root, ids)
        for folder in folders
    )
    return lease, removed
