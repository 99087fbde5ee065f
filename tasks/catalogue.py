"""Prefect tasks that order from the REGARDS catalogue: search it, check the basket, create the
order (once per request and target)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from regards_order import catalogue
from regards_order.catalogue import OrderRequest, Selection
from regards_order.client import shared_client
from regards_order.report import OrderCreated
from regards_order.settings import Connection
from regards_order.transfer import open_target


@task(name="search-catalogue", cache_policy=NO_CACHE)
def search_catalogue(connection: Connection, request: OrderRequest) -> Selection:
    """The products, files and bytes the request would order (every query, every page)."""
    return catalogue.plan(shared_client(connection), request)


@task(name="check-basket", cache_policy=NO_CACHE)
def check_basket(connection: Connection, empty_it: bool) -> None:
    """Make sure the order holds the request alone: an auto-order orders the whole basket."""
    catalogue.check_basket(shared_client(connection), empty_it)


@task(name="create-order", cache_policy=NO_CACHE)
def create_order(
    connection: Connection,
    request: OrderRequest,
    selection: Selection,
    target: str,
    storage_options: dict[str, Any],
) -> OrderCreated:
    """Create the order by auto-order, once per request and target (see catalogue.place)."""
    destination = open_target(target, storage_options) if target else None
    return catalogue.place(shared_client(connection), request, selection, destination)
