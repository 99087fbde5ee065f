"""Deliver every file of one REGARDS order to a target (a folder or any fsspec URL), verified.

The server restores an order in suborders and holds back the next ones until the files ready
now are downloaded, so this flow never waits for DONE: it looks at the order with a capped,
jittered backoff, transfers each newly available file as its own task run while the order is
still running, and ends when the order is final and nothing is left to download (or at the
deadline, or on a stop request). It ends Completed only if every file is verified at the
target; otherwise Failed, with the reason as its message and the report as its data.
"""

from __future__ import annotations

import time
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.context import SyncClientContext
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from regards_order.client import client_held
from regards_order.delivery import Delivery
from regards_order.errors import RegardsOrderError
from regards_order.flows.form import titled
from regards_order.flows.publish import Progress, one_line_per_file, publish
from regards_order.flows.transfers import Transfers, look, transfer_runner
from regards_order.leases import claim_target
from regards_order.record import DeliveryRecord
from regards_order.report import OrderReport
from regards_order.run import OrderRun
from regards_order.settings import Connection, DownloadOptions
from regards_order.tasks.credentials import resolve_credentials
from regards_order.tasks.limits import ensure_user_limit
from regards_order.transfer import open_target


@flow(
    name="download-order",
    flow_run_name="download-order-{order_id}",
    # The transfers get a runner of their own (see transfer_runner); this one runs nothing.
    task_runner=ThreadPoolTaskRunner(max_workers=1),  # type: ignore[arg-type]
    validate_parameters=True,
)
async def download_order(
    order_id: Annotated[int, titled("Order id", gt=0)],
    target: Annotated[str, titled("Target", min_length=1)],
    connection: Annotated[Connection, titled("REGARDS server and user")],
    options: Annotated[DownloadOptions, titled("Download settings")] = DownloadOptions(),  # noqa: B008 - immutable (frozen) default
) -> OrderReport | State[OrderReport]:
    """Poll the order, transfer each file as it becomes available, report every outcome.

    Args:
        order_id: The REGARDS order (a positive integer).
        target: Folder or fsspec URL the files go to, e.g. /data/regards or s3://bucket/prefix.
        connection: The REGARDS server and user; the password or token comes from the Secret
            block named here, or from the environment of the worker.
        options: Parallelism, polling, deadline, retries, and the target's storage options.
    """
    logger = get_run_logger()
    one_line_per_file()
    try:
        connection = await resolve_credentials(connection)
        destination = open_target(target, options.storage_options)
        destination.check()
        delivery = Delivery(DeliveryRecord(destination, order_id))
        lease, removed = claim_target(destination)
    except RegardsOrderError as error:  # expected: said in one line, no traceback
        return Failed(message=str(error), data=error)
    if removed:
        logger.info("Removed %d leftovers of runs that died", removed)
    run = OrderRun(order_id, delivery, options, logger=logger)
    user_limit = await ensure_user_limit(connection, options.user_transfer_limit or None)
    progress = await Progress.start(run)
    try:
        # One Prefect API client for every transfer thread: without a client in the context
        # they inherit, Prefect builds two per task run (a TLS context each).
        with (
            client_held(connection),
            SyncClientContext.get_or_create(),
            transfer_runner(options) as runner,
        ):
            transfers = Transfers(
                runner, run, connection=connection, target=target, owner=lease.run_id,
                storage_options=options.storage_options, user_limit=user_limit,
            )  # fmt: skip
            while run.going:
                if run.look_due():
                    look(run, connection)
                transfers.start()
                await transfers.wait(run.wake_in())
                run.tick()
                lease.renew(time.monotonic())
                await progress.update()
            await transfers.drain(between=lambda: lease.renew(time.monotonic()))
    finally:
        lease.release()
    report = run.report()
    await publish(report, progress)
    if not report.ok:
        return Failed(message=report.summary(), data=report)
    logger.info(report.summary())
    return report
