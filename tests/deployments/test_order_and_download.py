"""The served order-and-download deployments: an order from catalogue queries, once per request
and target, and a subscription that orders only what is new since its last successful run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from regards_order.simulator import Simulator
from tests.helpers.deployments import (
    FAST_OPTIONS,
    ORDERED_PRODUCT,
    SUBSCRIPTION_SINCE,
    catalogue_files,
    delivered_files,
)
from tests.helpers.prefect_server import PrefectServer

FLOW = "order-and-download"
WINDOW_VARIABLE = "regards-order-window-subscription"

pytestmark = pytest.mark.usefixtures("served")


def created(regards: Simulator) -> list[int]:
    orders: list[int] = regards.stats()["catalog"]["orders_created"]
    return orders


def test_queries_are_ordered_once_and_delivered(
    prefect_server: PrefectServer, regards: Simulator, tmp_path: Path
) -> None:
    target = tmp_path / "ordered"
    parameters = {
        "queries": [f"providerId:{ORDERED_PRODUCT}"],
        "target": str(target),
        "label": "on demand",
        "options": FAST_OPTIONS,
    }
    before = created(regards)
    run = prefect_server.wait_final(prefect_server.run(FLOW, FLOW, **parameters).id)
    assert run.state.is_completed(), run.state.message
    assert delivered_files(target) == catalogue_files(regards, ORDERED_PRODUCT)
    assert len(created(regards)) == len(before) + 1
    again = prefect_server.wait_final(prefect_server.run(FLOW, FLOW, **parameters).id)
    assert again.state.is_completed(), again.state.message
    assert len(created(regards)) == len(before) + 1  # found in the target's record
    assert delivered_files(target) == catalogue_files(regards, ORDERED_PRODUCT)


def test_a_subscription_orders_what_is_new_since_its_last_run(
    prefect_server: PrefectServer, regards: Simulator, tmp_path: Path
) -> None:
    target = tmp_path / "subscribed"
    parameters = {"since": SUBSCRIPTION_SINCE, "target": str(target), "options": FAST_OPTIONS}
    started_at = datetime.now(UTC)
    before = created(regards)
    first = prefect_server.wait_final(prefect_server.run("subscription", FLOW, **parameters).id)
    assert first.state.is_completed(), first.state.message
    # start_date:[{since} TO {until}] from SUBSCRIPTION_SINCE: the two products dated after it.
    assert delivered_files(target) == catalogue_files(regards, "NEW_0002", "NEW_0003")
    assert len(created(regards)) == len(before) + 1
    with prefect_server.client() as client:
        window = client.read_variable_by_name(WINDOW_VARIABLE).value
    assert window["pending"] is None
    assert datetime.fromisoformat(window["done"]) >= started_at

    second = prefect_server.wait_final(prefect_server.run("subscription", FLOW, **parameters).id)
    assert second.state.is_completed(), second.state.message
    assert (second.state.message or "").startswith("nothing new from ")
    assert len(created(regards)) == len(before) + 1  # nothing ordered for an empty window
    with prefect_server.client() as client:
        later = client.read_variable_by_name(WINDOW_VARIABLE).value
    assert later["done"] > window["done"]
