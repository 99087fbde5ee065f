"""Baskets and auto-orders (``/user/orders/apply``) over real HTTP, as rs-order answers them."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.helpers.simulator_client import ORDERS, USER, fetch, listed, md5, order, running, summary

APPLY = f"{ORDERS}/apply"
BASKET = "/api/v1/rs-order/order/basket"


def product(provider_id: str, dataset: str = "Optical", **extra: Any) -> dict[str, Any]:
    return {
        "provider_id": provider_id,
        "dataset": dataset,
        "properties": {"orbit": int(provider_id[-1])},
        "files": {
            "RAWDATA": [{"filename": f"{provider_id}.zip", "size": 1000}],
            "QUICKLOOK_SD": [{"filename": f"{provider_id}_sd.png", "size": 10}],
            "QUICKLOOK_HD": [{"filename": f"{provider_id}_hd.png", "size": 20}],
            "THUMBNAIL": [{"filename": f"{provider_id}_th.png", "size": 5}],
        },
        **extra,
    }


CATALOG = {
    "datasets": [{"label": "Optical"}, {"label": "Radar"}],
    "products": [
        product("OPT_1"),
        product("OPT_2"),
        product("RAD_3", dataset="Radar"),
        {"provider_id": "THUMB_4", "files": {"THUMBNAIL": [{"filename": "t.png", "size": 1}]}},
    ],
}


def scenario(basket: list[str] | None = None, **user: Any) -> dict[str, Any]:
    users = [{"username": USER, "tokens": ["a-long-lived-token"], "basket": basket, **user}]
    return {"users": users, "catalog": CATALOG}


def apply(client: httpx.Client, *queries: str, **body: Any) -> httpx.Response:
    return client.post(APPLY, json={"queries": list(queries), **body})


def granted(client: httpx.Client, *queries: str, **body: Any) -> int:
    r = apply(client, *queries, **body)
    assert r.status_code == 200, r.text
    content = r.json()["content"]
    assert content["status"] == "GRANTED" and set(content) == {
        "status",
        "orderId",
        "correlationId",
    }
    order_id: int = content["orderId"]
    return order_id


def names(client: httpx.Client, order_id: int) -> list[str]:
    r = client.get(f"/api/v1/rs-order/orders/{order_id}/files/available", params={"size": 100})
    return sorted(item["content"]["filename"] for item in r.json()["content"])


# ---- the basket ---------------------------------------------------------------------------


def test_no_basket_answers_204_and_an_emptied_one_too() -> None:
    with running(**scenario(basket=["providerId:OPT_1"])) as (sim, client):
        r = client.get(BASKET)
        assert r.status_code == 200 and r.json()["links"] == []
        basket = r.json()["content"]
        assert basket["owner"] == USER and isinstance(basket["id"], int)
        (selection,) = basket["datasetSelections"]
        dataset = sim.state.catalog.datasets[0]
        assert selection["datasetIpid"] == dataset.id and selection["datasetLabel"] == "Optical"
        # Only RAWDATA and quicklooks are orderable: the thumbnail is not counted.
        assert (selection["objectsCount"], selection["filesCount"], selection["filesSize"]) == (
            1,
            3,
            1030,
        )
        (items,) = selection["itemsSelections"]
        assert items["selectionRequest"]["engineType"] == "legacy"
        assert items["selectionRequest"]["searchParameters"] == {"q": ["providerId:OPT_1"]}
        assert (items["objectsCount"], items["filesCount"], items["filesSize"]) == (1, 3, 1030)
        assert client.delete(BASKET).status_code == 204
        gone = client.get(BASKET)
        assert gone.status_code == 204 and gone.content == b""
        assert client.delete(BASKET).status_code == 204  # deleting nothing is fine
        stats = sim.stats()["catalog"]
        assert (stats["basket_reads"], stats["basket_deletes"]) == (2, 2)


def test_an_empty_basket_is_a_200_with_no_selection() -> None:
    with running(**scenario(basket=[])) as (_, client):
        r = client.get(BASKET)
        assert r.status_code == 200 and r.json()["content"]["datasetSelections"] == []


def test_the_basket_needs_a_token() -> None:
    with running(**scenario()) as (sim, _):
        assert httpx.get(f"{sim.url}{BASKET}").status_code == 401


# ---- auto-orders --------------------------------------------------------------------------


def test_an_auto_order_orders_the_query_and_takes_the_basket() -> None:
    with running(**scenario()) as (sim, client):
        order_id = granted(
            client, "providerId:OPT_1", filters={"dataTypes": ["RAWDATA"]}, correlationId="c-1"
        )
        assert client.get(BASKET).status_code == 204  # the order took the basket
        view = order(client, order_id)
        assert re.fullmatch(
            r"Generated order \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", view["label"]
        )
        assert view["owner"] == USER and "correlationId" not in view
        assert summary(view) == ("DONE", 100, 1, 0, True)
        (task,) = view["datasetTasks"]
        assert task == {
            "id": task["id"],
            "datasetLabel": "Optical",
            "objectsCount": 1,
            "filesCount": 1,
            "filesSize": 1000,
            "fileSelectionDescription": {"fileTypes": ["RAWDATA"]},
        }
        (item,) = client.get(f"/api/v1/rs-order/orders/{order_id}/files/available").json()[
            "content"
        ]
        listed_file = item["content"]
        # rs-order stores the product's providerId as the file's productId.
        assert (listed_file["filename"], listed_file["productId"]) == ("OPT_1.zip", "OPT_1")
        catalogue = sim.state.catalog.products[0].files["RAWDATA"][0]
        assert listed_file["checksum"] == catalogue.checksum
        body = fetch(client, listed_file["id"])
        assert body.status_code == 200 and md5(body.content) == catalogue.checksum
        assert summary(order(client, order_id)) == ("DONE", 100, 0, 0, False)
        users_orders = client.get(ORDERS).json()["content"]
        assert [o["content"]["id"] for o in users_orders] == [order_id]
        stats = sim.stats()["catalog"]
        assert stats["orders_created"] == [order_id]
        assert stats["applies"] == [
            {
                "user": USER,
                "queries": ["providerId:OPT_1"],
                "filters": {"dataTypes": ["RAWDATA"]},
                "correlationId": "c-1",
                "status": "GRANTED",
                "orderId": order_id,
            }
        ]


def test_the_basket_trap_the_whole_basket_is_ordered_with_the_filters() -> None:
    with running(**scenario(basket=["providerId:RAD_3"])) as (_, client):
        order_id = granted(client, "providerId:OPT_2", filters={"dataTypes": ["QUICKLOOK"]})
        # What the user had left in the basket is ordered too, filtered like the query.
        assert names(client, order_id) == [
            "OPT_2_hd.png",
            "OPT_2_sd.png",
            "RAD_3_hd.png",
            "RAD_3_sd.png",
        ]
        labels = [t["datasetLabel"] for t in order(client, order_id)["datasetTasks"]]
        assert labels == ["Radar", "Optical"]  # one dataset task per selection, basket first


def test_without_filters_rawdata_and_every_quicklook_are_ordered() -> None:
    with running(**scenario()) as (_, client):
        order_id = granted(client, "providerId:OPT_1")
        assert names(client, order_id) == ["OPT_1.zip", "OPT_1_hd.png", "OPT_1_sd.png"]


def test_the_filename_pattern_must_match_the_whole_name() -> None:
    with running(**scenario()) as (_, client):
        filters = {"dataTypes": ["RAWDATA", "QUICKLOOK"], "filenameRegExp": "OPT_.*_sd"}
        first = granted(client, "providerId:OPT", filters=filters)
        assert names(client, first) == []  # "_sd" alone is not the whole name
        # No file got through: no dataset task, and the order ends DONE_WITH_WARNING.
        assert order(client, first)["datasetTasks"] == []
        assert summary(order(client, first)) == ("DONE_WITH_WARNING", 0, 0, 0, False)
        filters["filenameRegExp"] = r"OPT_\d_sd\.png"
        second = granted(client, "providerId:OPT", filters=filters)
        assert names(client, second) == ["OPT_1_sd.png", "OPT_2_sd.png"]


def test_a_created_order_is_restored_in_suborders_like_any_other() -> None:
    document = scenario() | {"suborder_max_files": 2, "max_active_suborders": 1}
    with running(**document) as (sim, client):
        order_id = granted(
            client, "orbit:[1 TO 3]", filters={"dataTypes": ["RAWDATA", "QUICKLOOK"]}
        )
        assert sim.stats()["orders"][str(order_id)]["suborders"] == [
            "WAITING",
            "PENDING",
            "PENDING",
            "PENDING",
            "PENDING",
        ]
        for _ in range(5):
            for file_id in listed(client, order_id):
                assert fetch(client, file_id).status_code == 200
        assert summary(order(client, order_id)) == ("DONE", 100, 0, 0, False)
        assert sim.stats()["downloads_completed"] == 9


# ---- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"queries": []}, "list of queries should not be empty"),
        ({}, "list of queries should not be empty"),
        ({"queries": ["x:1"], "correlationId": "c" * 256}, "must not exceed 255 characters"),
        ({"queries": ["x:1"], "filters": {"dataTypes": []}}, "at least one datatype"),
        ({"queries": ["x:1"], "filters": {"dataTypes": ["THUMBNAIL"]}}, "unknown data types"),
    ],
)
def test_an_invalid_request_is_a_422_with_messages(body: dict[str, Any], message: str) -> None:
    with running(**scenario(basket=[])) as (sim, client):
        r = client.post(APPLY, json=body)
        assert r.status_code == 422 and message in r.json()["messages"][0]
        assert sim.stats()["catalog"]["orders_created"] == []
        assert client.get(BASKET).json()["content"]["datasetSelections"] == []


def test_a_body_that_is_not_json_is_a_400() -> None:
    with running(**scenario()) as (_, client):
        r = client.post(APPLY, content=b"{", headers={"Content-Type": "application/json"})
        assert r.status_code == 400


@pytest.mark.parametrize(
    ("queries", "status", "error_type", "message"),
    [
        (["orbit:[1 TO"], "FAILED", "INTERNAL_ERROR", "CatalogSearchException: "),
        (["nope:1"], "FAILED", "INTERNAL_ERROR", "CatalogSearchException: "),
        (["providerId:NOTHING"], "FAILED", "EMPTY_ORDER", "EmptySelectionException: "),
        (["providerId:THUMB_4"], "FAILED", "EMPTY_ORDER", "EmptySelectionException: "),
    ],
)
def test_a_refused_auto_order_keeps_the_selections_already_added(
    queries: list[str], status: str, error_type: str, message: str
) -> None:
    with running(**scenario(basket=["providerId:RAD_3"])) as (sim, client):
        r = apply(client, "providerId:OPT_1", *queries, correlationId="mine")
        assert r.status_code == 422
        content = r.json()["content"]
        assert (content["status"], content["errorType"], content["correlationId"]) == (
            status,
            error_type,
            "mine",
        )
        assert content["message"].startswith(message) and "orderId" not in content
        selections = client.get(BASKET).json()["content"]["datasetSelections"]
        queries_kept = [
            item["selectionRequest"]["searchParameters"]["q"][0]
            for selection in selections
            for item in selection["itemsSelections"]
        ]
        assert queries_kept == ["providerId:RAD_3", "providerId:OPT_1"]
        stats = sim.stats()["catalog"]
        assert stats["orders_created"] == [] and client.get(ORDERS).json()["content"] == []
        assert stats["applies"][0]["status"] == status


def test_the_users_order_limit_denies_an_auto_order() -> None:
    with running(**scenario(orders_limit=1)) as (sim, client):
        granted(client, "providerId:OPT_1")
        r = apply(client, "providerId:OPT_2")
        assert r.status_code == 422
        content = r.json()["content"]
        assert (content["status"], content["errorType"]) == ("DENIED", "ORDER_LIMIT_REACHED")
        assert len(sim.stats()["catalog"]["orders_created"]) == 1


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        ({"status": "DENIED", "error_type": "FORBIDDEN"}, "DENIED", "FORBIDDEN"),
        ({"status": "FAILED", "error_type": "INVALID_CONTENT"}, "FAILED", "INVALID_CONTENT"),
        ({"status": "FAILED", "error_type": "INTERNAL_ERROR"}, "FAILED", "INTERNAL_ERROR"),
    ],
)
def test_a_scenario_can_force_a_refusal(
    fault: dict[str, Any], status: str, error_type: str
) -> None:
    with running(**scenario(), apply_faults=[fault | {"message": "no"}]) as (sim, client):
        r = apply(client, "providerId:OPT_1")
        assert r.status_code == 422
        content = r.json()["content"]
        assert (content["status"], content["errorType"], content["message"]) == (
            status,
            error_type,
            "no",
        )
        assert granted(client, "providerId:OPT_1") == 1  # the fault was used up
        assert sim.stats()["catalog"]["orders_created"] == [1]


def test_a_correlation_id_is_made_up_when_none_is_given() -> None:
    with running(**scenario()) as (_, client):
        content = apply(client, "providerId:OPT_1").json()["content"]
        assert re.fullmatch(r"auto-correlation-id-[0-9a-f-]{36}", content["correlationId"])


def test_apply_needs_a_token() -> None:
    with running(**scenario()) as (sim, _):
        r = httpx.post(f"{sim.url}{APPLY}", json={"queries": ["providerId:OPT_1"]})
        assert r.status_code == 401
        assert sim.stats()["catalog"]["applies"] == []
