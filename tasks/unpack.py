"""The Prefect task that unpacks one delivered archive, and the event that announces it."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from regards_order.errors import is_retryable
from regards_order.unpack import UnpackReport, unpack

#: Name of the event emitted once an archive is unpacked (completely or not).
UNPACKED_EVENT = "regards-order.archive.unpacked"

#: Members an event lists (path, size, MD5; or why not unpacked) at most; the rest are
#: counted only. An archive may hold a million members, and Prefect refuses events over
#: 1.5 MB: fewer are listed if their names are so long that the payload would pass
#: PAYLOAD_BYTES.
LISTED_MEMBERS = 1000
PAYLOAD_BYTES = 500_000

#: Refused or failed members named one by one in the log; the report holds every one.
LOGGED_PROBLEMS = 20


def retry_on_passing_error(task: Task[Any, Any], run: TaskRun, state: State[Any]) -> bool:
    """Retry only when the error raised may pass (a throttled or failing target)."""
    error = state.data
    return isinstance(error, BaseException) and is_retryable(error)


@task(
    name="unpack-members",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_on_passing_error,
)
def unpack_members(target: str, storage_options: dict[str, Any]) -> UnpackReport:
    """Extract every safe member of the archive at `target` into the folder beside it."""
    report = unpack(target, storage_options)
    logger = get_run_logger()
    problems = [("Refused", p) for p in report.refused] + [("Failed", p) for p in report.failed]
    for verdict, problem in problems[:LOGGED_PROBLEMS]:
        logger.warning("%s %r: %s", verdict, problem.member, problem.reason)
    if len(problems) > LOGGED_PROBLEMS:
        logger.warning("... and %d more members not unpacked", len(problems) - LOGGED_PROBLEMS)
    if report.error:
        logger.warning("%s: %s", report.archive, report.error)
    return report


def unpacked_event(
    report: UnpackReport,
    *,
    order_id: str | None = None,
    file_id: str | None = None,
    product_id: str | None = None,
) -> dict[str, Any]:
    """The arguments of emit_event for `report`: the archive as the resource (named by the
    order and file it was delivered as, else by its URL), the delivered file as related."""
    known = bool(order_id and file_id)
    resource = {
        "prefect.resource.id": (
            f"regards-order.archive.{order_id}.{file_id}"
            if known
            else f"regards-order.archive.{report.archive}"
        ),
        "prefect.resource.name": report.archive.rpartition("/")[2],
        "regards-order.target": report.archive,
        "regards-order.folder": report.folder,
        # Downstream triggers match labels, never payloads: this one tells a whole unpack.
        "regards-order.unpack.complete": str(report.ok).lower(),
    }
    context = {"regards.order.id": order_id, "regards.file.id": file_id}
    context["regards.product.id"] = product_id
    resource.update({label: value for label, value in context.items() if value})
    related = []
    if known:
        file_resource = f"regards-order.file.{order_id}.{file_id}"
        related.append({"prefect.resource.id": file_resource, "prefect.resource.role": "archive"})
    listed = LISTED_MEMBERS
    payload = _payload(report, listed)
    while listed and len(json.dumps(payload)) > PAYLOAD_BYTES:  # names can be long
        listed //= 2
        payload = _payload(report, listed)
    return {"event": UNPACKED_EVENT, "resource": resource, "related": related, "payload": payload}


def _payload(report: UnpackReport, listed: int) -> dict[str, Any]:
    """What the event says of `report`, listing at most `listed` members of each kind."""
    return {
        "folder": report.folder,
        "members": len(report.extracted),
        "bytes": report.bytes,
        "refused": [asdict(problem) for problem in report.refused[:listed]],
        "failed": [asdict(problem) for problem in report.failed[:listed]],
        "error": report.error,
        "summary": report.summary(),
        "extracted": [asdict(member) for member in report.extracted[:listed]],
        "listed_all": max(len(report.extracted), len(report.refused), len(report.failed)) <= listed,
    }
