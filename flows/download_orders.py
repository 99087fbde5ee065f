"""Deliver many REGARDS orders at once, spread over the workers of a work pool.

One `download-order` deployment run per order, so that every worker pulling from the
deployment's work pool (on one machine or many) takes its share. The orders are given by id, or
chosen on the server: every order of the user in a given status. Each lands under
`<target>/<order id>`. The REGARDS password never travels with the runs: each worker reads it
from the Secret block named by the connection, or from its own environment.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.deployments.flow_runs import arun_deployment
from prefect.states import Failed
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from regards_order.flows.form import titled
from regards_order.models import OrderStatus
from regards_order.settings import Connection, DownloadOptions
from regards_order.tasks.credentials import resolve_credentials
from regards_order.tasks.order import list_orders

#: Seconds between two looks at the order runs.
WATCH_INTERVAL = 2.0


@flow(name="download-orders", flow_run_name="download-orders", validate_parameters=True)
async def download_orders(
    target: Annotated[str, titled("Target", min_length=1)],
    connection: Annotated[Connection, titled("REGARDS server and user")],
    order_ids: Annotated[list[Annotated[int, Field(gt=0)]], titled("Order ids")] = [],  # noqa: B006
    status: Annotated[OrderStatus | SkipJsonSchema[None], titled("Orders in status")] = None,
    deployment: Annotated[str, titled("Deployment")] = "download-order/download-order",
    # Defaults copied by pydantic (the list) or immutable (the frozen options).
    options: Annotated[DownloadOptions, titled("Download settings")] = DownloadOptions(),  # noqa: B008
) -> dict[int, str] | State[dict[int, str]]:
    """Start one download-order run per order, wait for all, report each order's end.

    Args:
        target: Folder or fsspec URL; each order goes to <target>/<order id>.
        connection: The REGARDS server and user; the password or token comes from the Secret
            block named here, or from the environment of the workers.
        order_ids: The orders to deliver; none: every order of the user in the status below.
        status: Every order of the user in this status (when no order id is given).
        deployment: The download-order deployment to run for each order.
        options: Parallelism, polling, deadline, retries and storage options of every run.
    """
    logger = get_run_logger()
    ids = list(order_ids)
    if not ids and status is not None:
        ids = list_orders(await resolve_credentials(connection), status)
    if not ids:
        return Failed(message="no order to deliver: give order ids, or a status some order has")
    runs: dict[int, UUID] = {}
    for order_id in ids:
        parameters: dict[str, Any] = {
            "order_id": order_id,
            "target": f"{target.rstrip('/')}/{order_id}",
            "connection": connection,
            "options": options,
        }
        started = await arun_deployment(deployment, parameters=parameters, timeout=0)
        runs[order_id] = started.id
        logger.info("Order %s: flow run %s", order_id, started.name)
    ends = await _watch(runs)
    await acreate_table_artifact(
        [{"order": order_id, "end": end} for order_id, end in ends.items()],
        key="download-orders",
        description=f"{len(ends)} orders",
    )
    failed = {order_id: end for order_id, end in ends.items() if end != "COMPLETED"}
    if failed:
        listed = ", ".join(f"{order_id} ({end})" for order_id, end in failed.items())
        return Failed(message=f"{len(failed)} of {len(ends)} orders not delivered: {listed}")
    return ends


async def _watch(runs: dict[int, UUID]) -> dict[int, str]:
    """Wait until every run is final; return each order's final state type."""
    ends: dict[int, str] = {}
    async with get_client() as client:
        while len(ends) < len(runs):
            for order_id, run_id in runs.items():
                if order_id in ends:
                    continue
                run = await client.read_flow_run(run_id)
                if run.state is not None and run.state.is_final():
                    ends[order_id] = run.state.type.value
            if len(ends) < len(runs):
                await asyncio.sleep(WATCH_INTERVAL)
    return ends
