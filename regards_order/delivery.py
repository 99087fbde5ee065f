"""The bookkeeping of one order's delivery: known files, queue, files in flight, outcomes.

Files are tracked by key (id, or URL where the server gives no id), because the server's list
of available files shrinks while we download: a file seen once is never lost, a file listed
twice is transferred once.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from regards_order.client import RegardsClient
from regards_order.errors import InvalidFileRecord, RegardsOrderError
from regards_order.models import OrderFile
from regards_order.paths import NamePlanner
from regards_order.record import DeliveryRecord
from regards_order.report import FileOutcome, OrderReport, Outcome
from regards_order.stopping import check_stop
from regards_order.transfer import Target, is_verified, write_verified


def fetch_file(
    client: RegardsClient,
    target: Target,
    file: OrderFile,
    name: str,
    *,
    attempts: int = 1,
    refetch: bool = False,
    listed: bool = False,
) -> FileOutcome:
    """Deliver one file under `name`: skipped if already there and verified, else downloaded;
    always downloaded with `refetch` (skipped before, the server still waits for it).

    A file whose record cannot be verified against is never delivered. If the server `listed`
    it in this run, its body is still read to the end and discarded: the server keeps the
    file's suborder, and the user's next ones, waiting until it is downloaded.

    Raises a RegardsOrderError when the file cannot be delivered this time.
    """
    check_stop()
    problem = file.verification_problem()
    if problem is not None:
        if listed:
            _read_and_discard(client, file)
        raise InvalidFileRecord(problem)
    assert file.checksum is not None
    path = target.path(name)
    location = target.url(path)
    if not refetch and is_verified(target, path, file.checksum, file.size):
        return FileOutcome.for_file(
            file, target=location, outcome=Outcome.SKIPPED, attempts=attempts, md5=file.checksum
        )
    with client.open_file(file) as download:
        expected_size = file.size if file.size is not None else download.size
        written = write_verified(
            target, path, download.chunks(), md5=file.checksum, size=expected_size
        )
    return FileOutcome.for_file(
        file,
        target=location,
        outcome=Outcome.DOWNLOADED,
        attempts=attempts,
        size=written.size,
        md5=written.md5,
    )


def _read_and_discard(client: RegardsClient, file: OrderFile) -> None:
    """Download `file` without keeping a byte, so that the server counts it as downloaded;
    best effort: the file has failed whatever happens here."""
    with contextlib.suppress(RegardsOrderError), client.open_file(file) as download:
        for _ in download.chunks():
            check_stop()


class Transfer(NamedTuple):
    """A file to transfer, as Delivery.take gives it."""

    file: OrderFile
    name: str  # under the target
    refetch: bool  # skipped earlier, yet the server still lists it: download it even if there
    listed: bool  # the server listed it in this run: it waits for the file to be downloaded


class Delivery:
    """What is known of one order's files during one run."""

    def __init__(self, record: DeliveryRecord) -> None:
        self.record = record
        entries = record.entries
        self._names = NamePlanner({key: entry.name for key, entry in entries.items()})
        self._files: dict[str, OrderFile] = {key: entry.file for key, entry in entries.items()}
        # Every file an earlier run saw is checked again: skipped if verified, fetched if not.
        self._queue: deque[str] = deque(entries)
        self._in_flight: set[str] = set()
        self._outcomes: dict[str, FileOutcome] = {}
        self._refetch: set[str] = set()
        self._listed: set[str] = set()
        # Files that failed on what may pass: when each may be tried again while the order runs.
        self._retry_at: dict[str, float] = {}

    def discover(
        self, files: Iterable[OrderFile], *, running: bool = False, now: float = 0.0
    ) -> list[OrderFile]:
        """Take in a listing; return the files never seen before (now queued).

        A file skipped as already at the target that the server still lists is queued again,
        to be downloaded: the server keeps its suborder waiting until it is, and a waiting
        suborder counts against the user's two, across all of their orders (a fresh copy of
        an order, a lost record, files put there by hand would otherwise stall the order).
        While the order is `running`, a listed file that failed on what may pass (see settle)
        is queued again too, once its time has come (`now`, on the clock settle was given).
        """
        new = []
        for file in files:
            self._listed.add(file.key)
            if file.key in self._files:
                if self._was_skipped(file.key):
                    self._refetch.add(file.key)
                    self._queue.append(file.key)
                elif running and self._may_retry(file.key, now):
                    self._queue.append(file.key)
                continue
            self._files[file.key] = file
            self.record.remember(file, self._names.name_for(file))
            self._queue.append(file.key)
            new.append(file)
        return new

    def _was_skipped(self, key: str) -> bool:
        """Settled as already at the target (its outcome is then forgotten: it is queued)."""
        outcome = self._outcomes.get(key)
        if outcome is None or outcome.outcome is not Outcome.SKIPPED:
            return False
        del self._outcomes[key]
        return True

    def _may_retry(self, key: str, now: float) -> bool:
        """Failed on what may pass, and due to be tried again (its outcome is then forgotten)."""
        due = self._retry_at.get(key)
        if due is None or now < due:
            return False
        del self._retry_at[key]
        self._outcomes.pop(key, None)
        return True

    def take(self) -> Transfer | None:
        """The next queued file, now counted as in flight."""
        if not self._queue:
            return None
        key = self._queue.popleft()
        self._in_flight.add(key)
        file = self._files[key]
        return Transfer(file, self._names.name_for(file), key in self._refetch, key in self._listed)

    def settle(self, outcome: FileOutcome, *, retry_at: float | None = None) -> None:
        """Record how a file in flight ended; a failure that may pass can be tried again by
        this run from `retry_at` on, if the server still lists the file (see discover)."""
        self._in_flight.discard(outcome.key)
        self._outcomes[outcome.key] = outcome
        if outcome.outcome is Outcome.FAILED and retry_at is not None:
            self._retry_at[outcome.key] = retry_at
        else:
            self._retry_at.pop(outcome.key, None)
        self.record.settle(outcome)

    def file(self, key: str) -> OrderFile:
        """A known file by key."""
        return self._files[key]

    @property
    def queued(self) -> int:
        """Files waiting for a transfer slot."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Files being transferred."""
        return len(self._in_flight)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        return not self._queue and not self._in_flight

    @property
    def known(self) -> int:
        """Files seen so far."""
        return len(self._files)

    @property
    def settled(self) -> int:
        """Files whose outcome is known."""
        return len(self._outcomes)

    @property
    def delivered(self) -> int:
        """Files at the target and verified (downloaded or skipped)."""
        return sum(1 for o in self._outcomes.values() if o.outcome is not Outcome.FAILED)

    def location(self, file: OrderFile) -> str:
        """Where `file` is (or would be) at the target, as the user knows it."""
        target = self.record.target
        return target.url(target.path(self._names.name_for(file)))

    def report(self, status: str, problems: list[str], warnings: list[str]) -> OrderReport:
        """The report of the run; files never settled count as failed with the reason why."""
        unsettled_reason = problems[0] if problems else "not transferred"
        outcomes = []
        for key, file in self._files.items():
            outcome = self._outcomes.get(key)
            if outcome is None:
                outcome = FileOutcome.for_file(
                    file,
                    target=self.location(file),
                    outcome=Outcome.FAILED,
                    attempts=0,
                    error=unsettled_reason,
                )
            outcomes.append(outcome)
        return OrderReport(
            order_id=self.record.document.order_id,
            status=status,
            files=outcomes,
            problems=problems,
            warnings=warnings,
        )
