"""Unpack a delivered archive beside it, on the same target, and announce what it held.

The example to copy for any step that follows a delivery. It runs only when deployed with the
trigger of deployments/unpack_trigger.py, once for each `regards-order.file.delivered` event
of a file named *.zip, *.tar, *.tar.gz or *.tgz. It extracts the archive into the folder
beside it named after it (`a/b/x.tar.gz` -> `a/b/x/`) on the same fsspec target, refusing
any member that could land outside that folder, then emits `regards-order.archive.unpacked`.
It ends Failed when a member was refused or failed the archive's check, or when the archive
could not be read, so that an operator sees it.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.events import emit_event
from prefect.states import Failed

from regards_order.errors import RegardsOrderError
from regards_order.flows.form import titled
from regards_order.flows.publish import tidy_run_logs
from regards_order.settings import check_no_credentials
from regards_order.tasks.unpack import unpack_members, unpacked_event
from regards_order.transfer import open_target
from regards_order.unpack import UnpackReport, archive_format


# Async: a sync flow served by Prefect logs a traceback when it returns a Failed state.
@flow(name="unpack-archive", validate_parameters=True)
async def unpack_archive(
    target: Annotated[str, titled("Archive", min_length=1)],
    storage_options: Annotated[dict[str, Any], titled("Storage options")] = {},  # noqa: B006
    order_id: Annotated[str, titled("Order id")] = "",
    file_id: Annotated[str, titled("File id")] = "",
    product_id: Annotated[str, titled("Product id")] = "",
) -> UnpackReport | State[Any]:
    """Extract the archive's members into the folder beside it and announce them.

    Args:
        target: The archive's full target URL or path, e.g. s3://bucket/prefix/x.tar.gz.
        storage_options: fsspec options of that target, e.g. {"endpoint_url": "..."}; never
            credentials: the worker's environment, profiles or instance roles provide them.
        order_id: The REGARDS order the archive was delivered from, when known.
        file_id: The REGARDS file the archive was delivered as, when known.
        product_id: The REGARDS product the archive belongs to, when known.
    """
    tidy_run_logs()
    options = storage_options
    try:
        check_no_credentials(options)
        archive_format(target)
        open_target(target, options)
    except (ValueError, RegardsOrderError) as error:
        return Failed(message=f"Cannot unpack {target}: {error}")
    report = unpack_members(target, options)
    emit_event(**unpacked_event(report, order_id=order_id, file_id=file_id, product_id=product_id))
    if not report.ok:
        get_run_logger().error("Not unpacked whole: %s", report.summary())
        return Failed(message=report.summary())
    get_run_logger().info(report.summary())
    return report
