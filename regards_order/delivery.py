"""The bookkeeping of one order's delivery: one `FileState` per file, and how one file is fetched.

Files are tracked by key (id, or URL where the server gives no id), because the server's list
of available files shrinks while we download: a file seen once is never lost, a file listed
twice is transferred once. The durable record is written from these states.
"""

from __future__ import annotations

import contextlib
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from regards_order.client import RegardsClient
from regards_order.errors import InvalidFileRecord, RegardsOrderError
from regards_order.models import OrderFile, ServerFile, ServerFileState
from regards_order.paths import choose_name
from regards_order.progress import WATCH
from regards_order.record import DeliveryRecord, FileState, Origin, Phase
from regards_order.report import FileOutcome, Outcome
from regards_order.stopping import check_stop
from regards_order.transfer import Target, is_verified, write_verified


@dataclass(frozen=True)
class Transfer:
    """A file to transfer, as `Delivery.take` gives it (a dataclass, not a tuple: Prefect and
    Dask rebuild tuples they pass along as plain ones)."""

    file: OrderFile
    name: str
    origin: Origin


def fetch_file(
    client: RegardsClient,
    target: Target,
    transfer: Transfer,
    *,
    owner: str,
    attempts: int = 1,
) -> FileOutcome:
    """Deliver one file: skipped if recorded and already verified at the target, else
    downloaded, its bytes committed under their name only once size and MD5 match.

    A file whose record cannot be verified against is never delivered; if the server listed
    it, its body is still read to the end and discarded, for the server to release its
    suborder. `owner` names the run in its partial files. Raises a RegardsOrderError when the
    file cannot be delivered this time.
    """
    check_stop()
    file = transfer.file
    problem = file.verification_problem()
    if problem is not None:
        if transfer.origin.listed:
            _read_and_discard(client, file)
        raise InvalidFileRecord(problem)
    assert file.checksum is not None
    path = target.path(transfer.name)
    location = target.url(path)
    if transfer.origin is Origin.RECORDED and is_verified(target, path, file.checksum, file.size):
        return FileOutcome.for_file(
            file, target=location, outcome=Outcome.SKIPPED, attempts=attempts, md5=file.checksum
        )
    with client.open_file(file) as download:
        expected_size = file.size if file.size is not None else download.size
        chunks = WATCH.counted(file.key, transfer.name, expected_size, download.chunks())
        written = write_verified(
            target, path, chunks, md5=file.checksum, size=expected_size, owner=owner
        )
    return FileOutcome.for_file(
        file,
        target=location,
        outcome=Outcome.DOWNLOADED,
        attempts=attempts,
        size=written.size,
        md5=written.md5,
    )


def _settled_unread(state: FileState) -> bool:
    """Settled without its body read to the end for the server (skipped as already there, or
    failed while taken as recorded): when the server lists it, it waits for that download."""
    return state.outcome is Outcome.SKIPPED or (
        state.outcome is Outcome.FAILED and not state.origin.listed
    )


def _read_and_discard(client: RegardsClient, file: OrderFile) -> None:
    """Download `file` without keeping a byte, so that the server counts it as downloaded;
    best effort: the file has failed whatever happens here."""
    with contextlib.suppress(RegardsOrderError), client.open_file(file) as download:
        for _ in download.chunks():
            check_stop()


class Delivery:
    """One `FileState` per file of the order: the queue, the files in flight, the outcomes."""

    def __init__(self, record: DeliveryRecord) -> None:
        self.record = record
        self._states: dict[str, FileState] = {}
        self._taken: set[str] = set()  # names given, for clashes
        self._queue: deque[FileState] = deque()
        self._in_flight = 0
        self._ended: Counter[Outcome] = Counter()  # this run's outcomes so far
        self._bytes_known = 0
        self._bytes_done = 0
        self._changed = False
        # Every file an earlier run saw is checked again: skipped if verified, fetched if not.
        for state in record.load().values():
            self._add(state)

    # -- taking files in --------------------------------------------------------------------

    def _add(self, state: FileState) -> None:
        self._states[state.file.key] = state
        self._bytes_known += state.file.size or 0
        self._taken.add(state.name)
        if state.phase is Phase.QUEUED:
            self._queue.append(state)
        self._changed = True

    def discover(self, files: Iterable[OrderFile]) -> int:
        """Take in a listing; return how many files were never seen before (now queued).

        A file the server lists waits for its download (see Origin.LISTED): one still queued
        from the record will be downloaded, one skipped as already there is queued again.
        """
        new = 0
        for file in files:
            state = self._states.get(file.key)
            if state is None:
                name = choose_name(file, self._taken)
                self._add(FileState(file=file, name=name, origin=Origin.LISTED))
                new += 1
            elif state.phase is Phase.QUEUED:
                state.origin = Origin.LISTED
            elif state.phase is Phase.WAITING:
                state.phase, state.origin = Phase.QUEUED, Origin.LISTED
                self._queue.append(state)
            elif state.phase is Phase.SETTLED and _settled_unread(state):
                self._requeue(state, Origin.LISTED_AGAIN)
        return new

    def know(self, files: Iterable[ServerFile], api_url: str) -> int:
        """Take in every file of the order as the server has it, whatever its state: a file
        this run did not know is queued (fetched by id) if the server serves it, waits if it is
        not restored yet, and fails at once if the server has it in error. Returns how many
        files were new."""
        new = 0
        for entry in sorted(files, key=lambda server_file: server_file.id):  # names by id
            file = entry.order_file(api_url)
            known = self._states.get(file.key)
            if known is not None:
                # One still waiting for its restoration that the server has put in error since.
                if known.phase is Phase.WAITING and entry.state.in_error:
                    self._in_error_on_the_server(known, entry)
                continue
            new += 1
            name = choose_name(file, self._taken)
            if entry.state.in_error:
                state = FileState(file=file, name=name, phase=Phase.SETTLED)  # never queued
                self._add(state)
                self._in_error_on_the_server(state, entry)
            elif entry.state is ServerFileState.PENDING:
                self._add(FileState(file=file, name=name, phase=Phase.WAITING))
            elif entry.state is ServerFileState.AVAILABLE:  # its suborder waits for it
                self._add(FileState(file=file, name=name, origin=Origin.LISTED))
            else:  # downloaded or download error: served by id
                self._add(FileState(file=file, name=name))
        return new

    def _in_error_on_the_server(self, state: FileState, entry: ServerFile) -> None:
        """A file the server cannot deliver (not queued): failed at once, with the server's
        reason."""
        why = entry.download_error or entry.state.value
        state.phase, state.outcome = Phase.SETTLED, Outcome.FAILED
        state.error = f"in error on the server: {why}"
        self._count(state, +1)
        self._changed = True

    def retry_due(self, now: float) -> int:
        """Queue again every file that failed on what may pass and whose time has come (on the
        clock `settle` was given); return how many."""
        due = [
            s
            for s in self._states.values()
            if s.phase is Phase.SETTLED and s.retry_at is not None and now >= s.retry_at
        ]
        for state in due:
            self._requeue(state, state.origin)
        return len(due)

    def _requeue(self, state: FileState, origin: Origin) -> None:
        self._count(state, -1)
        state.phase, state.retry_at, state.origin = Phase.QUEUED, None, origin
        self._queue.append(state)

    # -- transfers --------------------------------------------------------------------------

    def take(self) -> Transfer | None:
        """The next queued file, now in flight."""
        if not self._queue:
            return None
        state = self._queue.popleft()
        state.phase = Phase.IN_FLIGHT
        self._in_flight += 1
        return Transfer(state.file, state.name, state.origin)

    def settle(self, outcome: FileOutcome, *, retry_at: float | None = None) -> None:
        """Record how a file in flight ended; a failure that may pass can be queued again by
        `retry_due` from `retry_at` on."""
        state = self._states[outcome.key]
        if state.phase is not Phase.IN_FLIGHT:
            return
        state.phase = Phase.SETTLED
        self._in_flight -= 1
        state.outcome, state.error = outcome.outcome, outcome.error
        state.attempts = outcome.attempts
        if outcome.outcome is not Outcome.FAILED:
            state.md5, state.size = outcome.md5, outcome.size
        failed_may_pass = outcome.outcome is Outcome.FAILED and outcome.retryable
        state.retry_at = retry_at if failed_may_pass else None
        self._count(state, +1)
        self._changed = True

    def _count(self, state: FileState, sign: int) -> None:
        """Count a file's outcome in this run (sign +1), or take it back (-1: queued again)."""
        assert state.outcome is not None
        self._ended[state.outcome] += sign
        if state.outcome is not Outcome.FAILED:
            self._bytes_done += sign * (state.size or state.file.size or 0)

    # -- what it amounts to -----------------------------------------------------------------

    def state(self, key: str) -> FileState:
        """The state of a known file."""
        return self._states[key]

    @property
    def queued(self) -> int:
        """Files waiting for a transfer slot."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Files being transferred."""
        return self._in_flight

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        return not self._queue and not self._in_flight

    @property
    def known(self) -> int:
        """Files seen so far."""
        return len(self._states)

    @property
    def settled(self) -> int:
        """Files whose outcome this run knows."""
        return sum(self._ended.values())

    def totals(self) -> tuple[int, int, int, int, int]:
        """Files known, verified and failed in this run; bytes known and verified."""
        failed = self._ended[Outcome.FAILED]
        done = self.settled - failed
        return self.known, done, failed, self._bytes_known, self._bytes_done

    def undelivered(self) -> int:
        """Files not (or not yet) verified at the target by this run."""
        return sum(1 for s in self._states.values() if not _delivered(s))

    def location(self, state: FileState) -> str:
        """Where a file is (or would be) at the target, as the user knows it."""
        target = self.record.target
        return target.url(target.path(state.name))

    def outcomes(self, unsettled_reason: str) -> Iterator[FileOutcome]:
        """Every file's outcome in this run; one never settled failed for `unsettled_reason`."""
        for state in self._states.values():
            settled = state.phase is Phase.SETTLED
            yield FileOutcome.for_file(
                state.file,
                target=self.location(state),
                outcome=state.outcome if settled and state.outcome else Outcome.FAILED,
                attempts=state.attempts if settled else 0,
                size=state.size,
                md5=state.md5 if settled and state.outcome is not Outcome.FAILED else None,
                error=state.error if settled else unsettled_reason,
            )

    # -- the durable record -----------------------------------------------------------------

    def save(self, *, at_most_every: float = 0.0, adopt: bool = True) -> None:
        """Save the record if something changed (skipped when saved less than `at_most_every`
        seconds ago), merged with what another run of the order wrote meanwhile: files only it
        knows are queued here too when `adopt` (they are part of the order), else kept as they
        are in the record."""
        if not self._changed:
            return
        foreign = self.record.save(self._states, at_most_every=at_most_every)
        if foreign is None:
            return
        self._changed = False
        if adopt:
            for state in foreign.values():
                self._add(state)
            self.record.forget_foreign()


def _delivered(state: FileState) -> bool:
    return state.phase is Phase.SETTLED and state.outcome is not Outcome.FAILED
