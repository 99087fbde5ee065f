"""The Prefect events a delivery emits, for automations and deployment triggers to act on:
one per file the run downloaded and verified, one when the run ends. No secret is ever in one:
they name files, orders and places at the target.

    regards-order.file.delivered    resource regards-order.file.<order id>.<file id>
    regards-order.order.delivered   resource regards-order.order.<order id>
    regards-order.order.failed      (the same, when the order was not delivered whole)
"""

from __future__ import annotations

from prefect.events import emit_event

from regards_order.report import FileOutcome, OrderReport, Outcome

FILE_DELIVERED = "regards-order.file.delivered"
ORDER_DELIVERED = "regards-order.order.delivered"
ORDER_FAILED = "regards-order.order.failed"


def order_resource(order_id: int) -> dict[str, str]:
    """The order as an event's resource."""
    return {
        "prefect.resource.id": f"regards-order.order.{order_id}",
        "prefect.resource.name": f"REGARDS order {order_id}",
        "regards.order.id": str(order_id),
    }


def file_delivered(order_id: int, outcome: FileOutcome, name: str) -> None:
    """Say that a file was downloaded and verified at `outcome.target` under `name` (files
    found already there are not news: no event)."""
    if outcome.outcome is not Outcome.DOWNLOADED:
        return
    resource = {
        "prefect.resource.id": f"regards-order.file.{order_id}.{outcome.id or outcome.key}",
        "prefect.resource.name": name,
        "regards.order.id": str(order_id),
        "regards.file.id": str(outcome.id) if outcome.id is not None else outcome.key,
        "regards-order.target": outcome.target,
    }
    if outcome.product_id:
        resource["regards.product.id"] = outcome.product_id
    emit_event(
        FILE_DELIVERED,
        resource=resource,
        related=[{**order_resource(order_id), "prefect.resource.role": "order"}],
        payload={"md5": outcome.md5, "size": outcome.size, "target": outcome.target},
    )


def order_ended(report: OrderReport, target: str) -> None:
    """Say how the run ended: delivered whole, or failed with its problems."""
    emit_event(
        ORDER_DELIVERED if report.ok else ORDER_FAILED,
        resource={**order_resource(report.order_id), "regards-order.target": target},
        payload={
            "status": report.status,
            "end": report.end.value,
            "counts": report.counts,
            "files_in_error": report.files_in_error,
            "target": target,
            "problems": report.problems[:20],  # an event stays small whatever the order
        },
    )
