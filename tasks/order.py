"""Prefect tasks that read an order from REGARDS: its status, the files available now, every
file of it in every state, and the user's download quota."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from regards_order.client import shared_client
from regards_order.errors import EndpointAbsent
from regards_order.models import Order, OrderFile, OrderStatus, Quota, ServerFile
from regards_order.settings import Connection


@task(name="poll-order", task_run_name="poll-order-{order_id}", cache_policy=NO_CACHE)
def poll_order(connection: Connection, order_id: int) -> Order:
    """The order's status and counts, as the server sees them now."""
    return shared_client(connection).get_order(order_id)


@task(name="list-available-files", task_run_name="list-files-{order_id}", cache_policy=NO_CACHE)
def list_available_files(connection: Connection, order_id: int, page_size: int) -> list[OrderFile]:
    """Every file of the order available for download now, all pages walked."""
    return list(shared_client(connection).iter_available(order_id, page_size))


@task(name="list-orders", task_run_name="list-orders-{status}", cache_policy=NO_CACHE)
def list_orders(connection: Connection, status: OrderStatus | None) -> list[int]:
    """Ids of the user's orders, all of them or those in `status`."""
    return [
        order.id
        for order in shared_client(connection).iter_orders()
        if status is None or order.status is status
    ]


@task(name="list-order-files", task_run_name="list-all-files-{order_id}", cache_policy=NO_CACHE)
def list_order_files(
    connection: Connection, order_id: int, dataset_task_ids: tuple[int, ...], page_size: int
) -> list[ServerFile] | None:
    """Every file of the order in every state, or None where the server cannot list them."""
    client = shared_client(connection)
    try:
        return [
            file
            for task_id in dataset_task_ids
            for file in client.iter_order_files(order_id, task_id, page_size)
        ]
    except EndpointAbsent:
        return None


@task(name="read-quota", cache_policy=NO_CACHE)
def read_quota(connection: Connection) -> Quota | None:
    """The user's download quota, or None where the server does not tell."""
    return shared_client(connection).quota()
