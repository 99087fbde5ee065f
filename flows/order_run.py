"""The moving parts of one download_order run: when to look at the order, what to transfer
next, when to stop, and how each transfer ended. The flow reads as the outline; this is the
bookkeeping behind it (no I/O of its own but through the tasks and the delivery record)."""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from typing import Any

from prefect.context import FlowRunContext
from prefect.futures import PrefectConcurrentFuture, PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from regards_order.delivery import Delivery
from regards_order.errors import RegardsOrderError, TargetError, is_retryable
from regards_order.models import Order, OrderStatus
from regards_order.polling import Backoff
from regards_order.report import FileOutcome, OrderReport, Outcome
from regards_order.settings import Connection, DownloadOptions, TaskRunnerKind
from regards_order.stopping import stop_requested
from tasks.order import list_available_files, poll_order
from tasks.transfer import transfer_file

#: Seconds between two saves of the delivery record while files keep settling (new files are
#: saved at once: the server may forget a file whose download breaks).
RECORD_SAVE_INTERVAL = 2.0

#: Order expiry closer than this is warned about.
EXPIRY_WARNING_SECONDS = 24 * 3600.0

#: Longest sleep between two checks of a stop request.
STOP_CHECK_SECONDS = 1.0


def transfer_runner(options: DownloadOptions) -> TaskRunner[Any]:
    """Where the transfers run: a thread pool of `concurrency` threads, or a Dask cluster."""
    if options.task_runner is TaskRunnerKind.DASK:
        from prefect_dask import DaskTaskRunner

        if options.dask_address:
            return DaskTaskRunner(address=options.dask_address)
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": options.dask_workers, "threads_per_worker": 2}
        )
    return TransferThreadPool(max_workers=options.concurrency)


class TransferThreadPool(ThreadPoolTaskRunner[Any]):
    """Prefect's thread pool, forgetting each task run once it ends.

    The stock runner keeps a cancel event (an Event, its Condition and lock) for every task
    run it was ever given, until the flow ends: over an order of tens of thousands of files
    that is memory growing per file. Cancelling only concerns runs still in flight.
    """

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        future = super().submit(*args, **kwargs)
        if isinstance(future, PrefectConcurrentFuture):
            future.add_done_callback(self._forget)
        return future

    def _forget(self, future: PrefectFuture[Any]) -> None:
        self._cancel_events.pop(future.task_run_id, None)

    def cancel_all(self) -> None:
        # Iterate over a copy: transfers ending meanwhile remove their events.
        self._cancel_events = dict(self._cancel_events)
        super().cancel_all()


class OrderRun:
    """One run's view of an order: looks, transfers in flight, problems, warnings."""

    def __init__(
        self,
        order_id: int,
        target: str,
        connection: Connection,
        options: DownloadOptions,
        delivery: Delivery,
        user_limit: str | None,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.order_id = order_id
        self.target = target
        self.connection = connection
        self.options = options
        self.delivery = delivery
        self.user_limit = user_limit
        self.logger = logger
        self.transfer = transfer_file.with_options(
            retries=options.retries,
            retry_delay_seconds=[options.retry_delay * 2**i for i in range(options.retries)],
            retry_jitter_factor=0.5 if options.retry_delay else 0.0,
        )
        self.pace = Backoff(options.poll_interval, options.max_poll_interval)
        self.deadline = time.monotonic() + options.timeout if options.timeout else float("inf")
        self.finished: queue.Queue[PrefectFuture[FileOutcome]] = queue.Queue()
        self.running: dict[PrefectFuture[FileOutcome], str] = {}
        self.status = OrderStatus.UNKNOWN
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.next_look = 0.0
        self.final = False
        self.poll_errors = 0
        self.last_error: RegardsOrderError | None = None
        self.ended = False

    # -- looking at the order ---------------------------------------------------------------

    def due(self) -> bool:
        """Whether it is time to look at the order again."""
        return time.monotonic() >= self.next_look

    def look(self) -> None:
        """Poll the order and take in its available files (ends the run on a lasting error)."""
        now = time.monotonic()
        try:
            order = poll_order(self.connection, self.order_id)
            gone = order.status.files_gone
            listed = []
            if not gone:
                listed = list_available_files(
                    self.connection, self.order_id, self.options.page_size
                )
        except RegardsOrderError as error:
            self.poll_errors += 1
            if not error.retryable or self.poll_errors >= self.options.max_poll_errors:
                self._end(str(error))
                return
            self.last_error = error
            self.logger.warning("Looking at order %s failed, will retry: %s", self.order_id, error)
            self.next_look = now + self.pace.next(at_least=error.retry_after or 0.0)
            return
        self.poll_errors, self.last_error = 0, None
        self.status, self.final = order.status, order.status.is_final
        if gone:
            self._end(f"order {self.order_id} is {self.status}: its files are gone from the server")
            return
        new = self.delivery.discover(listed, running=not self.final, now=now)
        self._save_record()  # before any transfer starts
        self._note(order, new=len(new))
        self.next_look = now + (self.pace.reset() if new else self.pace.next())

    # -- transfers --------------------------------------------------------------------------

    def start_transfers(self, runner: TaskRunner[Any]) -> None:
        """Start queued files, up to `concurrency` in flight."""
        delivery = self.delivery
        while delivery.in_flight < self.options.concurrency and (taken := delivery.take()):
            parameters = {
                "connection": self.connection,
                "file": taken.file,
                "name": taken.name,
                "target": self.target,
                "storage_options": self.options.storage_options,
                "user_limit": self.user_limit,
                "refetch": taken.refetch,
                "listed": taken.listed,
            }
            future = runner.submit(self.transfer, parameters)
            self.running[future] = taken.file.key
            future.add_done_callback(self.finished.put)

    async def settle(self, wait: float | None) -> int:
        """Wait up to `wait` seconds for a transfer to end, then settle every ended one."""
        try:
            if wait == 0:
                future: PrefectFuture[FileOutcome] | None = self.finished.get_nowait()
            else:
                future = await asyncio.to_thread(self.finished.get, True, wait)
        except queue.Empty:
            return 0
        count = 0
        while future is not None:
            outcome, may_pass = await self._outcome(future, self.running.pop(future))
            # A failure that may pass is tried again at a later look, if the server still
            # lists the file while the order runs: its suborder waits for it.
            retry_at = time.monotonic() + self.options.max_poll_interval if may_pass else None
            self.delivery.settle(outcome, retry_at=retry_at)
            count += 1
            try:
                future = self.finished.get_nowait()
            except queue.Empty:
                future = None
        _forget_task_results()
        self._save_record(at_most_every=RECORD_SAVE_INTERVAL)
        if self.delivery.idle:
            self.next_look = 0.0  # the server may release the next suborder now: look again
        return count

    async def wait_for_something(self) -> int:
        """Sleep until a transfer ends or it is time to look (or to check for a stop)."""
        now = time.monotonic()
        wake = min(self.next_look, self.deadline, now + STOP_CHECK_SECONDS)
        return await self.settle(max(0.0, wake - now))

    async def drain(self) -> None:
        """Let every transfer in flight finish, whatever ended the run."""
        while self.running:
            await self.settle(None)
        self._save_record()

    def _save_record(self, at_most_every: float = 0.0) -> None:
        """Save the delivery record; a failure is a warning: the record only helps a later
        run find files the server forgot, and it is tried again at the next save."""
        try:
            self.delivery.record.save(at_most_every=at_most_every)
        except TargetError as error:
            self._warn_once("record", f"the delivery record could not be saved: {error}")

    async def _outcome(
        self, future: PrefectFuture[FileOutcome], key: str
    ) -> tuple[FileOutcome, bool]:
        """How a transfer ended, and whether its failure may pass."""
        # The future is done: wait() only records its final state. Reading the result in this
        # event loop spares the hop to Prefect's loop thread that future.result() takes.
        future.wait()
        state = future.state
        if state.is_final():
            result: Any = await state.aresult(raise_on_failure=False)
        else:  # a runner whose futures do not keep their final state (read it the slow way)
            result = future.result(raise_on_failure=False)
        if isinstance(result, FileOutcome):
            return result, False
        file = self.delivery.file(key)
        failed = FileOutcome.for_file(
            file,
            target=self.delivery.location(file),
            outcome=Outcome.FAILED,
            attempts=getattr(result, "attempts", None) or 1,
            error=str(result) or type(result).__name__,
        )
        may_pass = isinstance(result, Exception) and is_retryable(result) and not stop_requested()
        return failed, may_pass

    # -- ending -----------------------------------------------------------------------------

    def keep_going(self) -> bool:
        """False once the order is final and nothing is left, or the run must stop."""
        if self.ended:
            return False
        left = self.delivery.known - self.delivery.settled
        # Checked first: files cut short by the stop have settled (as failed) by now.
        if stop_requested() and (undelivered := self.delivery.known - self.delivery.delivered):
            self._end(f"interrupted with {undelivered} files not delivered")
        elif self.final and self.delivery.idle:
            self.ended = True
        elif time.monotonic() >= self.deadline:
            last = f" (last error: {self.last_error})" if self.last_error else ""
            timeout = self.options.timeout or 0
            self._end(
                f"the deadline of {timeout:g} s passed with order {self.order_id} {self.status} "
                f"and {left} known files not delivered{last}"
            )
        return not self.ended

    def _end(self, problem: str) -> None:
        self.problems.append(problem)
        self.ended = True

    def report(self) -> OrderReport:
        """The run's report; an order the server ended in error is a problem of its own."""
        if self.status in (OrderStatus.DONE_WITH_WARNING, OrderStatus.FAILED, OrderStatus.ERROR):
            self.problems.append(
                f"the server ended the order {self.status}: some of its files are in error"
            )
        return self.delivery.report(str(self.status), self.problems, self.warnings)

    def _note(self, order: Order, *, new: int) -> None:
        self.logger.info(
            "Order %s is %s (%s%% restored, %s available, %s in error); %d new files",
            order.id,
            order.status,
            order.percent_completed,
            order.available_files_count,
            order.files_in_error_count,
            new,
        )
        if order.status is OrderStatus.PAUSED:
            self._warn_once("paused", f"order {order.id} is paused on the server")
        expires = order.expiration_date
        if expires is not None and expires.timestamp() - time.time() < EXPIRY_WARNING_SECONDS:
            self._warn_once("expires", f"order {order.id} expires at {expires.isoformat()}")

    def _warn_once(self, topic: str, warning: str) -> None:
        if not any(topic in known for known in self.warnings):
            self.warnings.append(warning)
            self.logger.warning(warning)


def _forget_task_results() -> None:
    """Drop Prefect's map from task results to their states for this flow run.

    Prefect keeps it to draw an edge when one task's result is passed to another; this flow
    never does that (transfers take files from the listing's pages, not the page objects), and
    the map holds a State and a weak reference for every result and for each of its fields, for
    the whole run: memory growing per file.
    """
    context = FlowRunContext.get()
    if context is not None:
        context.run_results.clear()
