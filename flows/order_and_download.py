"""Order from a catalogue query, then deliver the order, verified, to a target.

Search the catalogue (every query, every page) and size what it finds; refuse when nothing
matches or it is over the size limit; check the user's basket (an auto-order orders all of
it); create the order by auto-order; then deliver it as download-order does. Once per request
and target: the same queries, filters and label to the same target find the order created
before (the target's record of requests) and resume its delivery. Queries holding `{since}`
and `{until}` make a subscription: each run orders what is new since the last one.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from regards_order.catalogue import OrderRequest, human_size, parse_size, recorded
from regards_order.errors import NothingToOrder, OverSizeLimit, RegardsOrderError
from regards_order.flows.deliver import deliver, verdict
from regards_order.flows.form import titled
from regards_order.flows.publish import tidy_run_logs
from regards_order.flows.subscription import close_window, open_window
from regards_order.models import DataType
from regards_order.report import OrderCreated, OrderReport
from regards_order.settings import Connection, DownloadOptions
from regards_order.tasks.catalogue import check_basket, create_order, search_catalogue
from regards_order.tasks.credentials import resolve_credentials
from regards_order.transfer import open_target


@flow(
    name="order-and-download",
    task_runner=ThreadPoolTaskRunner(max_workers=1),  # type: ignore[arg-type]
    validate_parameters=True,
)
async def order_and_download(
    queries: Annotated[list[str], titled("Catalogue queries", min_length=1)],
    connection: Annotated[Connection, titled("REGARDS server and user")],
    target: Annotated[str, titled("Target")] = "",
    data_types: Annotated[list[DataType], titled("Data types")] = [DataType.RAWDATA],  # noqa: B006
    filename_regexp: Annotated[str, titled("File names")] = "",
    label: Annotated[str, titled("Label")] = "",
    max_size: Annotated[str, titled("Size limit")] = "",
    empty_basket: Annotated[bool, titled("Empty the basket first")] = False,
    since: Annotated[str, titled("First window's start")] = "",
    options: Annotated[DownloadOptions, titled("Download settings")] = DownloadOptions(),  # noqa: B008
) -> OrderReport | OrderCreated | State[OrderReport]:
    """Order what the queries find, then deliver it to the target.

    Args:
        queries: Lucene queries of the catalogue, e.g. providerId:S2A_* or tags:"tile T31TCJ";
            {since} and {until} are filled with the window of a subscription.
        connection: The REGARDS server and user; the password or token comes from the Secret
            block named here, or from the environment of the worker.
        target: Folder or fsspec URL the files go to; empty: create the order, deliver nothing.
        data_types: What to order of each product: RAWDATA, QUICKLOOK (every size), or both.
        filename_regexp: Only the files whose whole name matches this regular expression.
        label: A name for this request (with the queries and filters, it is the request's
            identity: the same request to the same target orders once).
        max_size: Refuse to order more than this, e.g. 200GB or 1.5TiB; empty: no limit.
        empty_basket: Empty the user's basket first (an auto-order orders all of it).
        since: For queries holding {since}: the start of the first window (ISO 8601).
        options: Parallelism, polling, deadline, retries, and the target's storage options.
    """
    tidy_run_logs()
    try:
        connection = await resolve_credentials(connection)
        request = OrderRequest(
            queries=tuple(queries), data_types=tuple(data_types),
            filename_regexp=filename_regexp or None, label=label or None,
            max_size=parse_size(max_size) if max_size else None,
        )  # fmt: skip
        window = await open_window(since) if request.unfilled else None
        if window is not None:
            request = request.with_window(window.since, window.until)
        created = _recorded(request, target, options)
        if created is None:
            selection = search_catalogue(connection, request)
            if not selection.files:
                if window is not None:  # nothing new in the window: nothing to do
                    await close_window(window)
                    return Completed(message=f"nothing new from {window.since} to {window.until}")
                raise NothingToOrder(f"the queries match no file to order: {', '.join(queries)}")
            if selection.exceeds(request.max_size):
                raise OverSizeLimit(
                    f"the queries would order {human_size(selection.size)} "
                    f"({selection.files} files of {selection.products} products), over the "
                    f"limit of {human_size(request.max_size or 0)}"
                )
            check_basket(connection, empty_basket)
            created = create_order(connection, request, selection, target, options.storage_options)
        get_run_logger().info("Order %s: %s", created.order_id, created.status)
        if not target:
            return created
        report = await deliver(created.order_id, target, connection, options)
    except (RegardsOrderError, ValueError) as error:  # expected: one line, no traceback
        return Failed(message=str(error), data=error)
    report = report.model_copy(update={"order": created})
    if window is not None and report.ok:
        await close_window(window)
    return verdict(report)


def _recorded(request: OrderRequest, target: str, options: DownloadOptions) -> OrderCreated | None:
    """The order an earlier run created for this very request, at this target."""
    if not target:
        return None
    return recorded(open_target(target, options.storage_options), request)
