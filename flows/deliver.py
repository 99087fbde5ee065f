"""The delivery of one order, shared by the flows that deliver (download-order, and
order-and-download once it has created its order): look at the order, transfer each file as
its own task run while the order runs, and report. This is the outline; the decisions are
`regards_order.run.OrderRun`'s, the Prefect side of the loop is in transfers.py."""

from __future__ import annotations

import time

from prefect import get_run_logger
from prefect.client.schemas.objects import State
from prefect.context import SyncClientContext
from prefect.states import Failed

from regards_order.client import client_held
from regards_order.delivery import Delivery
from regards_order.errors import RegardsOrderError
from regards_order.flows.events import order_ended
from regards_order.flows.publish import Progress, publish
from regards_order.flows.transfers import (
    Transfers,
    know_whole_order_at_the_end,
    look,
    transfer_runner,
)
from regards_order.leases import claim_target
from regards_order.record import DeliveryRecord
from regards_order.report import OrderReport
from regards_order.run import OrderRun
from regards_order.settings import Connection, DownloadOptions
from regards_order.tasks.limits import ensure_user_limit
from regards_order.tasks.order import read_quota
from regards_order.transfer import open_target


async def deliver(
    order_id: int, target: str, connection: Connection, options: DownloadOptions
) -> OrderReport:
    """Deliver every file of the order to `target`; its report. Raises a RegardsOrderError
    when the target cannot be used at all (unreachable, forbidden, its record unreadable)."""
    logger = get_run_logger()
    destination = open_target(target, options.storage_options)
    destination.check()
    delivery = Delivery(DeliveryRecord(destination, order_id))
    lease, removed = claim_target(destination)
    if removed:
        logger.info("Removed %d leftovers of runs that died", removed)
    run = OrderRun(order_id, delivery, options, logger=logger)
    try:
        quota = read_quota(connection)
    except RegardsOrderError as error:  # the quota only helps: do without it
        logger.warning("The user's download quota could not be read: %s", error)
        quota = None
    if quota is not None:
        run.quota_known(quota)
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
                progress.update()
            await transfers.drain(between=lambda: lease.renew(time.monotonic()))
            know_whole_order_at_the_end(run, connection)
    finally:
        lease.release()
    report = run.report()
    await publish(report, progress, destination)
    order_ended(report, target)
    return report


def verdict(report: OrderReport) -> OrderReport | State[OrderReport]:
    """The report (Completed) if every file is verified at the target; else a Failed state
    with the reason as its message (no traceback: an expected end) and the report as data."""
    if not report.ok:
        return Failed(message=report.summary(), data=report)
    get_run_logger().info(report.summary())
    return report
