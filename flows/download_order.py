"""Deliver every file of one REGARDS order to a target (a folder or any fsspec URL), verified.

The server restores an order in suborders and holds back the next ones until the files ready
now are downloaded, so this flow never waits for DONE: it looks at the order with a capped,
jittered backoff, transfers each newly available file as its own task run while the order is
still running, and ends when the order is final and nothing is left to download (or at the
deadline, or on a stop request). It ends Completed only if every file is verified at the
target; otherwise Failed, with the reason as its message and the report as its data.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from regards_order.errors import RegardsOrderError
from regards_order.flows.deliver import deliver, verdict
from regards_order.flows.form import titled
from regards_order.flows.publish import tidy_run_logs
from regards_order.report import OrderReport
from regards_order.settings import Connection, DownloadOptions
from regards_order.tasks.credentials import resolve_credentials


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
    tidy_run_logs()
    try:
        connection = await resolve_credentials(connection)
        report = await deliver(order_id, target, connection, options)
    except RegardsOrderError as error:  # expected: said in one line, no traceback
        return Failed(message=str(error), data=error)
    return verdict(report)
