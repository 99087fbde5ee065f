"""Deliver every file of one REGARDS order to a target (a folder or any fsspec URL), verified.

The server restores an order in suborders and holds back the next ones until the files ready
now are downloaded, so this flow never waits for DONE: it looks at the order with a capped,
jittered backoff, transfers each newly available file as its own task run while the order is
still running, and ends when the order is final and nothing is left to download (or at the
deadline, or on a stop request). It ends Completed only if every file is verified at the target.
"""

from __future__ import annotations

import time
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import (
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.context import SyncClientContext
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from flows.order_run import OrderRun, transfer_runner
from regards_order.delivery import Delivery
from regards_order.record import RECORD_FOLDER, DeliveryRecord
from regards_order.report import DeliveryIncomplete, OrderReport
from regards_order.settings import Connection, DownloadOptions
from regards_order.transfer import open_target
from tasks.credentials import resolve_credentials
from tasks.limits import ensure_user_limit

#: Seconds between two updates of the progress artifact.
PROGRESS_INTERVAL = 1.0


@flow(
    name="download-order",
    flow_run_name="download-order-{order_id}",
    # The transfers get a runner of their own (see transfer_runner); this one runs nothing.
    task_runner=ThreadPoolTaskRunner(max_workers=2),
    validate_parameters=True,
)
async def download_order(
    # Prefect titles a top-level parameter by its name and describes it from the docstring's
    # Args: the title goes through json_schema_extra, the description below.
    order_id: Annotated[int, Field(gt=0, json_schema_extra={"title": "Order id"})],
    target: Annotated[str, Field(min_length=1, json_schema_extra={"title": "Target"})],
    connection: Connection,
    options: DownloadOptions = DownloadOptions(),  # noqa: B008 - immutable (frozen) default
) -> OrderReport:
    """Poll the order, transfer each file as it becomes available, report every outcome.

    Args:
        order_id: The REGARDS order (a positive integer).
        target: Folder or fsspec URL the files go to, e.g. /data/regards or s3://bucket/prefix.
        connection: The REGARDS server and user; the password or token comes from the Secret
            block named here, or from the environment of the worker.
        options: Parallelism, polling, deadline, retries, and the target's storage options.
    """
    logger = get_run_logger()
    connection = await resolve_credentials(connection)
    destination = open_target(target, options.storage_options)
    destination.check()
    delivery = Delivery(DeliveryRecord.load(destination, order_id))
    for folder in (destination.root, destination.path(RECORD_FOLDER)):
        if removed := destination.remove_stale_partials(folder):
            logger.info("Removed %d partial files left by an earlier run that died", removed)
    user_limit = None
    if options.user_transfer_limit:
        user_limit = await ensure_user_limit(connection, options.user_transfer_limit)
    run = OrderRun(order_id, target, connection, options, delivery, user_limit, logger)
    progress = await acreate_progress_artifact(0.0, description=f"Order {order_id}: files done")
    shown_at = 0.0

    # One Prefect API client for every transfer thread: without a client in the context they
    # inherit, Prefect builds two per task run (a TLS context each: the largest CPU cost of a
    # small file).
    with SyncClientContext.get_or_create(), transfer_runner(options) as runner:
        while True:
            if run.due():
                run.look()
            run.start_transfers(runner)
            if not run.keep_going():
                break
            if await run.wait_for_something() and time.monotonic() - shown_at > PROGRESS_INTERVAL:
                await aupdate_progress_artifact(progress, 100.0 * delivery.settled / delivery.known)
                shown_at = time.monotonic()
        await run.drain()

    await aupdate_progress_artifact(progress, 100.0 * delivery.settled / max(delivery.known, 1))
    report = run.report()
    await _publish(report)
    if not report.ok:
        raise DeliveryIncomplete(report)
    logger.info(report.summary())
    return report


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
