"""Deliver every file of one REGARDS order to a target (a folder or any fsspec URL), verified.

The server restores an order in suborders and holds back the next ones until the files ready
now are downloaded, so this flow never waits for DONE: it looks at the order with a capped,
jittered backoff, transfers each newly available file as its own task run while the order is
still running, and ends when the order is final and nothing is left to download (or at the
deadline). It ends Completed only if every file is verified at the target.
"""

from __future__ import annotations

import asyncio
import queue
import time
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff
from pydantic import Field

from regards_order.delivery import Delivery
from regards_order.errors import RegardsOrderError
from regards_order.models import Order, OrderStatus
from regards_order.polling import Backoff
from regards_order.record import RECORD_FOLDER, DeliveryRecord
from regards_order.report import DeliveryIncomplete, FileOutcome, OrderReport, Outcome
from regards_order.settings import Connection, DownloadOptions
from regards_order.stopping import stop_requested
from regards_order.transfer import open_target
from tasks.credentials import resolve_credentials
from tasks.order import list_available_files, poll_order
from tasks.transfer import transfer_file

#: Upper bound of the thread pool; `options.concurrency` decides how many files run at once.
MAX_WORKERS = 64

#: Seconds between two saves of the delivery record, and two updates of the progress artifact,
#: while files keep settling (discoveries are saved at once).
RECORD_SAVE_INTERVAL = 2.0
PROGRESS_INTERVAL = 1.0

#: Order expiry closer than this is warned about.
EXPIRY_WARNING_SECONDS = 24 * 3600.0


@flow(
    name="download-order",
    flow_run_name="download-order-{order_id}",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_WORKERS),
    validate_parameters=True,
)
async def download_order(
    order_id: Annotated[int, Field(gt=0, title="Order id", description="The REGARDS order.")],
    target: Annotated[
        str,
        Field(
            min_length=1,
            title="Target",
            description="Folder or fsspec URL the files go to, e.g. ./data or s3://bucket/prefix.",
        ),
    ],
    connection: Connection,
    options: DownloadOptions = DownloadOptions(),  # noqa: B008 - immutable (frozen) default
) -> OrderReport:
    """Poll the order, transfer each file as it becomes available, report every outcome."""
    logger = get_run_logger()
    connection = await resolve_credentials(connection)
    destination = open_target(target, options.storage_options)
    destination.check()
    delivery = Delivery(DeliveryRecord.load(destination, order_id))
    for folder in (destination.root, destination.path(RECORD_FOLDER)):
        if removed := destination.remove_stale_partials(folder):
            logger.info("Removed %d partial files left by an earlier run that died", removed)
    transfer = transfer_file.with_options(
        retries=options.retries,
        retry_delay_seconds=exponential_backoff(options.retry_delay)(options.retries),
        retry_jitter_factor=0.5 if options.retry_delay else None,
    )
    finished: queue.Queue[PrefectFuture[FileOutcome]] = queue.Queue()
    running: dict[PrefectFuture[FileOutcome], str] = {}
    pace = Backoff(options.poll_interval, options.max_poll_interval)
    deadline = time.monotonic() + options.timeout if options.timeout else float("inf")
    progress = await acreate_progress_artifact(0.0, description=f"Order {order_id}: files verified")
    status, problems, warnings = OrderStatus.UNKNOWN, [], []
    next_look, poll_errors, final, progress_at = 0.0, 0, False, 0.0
    last_error: RegardsOrderError | None = None

    while True:
        now = time.monotonic()
        if now >= next_look:
            try:
                order = poll_order(connection, order_id)
                gone = order.status.files_gone
                listed = (
                    [] if gone else list_available_files(connection, order_id, options.page_size)
                )
            except RegardsOrderError as error:
                poll_errors += 1
                if not error.retryable or poll_errors >= options.max_poll_errors:
                    problems.append(str(error))
                    break
                last_error = error
                logger.warning("Looking at order %s failed, will retry: %s", order_id, error)
                next_look = now + pace.next(at_least=error.retry_after or 0.0)
                continue
            poll_errors, last_error = 0, None
            status, final = order.status, order.status.is_final
            if gone:
                problems.append(f"order {order_id} is {status}: its files are gone from the server")
                break
            new = delivery.discover(listed)
            delivery.record.save()  # before any transfer: the server may forget a file now
            _note_order(order, new=len(new), warnings=warnings, logger=logger)
            next_look = now + (pace.reset() if new else pace.next())
        while delivery.in_flight < options.concurrency and (taken := delivery.take()):
            file, name = taken
            future = transfer.submit(connection, file, name, target, options.storage_options)
            running[future] = file.key
            future.add_done_callback(finished.put)
        if final and delivery.idle:
            break
        if stop_requested():
            problems.append(f"interrupted with {delivery.known - delivery.settled} files left")
            break
        if now >= deadline:
            problems.append(
                f"the deadline of {options.timeout:g} s passed with "
                f"{delivery.known - delivery.settled} known files not delivered"
                + (f" (last error: {last_error})" if last_error else "")
            )
            break
        # Wake at least every second, so that a stop request is honoured promptly.
        wait = max(0.0, min(next_look, deadline, time.monotonic() + 1.0) - time.monotonic())
        settled = await _settle_finished(finished, running, delivery, wait)
        if settled:
            delivery.record.save(at_most_every=RECORD_SAVE_INTERVAL)
            if time.monotonic() - progress_at >= PROGRESS_INTERVAL:
                done = 100.0 * delivery.settled / delivery.known
                await aupdate_progress_artifact(progress, done)
                progress_at = time.monotonic()
            if delivery.idle:
                next_look = 0.0  # the server may release the next suborder now: look again

    while running:  # let transfers in flight finish, whatever ended the loop
        await _settle_finished(finished, running, delivery, None)
    delivery.record.save()
    await aupdate_progress_artifact(progress, 100.0 * delivery.settled / max(delivery.known, 1))
    if status in (OrderStatus.DONE_WITH_WARNING, OrderStatus.FAILED, OrderStatus.ERROR):
        problems.append(f"the server ended the order {status}: some of its files are in error")
    report = delivery.report(str(status), problems, warnings)
    await _publish(report)
    if not report.ok:
        raise DeliveryIncomplete(report)
    logger.info(report.summary())
    return report


async def _settle_finished(
    finished: queue.Queue[PrefectFuture[FileOutcome]],
    running: dict[PrefectFuture[FileOutcome], str],
    delivery: Delivery,
    wait: float | None,
) -> int:
    """Wait up to `wait` seconds for a transfer to end, then settle every ended one."""
    count = 0
    try:
        if wait == 0:
            future: PrefectFuture[FileOutcome] | None = finished.get_nowait()
        else:
            future = await asyncio.to_thread(finished.get, True, wait)
    except queue.Empty:
        return 0
    while future is not None:
        key = running.pop(future)
        delivery.settle(_outcome(future, delivery, key))
        count += 1
        try:
            future = finished.get_nowait()
        except queue.Empty:
            future = None
    return count


def _outcome(future: PrefectFuture[FileOutcome], delivery: Delivery, key: str) -> FileOutcome:
    result: Any = future.result(raise_on_failure=False)
    if isinstance(result, FileOutcome):
        return result
    file = delivery.file(key)
    attempts = getattr(result, "attempts", None) or 1
    reason = str(result) or type(result).__name__
    location = delivery.location(file)
    return FileOutcome.for_file(
        file, target=location, outcome=Outcome.FAILED, attempts=attempts, error=reason
    )


def _note_order(order: Order, *, new: int, warnings: list[str], logger: Any) -> None:
    logger.info(
        "Order %s is %s (%s%% restored, %s available, %s in error); %d new files",
        order.id,
        order.status,
        order.percent_completed,
        order.available_files_count,
        order.files_in_error_count,
        new,
    )
    if order.status is OrderStatus.PAUSED and "paused" not in " ".join(warnings):
        warnings.append(f"order {order.id} is paused on the server: it progresses once resumed")
        logger.warning(warnings[-1])
    expires = order.expiration_date
    if expires is not None and not any("expires" in w for w in warnings):
        left = expires.timestamp() - time.time()
        if left < EXPIRY_WARNING_SECONDS:
            warnings.append(f"order {order.id} expires at {expires.isoformat()}")
            logger.warning(warnings[-1])


async def _publish(report: OrderReport) -> None:
    rows = [
        {
            "file": f.filename,
            "id": f.id,
            "outcome": f.outcome.value,
            "size": f.size,
            "md5": f.md5,
            "attempts": f.attempts,
            "target": f.target,
            "error": f.error or "",
        }
        for f in report.files
    ]
    await acreate_table_artifact(
        rows,
        key=f"order-{report.order_id}-files",
        description=report.summary(),
    )
