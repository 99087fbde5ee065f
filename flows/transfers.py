"""The Prefect side of one download_order run: looking at the order through its tasks, and the
transfers, one task run per file, started as slots free and settled into the run as they end.
What to do when is `regards_order.run.OrderRun`'s decision; this module only carries it out."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable
from typing import Any

from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from regards_order.delivery import Delivery
from regards_order.errors import RegardsOrderError, TargetError
from regards_order.flows.events import file_delivered
from regards_order.models import Order
from regards_order.report import FileOutcome, Outcome
from regards_order.run import STOP_CHECK_SECONDS, OrderRun
from regards_order.settings import Connection, DownloadOptions, TaskRunnerKind
from regards_order.tasks.order import list_available_files, list_order_files, poll_order
from regards_order.tasks.prefect_internals import ForgetfulThreadPool, forget_task_results
from regards_order.tasks.transfer import transfer_file

#: Seconds between two saves of the delivery record while files keep settling (new files are
#: saved at once: the server may forget a file whose download breaks).
RECORD_SAVE_INTERVAL = 2.0


def transfer_runner(options: DownloadOptions) -> TaskRunner[Any]:
    """Where the transfers run: a thread pool of `concurrency` threads, or a Dask cluster."""
    if options.task_runner is TaskRunnerKind.DASK:
        from prefect_dask.task_runners import DaskTaskRunner

        if options.dask_address:
            return DaskTaskRunner(address=options.dask_address)
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": options.dask_workers, "threads_per_worker": 2}
        )
    return ForgetfulThreadPool(max_workers=options.concurrency)


def look(run: OrderRun, connection: Connection) -> None:
    """Look at the order and its available files, and tell the run what was seen; at the
    first look, every file of the order too, where the server lists them (before the run
    takes the look in: it may end the run when nothing is available)."""
    first = run.order is None
    try:
        order = poll_order(connection, run.order_id)
        listed = []
        if not order.status.files_gone:
            listed = list_available_files(connection, run.order_id, run.options.page_size)
    except RegardsOrderError as error:
        run.look_failed(error)
        return
    new = 0
    # Files listed without ids (the guide's dialect) cannot be matched with the server's list
    # of every file, which names them by id.
    if first and not order.status.files_gone and all(f.id is not None for f in listed):
        try:
            new += know_whole_order(run, connection, order)
        except RegardsOrderError as error:  # it only helps: the available files are known
            run.warn(
                "whole order", f"every file of order {run.order_id} could not be listed: {error}"
            )
    new += run.looked(order, listed)
    if new:
        save_record(run)  # before any of the new files' transfers starts


def know_whole_order(run: OrderRun, connection: Connection, order: Order) -> int:
    """Every file of the order in every state (servers without the endpoint: nothing); how
    many files the run did not know."""
    if not order.dataset_task_ids:
        return 0
    files = list_order_files(connection, order.id, order.dataset_task_ids, run.options.page_size)
    return 0 if files is None else run.whole_order(files, connection.api_url)


def know_whole_order_at_the_end(run: OrderRun, connection: Connection) -> None:
    """Again at the end, for the files that went in error since (a failure to list them is
    only a warning: the run is over)."""
    if run.order is None or not run.whole_known or run.status.files_gone:
        return
    try:
        know_whole_order(run, connection, run.order)
    except RegardsOrderError as error:
        run.warn("whole order", f"every file of order {run.order_id} could not be listed: {error}")


def save_record(run: OrderRun, at_most_every: float = 0.0, *, adopt: bool = True) -> None:
    """Save the delivery record; a failure is a warning: the record only helps a later run
    find files the server forgot, and it is tried again at the next save."""
    try:
        run.delivery.save(at_most_every=at_most_every, adopt=adopt)
    except TargetError as error:
        run.warn("record", f"the delivery record could not be saved: {error}")


class Transfers:
    """The transfers of one run: started as the run allows, settled into it as they end."""

    def __init__(self, runner: TaskRunner[Any], run: OrderRun, **parameters: Any) -> None:
        self.runner = runner
        self.run = run
        options = run.options
        self.task = transfer_file.with_options(
            retries=options.retries,
            retry_delay_seconds=[options.retry_delay * 2**i for i in range(options.retries)],
            retry_jitter_factor=0.5 if options.retry_delay else 0.0,
        )
        self.parameters = parameters
        # quote() spares Prefect two walks through the models looking for futures; the Dask
        # runner ships a quote as a plain tuple, so only the thread pool gets one.
        self._wrap: Callable[[Any], Any] = (
            quote if isinstance(runner, ThreadPoolTaskRunner) else lambda value: value
        )
        self._ended: queue.Queue[tuple[str, PrefectFuture[FileOutcome]]] = queue.Queue()

    def start(self) -> None:
        """Start every file the run wants started now."""
        while (transfer := self.run.next_transfer()) is not None:
            # The name comes apart: the task run's name is formatted from plain values.
            parameters = {"name": transfer.name, "transfer": self._wrap(transfer)}
            parameters |= self.parameters
            future = self.runner.submit(self.task, parameters)
            key = transfer.file.key
            future.add_done_callback(lambda done, key=key: self._ended.put((key, done)))

    async def wait(self, seconds: float | None) -> int:
        """Wait up to `seconds` (None: for as long as it takes) for a transfer to end, then
        settle every one that ended; return how many did."""
        try:
            if seconds == 0:
                ended = self._ended.get_nowait()
            else:
                ended = await asyncio.to_thread(self._ended.get, True, seconds)
        except queue.Empty:
            return 0
        count = 0
        while True:
            key, future = ended
            outcome = await _outcome(key, future, self.run.delivery)
            self.run.settled(outcome)
            file_delivered(self.run.order_id, outcome, self.run.delivery.state(key).name)
            count += 1
            try:
                ended = self._ended.get_nowait()
            except queue.Empty:
                break
        forget_task_results()
        save_record(self.run, at_most_every=RECORD_SAVE_INTERVAL)
        return count

    async def drain(self, between: Callable[[], None]) -> None:
        """Let every transfer in flight end, whatever ended the run (`between` is called at
        least every STOP_CHECK_SECONDS meanwhile)."""
        while self.run.delivery.in_flight:
            await self.wait(STOP_CHECK_SECONDS)
            between()
        save_record(self.run, adopt=False)


async def _outcome(key: str, future: PrefectFuture[FileOutcome], delivery: Delivery) -> FileOutcome:
    """How a transfer ended: its outcome, failed ones included (a Failed state's data)."""
    # The future is done: wait() only records its final state. Reading the result in this
    # event loop spares the hop to Prefect's loop thread that future.result() takes.
    future.wait()
    state = future.state
    if state.is_final():
        result: Any = await state.aresult(raise_on_failure=False)
    else:  # a runner whose futures do not keep their final state (read it the slow way)
        result = future.result(raise_on_failure=False)
    if isinstance(result, FileOutcome):
        return result
    file_state = delivery.state(key)  # the task itself broke: a bug, not a transfer failure
    return FileOutcome.for_file(
        file_state.file,
        target=delivery.location(file_state),
        outcome=Outcome.FAILED,
        attempts=1,
        error=str(result) or type(result).__name__,
    )
