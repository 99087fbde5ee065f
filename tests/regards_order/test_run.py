"""The run's decisions, driven in milliseconds: an injected clock, no server, no Prefect.

Each test feeds an `OrderRun` what looks and transfers would say, and checks what it decides:
when to look, what to transfer, when and why it ends, and the report that follows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from regards_order.delivery import Delivery, Origin
from regards_order.errors import AccessDenied, NotFound, ServerError, TransportError
from regards_order.models import Order, OrderFile, OrderStatus
from regards_order.record import DeliveryRecord
from regards_order.report import EndReason, FileOutcome, Outcome
from regards_order.run import STOP_CHECK_SECONDS, OrderRun
from regards_order.settings import DownloadOptions
from regards_order.transfer import open_target

OPTIONS = DownloadOptions(poll_interval=5.0, max_poll_interval=60.0, concurrency=2)


class Clock:
    """Time that passes only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Stop:
    def __init__(self) -> None:
        self.asked = False

    def __call__(self) -> bool:
        return self.asked


def order(status: OrderStatus, *, in_error: int = 0, expires_in: float | None = None) -> Order:
    expiry = None
    if expires_in is not None:
        expiry = datetime.now(UTC) + timedelta(seconds=expires_in)
    return Order(id=7, status=status, files_in_error_count=in_error, expiration_date=expiry)


def file(file_id: int) -> OrderFile:
    return OrderFile(
        id=file_id,
        url=f"https://regards.example.org/api/v1/rs-order/orders/files/{file_id}",
        filename=f"f{file_id}.bin",
        size=10,
        checksum="0" * 32,
    )


def outcome(file_id: int, kind: Outcome, *, retryable: bool = False) -> FileOutcome:
    return FileOutcome.for_file(
        file(file_id),
        target=f"memory://t/f{file_id}.bin",
        outcome=kind,
        attempts=1,
        md5="0" * 32 if kind is not Outcome.FAILED else None,
        error="boom" if kind is Outcome.FAILED else None,
        retryable=retryable,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stop() -> Stop:
    return Stop()


def new_run(clock: Clock, stop: Stop, options: DownloadOptions = OPTIONS) -> OrderRun:
    target = open_target(f"memory://run-{uuid.uuid4().hex}")
    delivery = Delivery(DeliveryRecord(target, 7))
    return OrderRun(7, delivery, options, clock=clock, stopped=stop, draw=lambda: 0.0)


def transfer_all(run: OrderRun, kind: Outcome = Outcome.DOWNLOADED) -> list[int]:
    """Start and settle every file the run hands out; return their ids in order."""
    ids = []
    while (transfer := run.next_transfer()) is not None:
        assert transfer.file.id is not None
        ids.append(transfer.file.id)
        run.settled(outcome(transfer.file.id, kind))
    return ids


def test_a_final_order_ends_at_the_look_that_finds_nothing_left(clock: Clock, stop: Stop) -> None:
    run = new_run(clock, stop)
    assert run.look_due()
    assert run.looked(order(OrderStatus.DONE), [file(1), file(2)]) == 2
    assert run.going  # files to transfer
    assert transfer_all(run) == [1, 2]
    # Idle now: the next look is due at once (no waiting on the backoff)...
    assert run.look_due() and run.wake_in() == 0.0
    run.looked(order(OrderStatus.DONE), [])
    # ...and that look ends the run, complete.
    assert run.end is EndReason.COMPLETE
    report = run.report()
    assert report.ok and report.counts == {"downloaded": 2, "skipped": 0, "failed": 0}
    assert report.problems == [] and report.end is EndReason.COMPLETE


def test_a_rerun_of_a_final_order_with_nothing_listed_ends_at_once(
    clock: Clock, stop: Stop
) -> None:
    # The kill -9 then re-run case: DONE_WITH_WARNING, no file available, the record's files
    # verified or fetched by id; the run ends as soon as they settle, however the pace grew.
    run = new_run(clock, stop)
    run.delivery.discover([file(1), file(2)])
    transfer_all(run, Outcome.SKIPPED)  # an earlier run's files, verified at the target
    for _ in range(5):  # looks spaced out at the growing pace before the order is final
        clock.advance(run.wake_in() or STOP_CHECK_SECONDS)
        run.looked(order(OrderStatus.RUNNING), [])
    clock.advance(60)
    run.looked(order(OrderStatus.DONE_WITH_WARNING), [])
    assert run.end is EndReason.COMPLETE
    report = run.report()
    assert report.ok
    assert any("DONE_WITH_WARNING with no file in error" in w for w in report.warnings)


def test_done_with_warning_and_files_in_error_is_a_failure_that_says_how_many(
    clock: Clock, stop: Stop
) -> None:
    run = new_run(clock, stop)
    run.looked(order(OrderStatus.DONE_WITH_WARNING, in_error=3), [file(1)])
    transfer_all(run)
    run.looked(order(OrderStatus.DONE_WITH_WARNING, in_error=3), [])
    report = run.report()
    assert report.end is EndReason.COMPLETE and not report.ok
    assert report.files_in_error == 3
    assert report.problems == [
        "3 files of order 7 in error on the server, which cannot deliver them"
    ]
    assert report.counts["downloaded"] == 1


def test_the_report_is_the_same_every_time(clock: Clock, stop: Stop) -> None:
    run = new_run(clock, stop)
    run.looked(order(OrderStatus.FAILED, in_error=2), [])
    first, second = run.report(), run.report()
    assert first == second and len(first.problems) == 1


def test_the_pace_grows_while_nothing_changes_and_starts_over_on_new_files(
    clock: Clock, stop: Stop
) -> None:
    run = new_run(clock, stop)
    intervals = []
    for _ in range(4):
        run.looked(order(OrderStatus.RUNNING), [])
        intervals.append(run.next_look - clock.now)
        clock.advance(intervals[-1])
    assert intervals == pytest.approx([5.0, 8.0, 12.8, 20.48])
    run.looked(order(OrderStatus.RUNNING), [file(1)])
    assert run.next_look - clock.now == 5.0


def test_at_most_concurrency_transfers_at_once(clock: Clock, stop: Stop) -> None:
    run = new_run(clock, stop)
    run.looked(order(OrderStatus.RUNNING), [file(i) for i in range(1, 6)])
    started = [run.next_transfer(), run.next_transfer()]
    assert all(started) and run.next_transfer() is None
    run.settled(outcome(1, Outcome.DOWNLOADED))
    assert run.next_transfer() is not None


@pytest.mark.parametrize(
    ("error", "end", "problem"),
    [
        (AccessDenied("order 7: HTTP 403"), EndReason.FORBIDDEN, "order 7: HTTP 403"),
        (NotFound("order 7: HTTP 404"), EndReason.NOT_FOUND, "order 7: HTTP 404"),
    ],
)
def test_a_refusal_ends_the_run_at_once(
    clock: Clock, stop: Stop, error: Exception, end: EndReason, problem: str
) -> None:
    run = new_run(clock, stop)
    run.look_failed(error)  # type: ignore[arg-type]
    assert run.end is end
    report = run.report()
    assert not report.ok and report.problems == [problem] and report.status == "UNKNOWN"


def test_passing_poll_failures_are_retried_until_too_many(clock: Clock, stop: Stop) -> None:
    options = OPTIONS.model_copy(update={"max_poll_errors": 3})
    run = new_run(clock, stop, options)
    run.look_failed(ServerError("order 7: HTTP 503", retry_after=30))
    assert run.going and run.next_look - clock.now == 30.0  # Retry-After is a floor
    run.look_failed(TransportError("order 7: cannot reach"))
    assert run.going
    run.looked(order(OrderStatus.RUNNING), [])  # a success resets the count
    run.look_failed(ServerError("order 7: HTTP 500"))
    run.look_failed(ServerError("order 7: HTTP 500"))
    assert run.going
    run.look_failed(ServerError("order 7: HTTP 502"))
    assert run.end is EndReason.UNREADABLE
    assert run.report().problems == [
        "order 7 could not be read 3 times in a row: order 7: HTTP 502"
    ]


def test_an_expired_order_is_gone(clock: Clock, stop: Stop) -> None:
    run = new_run(clock, stop)
    run.delivery.discover([file(1)])
    run.looked(order(OrderStatus.EXPIRED), [])
    assert run.end is EndReason.GONE and run.next_transfer() is None
    report = run.report()
    assert report.problems == ["order 7 is EXPIRED: its files are gone from the server"]
    (lost,) = report.files
    assert lost.outcome is Outcome.FAILED and lost.error == report.problems[0]


def test_the_deadline_ends_the_run_and_names_the_order_state(clock: Clock, stop: Stop) -> None:
    run = new_run(clock, stop, OPTIONS.model_copy(update={"timeout": 0.5}))
    run.looked(order(OrderStatus.PAUSED), [])
    assert run.going and run.wake_in() == 0.5  # woken for the deadline, not the next look
    clock.advance(0.5)
    run.tick()
    assert run.end is EndReason.DEADLINE
    report = run.report()
    assert report.problems == [
        "the deadline of 0.5 s passed with order 7 PAUSED and 0 files known not delivered"
    ]
    assert report.warnings == ["order 7 is paused on the server"]


def test_a_stop_request_ends_the_run_unless_it_is_complete(clock: Clock, stop: Stop) -> None:
    run = new_run(clock, stop)
    run.looked(order(OrderStatus.RUNNING), [file(1), file(2)])
    run.next_transfer()
    stop.asked = True
    run.tick()
    assert run.end is EndReason.STOPPED and run.next_transfer() is None
    run.settled(outcome(1, Outcome.FAILED, retryable=True))  # cut short: not to be retried
    assert run.delivery.state("1").retry_at is None
    assert run.report().problems == ["interrupted with 2 files not delivered"]


def test_a_failure_that_may_pass_gets_another_round_while_the_order_runs(
    clock: Clock, stop: Stop
) -> None:
    run = new_run(clock, stop)
    run.looked(order(OrderStatus.RUNNING), [file(1)])
    run.next_transfer()
    run.settled(outcome(1, Outcome.FAILED, retryable=True))
    # Not listed any more (the server made it DOWNLOAD_ERROR), yet fetched again by id...
    clock.advance(OPTIONS.max_poll_interval - 1)
    run.looked(order(OrderStatus.RUNNING), [])
    assert run.next_transfer() is None  # ...once max_poll_interval has passed
    clock.advance(1)
    run.looked(order(OrderStatus.RUNNING), [])
    again = run.next_transfer()
    assert again is not None and again.file.id == 1
    run.settled(outcome(1, Outcome.DOWNLOADED))
    run.looked(order(OrderStatus.DONE), [])
    assert run.report().ok


def test_a_permanent_failure_is_not_tried_again(clock: Clock, stop: Stop) -> None:
    run = new_run(clock, stop)
    run.looked(order(OrderStatus.RUNNING), [file(1)])
    run.next_transfer()
    run.settled(outcome(1, Outcome.FAILED))
    clock.advance(3600)
    run.looked(order(OrderStatus.RUNNING), [file(1)])
    assert run.next_transfer() is None
    run.looked(order(OrderStatus.DONE), [])
    assert run.end is EndReason.COMPLETE
    assert run.report().summary() == "order 7 not delivered: 1 of 1 file failed: f1.bin: boom"


def test_a_listed_file_is_downloaded_even_if_recorded_as_skipped(clock: Clock, stop: Stop) -> None:
    run = new_run(clock, stop)
    run.delivery.discover([file(1)])
    first = run.next_transfer()
    assert first is not None and first.origin is Origin.LISTED
    run.settled(outcome(1, Outcome.SKIPPED))
    run.looked(order(OrderStatus.RUNNING), [file(1)])  # the server still waits for it
    again = run.next_transfer()
    assert again is not None and again.origin is Origin.LISTED_AGAIN


def test_an_expiry_within_a_day_is_warned_once(clock: Clock, stop: Stop) -> None:
    run = new_run(clock, stop)
    for _ in range(3):
        run.looked(order(OrderStatus.RUNNING, expires_in=3600), [])
    assert len(run.report().warnings) == 1 and "expires at" in run.report().warnings[0]


def test_a_broken_pipeline_ends_the_run_with_its_reason(clock: Clock, stop: Stop) -> None:
    run = new_run(clock, stop)
    run.broke("the temporary Prefect server did not answer")
    report = run.report()
    assert report.end is EndReason.BROKEN and not report.ok
    assert report.problems == ["the temporary Prefect server did not answer"]
