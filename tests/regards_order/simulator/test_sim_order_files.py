"""Every file of an order, the download quota and the order actions, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from regards_order.simulator.content import content_md5
from tests.helpers.simulator_client import (
    ORDERS,
    USER,
    fetch,
    file_stats,
    listed,
    order,
    order_stats,
    running,
    summary,
    wait_for,
)

QUOTA = "/api/v1/rs-storage/quota/current"


def files_url(order_id: int, task_id: int) -> str:
    return f"/api/v1/rs-order/orders/{order_id}/dataset/{task_id}/files"


def every_file(client: httpx.Client, order_id: int, task_id: int, size: int = 3) -> list[Any]:
    """Every entity of a dataset task, page after page."""
    found: list[Any] = []
    page = 0
    while True:
        r = client.get(files_url(order_id, task_id), params={"page": page, "size": size})
        assert r.status_code == 200, r.text
        body = r.json()
        found += [item["content"] for item in body["content"]]
        if page + 1 >= body["metadata"]["totalPages"]:
            return found
        page += 1


# ---- every file of a dataset task ---------------------------------------------------------


def test_every_file_in_every_state_with_its_download_error() -> None:
    files = [
        {"filename": "ok.bin", "size": 10},
        {"filename": "cut.bin", "size": 5000, "faults": [{"kind": "truncate", "at_byte": 10}]},
        {"filename": "lost.bin", "size": 10, "in_error": True},
        {"filename": "busy.bin", "size": 10, "faults": [{"kind": "status", "status": 503}]},
        {"filename": "later.bin", "size": 10},
        {"filename": "last.bin", "size": 10},
    ]
    document = {
        "suborder_max_files": 4,
        "max_active_suborders": 1,
        "orders": [{"id": 7, "files": files, "dataset_label": "My dataset"}],
    }
    with running(**document) as (sim, client):
        assert fetch(client, 1).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            fetch(client, 2)
        assert fetch(client, 4).status_code == 503
        (task,) = order(client, 7)["datasetTasks"]
        assert task == {
            "id": task["id"],
            "datasetLabel": "My dataset",
            "objectsCount": 6,
            "filesCount": 6,
            "filesSize": 5050,
        }
        entities = every_file(client, 7, task["id"])
        assert sorted(e["id"] for e in entities) == [1, 2, 3, 4, 5, 6]
        by_id = {e["id"]: e for e in entities}
        assert {i: e["state"] for i, e in by_id.items()} == {
            1: "DOWNLOADED",
            2: "DOWNLOAD_ERROR",
            3: "ERROR",
            4: "DOWNLOAD_ERROR",
            5: "AVAILABLE",  # the second suborder started once the first held nothing
            6: "AVAILABLE",
        }
        assert by_id[2]["downloadError"] == (
            "Cannot completely retrieve data file from storage, only 10/5000 bytes"
        )
        assert by_id[4]["downloadError"] == "Service Unavailable"
        assert "downloadError" not in by_id[1] and "downloadError" not in by_id[3]
        suborders = {e["filesTaskId"] for e in entities}
        assert len(suborders) == 2 and by_id[5]["filesTaskId"] != by_id[1]["filesTaskId"]
        cut = by_id[2]
        product = sim.scenario.default_product_id(2)
        assert cut == {
            "id": 2,
            "state": "DOWNLOAD_ERROR",
            "downloadError": cut["downloadError"],
            "orderId": 7,
            "filesTaskId": cut["filesTaskId"],
            "ipId": product,
            "productId": product,
            "version": 1,
            "dataType": "RAWDATA",
            "filename": "cut.bin",
            "filesize": 5000,
            "checksum": content_md5(7, 2, 5000),
            "digestAlgorithm": "MD5",
            "mimeType": "application/octet-stream",
            "online": True,
            "reference": False,
            "uri": cut["uri"],
        }


def test_paging_of_a_dataset_task() -> None:
    document = {"orders": [{"id": 1, "generate": [{"count": 7, "size": 10}]}]}
    with running(**document) as (_, client):
        (task,) = order(client)["datasetTasks"]
        first = client.get(files_url(1, task["id"]), params={"size": 3}).json()
        assert first["metadata"] == {"size": 3, "totalElements": 7, "totalPages": 3, "number": 0}
        links = {link["rel"]: link["href"] for link in first["links"]}
        assert "page=1" in links["next"]
        assert len(client.get(links["next"]).json()["content"]) == 3
        assert sorted(e["id"] for e in every_file(client, 1, task["id"])) == list(range(1, 8))
        default = client.get(files_url(1, task["id"])).json()
        assert default["metadata"]["size"] == 10
        assert client.get(files_url(1, task["id"]), params={"size": "x"}).status_code == 400


def test_an_unknown_dataset_task_fails_inside_the_server() -> None:
    with running(orders=[{"id": 1, "files": [{"filename": "a", "size": 1}]}]) as (_, client):
        assert client.get(files_url(1, 999)).status_code == 500


def test_an_older_server_has_no_such_endpoint() -> None:
    document = {
        "dataset_files_endpoint": False,
        "orders": [{"id": 1, "generate": [{"count": 1, "size": 1}]}],
    }
    with running(**document) as (_, client):
        (task,) = order(client)["datasetTasks"]
        assert client.get(files_url(1, task["id"])).status_code == 404
        assert listed(client) == [1]  # the available list is still there


def test_an_order_without_files_has_no_dataset_task() -> None:
    with running(orders=[{"id": 1}]) as (_, client):
        assert order(client)["datasetTasks"] == []


# ---- the download quota -------------------------------------------------------------------


def quota_user(**limits: Any) -> list[dict[str, Any]]:
    return [{"username": USER, "tokens": ["a-long-lived-token"], **limits}]


def test_the_quota_endpoint_shows_limits_and_use() -> None:
    orders = [{"id": 1, "generate": [{"count": 2, "size": 10}]}]
    with running(users=quota_user(max_quota=5, rate_limit=2), orders=orders) as (_, client):
        assert client.get(QUOTA).json() == {
            "email": USER,
            "maxQuota": 5,
            "rateLimit": 2,
            "currentQuota": 0,
            "currentRate": 0,
        }
        assert fetch(client, 1).status_code == 200
        assert client.get(QUOTA).json()["currentQuota"] == 1
    with running() as (_, client):  # the demo user: no limit
        assert client.get(QUOTA).json()["maxQuota"] == -1


def test_beyond_the_max_quota_storage_answers_429_and_the_file_is_in_download_error() -> None:
    orders = [{"id": 1, "generate": [{"count": 3, "size": 10}]}]
    scenario = {"users": quota_user(max_quota=2), "orders": orders, "quota_retry_after": 30}
    with running(**scenario) as (sim, client):
        assert fetch(client, 1).status_code == 200
        assert fetch(client, 2).status_code == 200
        refused = fetch(client, 3)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "30"
        assert refused.json()["message"] == (
            f"Download quota of 2 exceeded (by 0) for user {USER}."
        )
        stats = file_stats(sim, 3)
        assert (stats["state"], stats["download_error"]) == ("DOWNLOAD_ERROR", "Too Many Requests")
        assert listed(client) == []
        assert client.get(QUOTA).json()["currentQuota"] == 2


def test_beyond_the_rate_limit_storage_answers_429_until_a_download_ends() -> None:
    files = [
        {"filename": "big.bin", "size": 32 * 2**20},  # more than socket buffers: it stays open
        {"filename": "next.bin", "size": 10},
    ]
    scenario = {"users": quota_user(rate_limit=1), "orders": [{"id": 1, "files": files}]}
    with running(**scenario) as (sim, client):
        with client.stream("GET", "/api/v1/rs-order/orders/files/1") as held:
            assert held.status_code == 200
            chunks = held.iter_raw(4096)  # kept: a dropped iterator would close the stream
            next(chunks)
            assert client.get(QUOTA).json()["currentRate"] == 1
            refused = fetch(client, 2)
            assert refused.status_code == 429 and "retry-after" not in refused.headers
            assert "Download rate of 1 exceeded (by 0)" in refused.json()["message"]
        wait_for(lambda: sim.stats()["downloads_in_flight"] == 0)
        assert file_stats(sim, 2)["state"] == "DOWNLOAD_ERROR"
        assert fetch(client, 2).status_code == 200  # served by id once the slot is free
        quota = client.get(QUOTA).json()
        assert (quota["currentQuota"], quota["currentRate"]) == (2, 0)  # the 429 did not count


@pytest.mark.parametrize(("switch", "status"), [("absent", 404), ("forbidden", 403)])
def test_the_quota_endpoint_can_be_missing_or_forbidden(switch: str, status: int) -> None:
    with running(quota_endpoint=switch) as (_, client):
        assert client.get(QUOTA).status_code == status


# ---- order actions ------------------------------------------------------------------------


def act(client: httpx.Client, action: str, order_id: int = 1) -> httpx.Response:
    if action == "delete":
        return client.delete(f"{ORDERS}/{order_id}")
    if action == "retry":
        return client.put(f"{ORDERS}/{order_id}/retry")
    return client.put(f"{ORDERS}/{action}/{order_id}")


def test_pause_and_resume() -> None:
    document = {
        "restore_seconds": 3600,
        "orders": [{"id": 1, "files": [{"filename": "a", "size": 1}]}],
    }
    with running(**document) as (sim, client):
        assert order(client)["status"] == "RUNNING"
        assert act(client, "resume").status_code == 401
        assert act(client, "delete").status_code == 401  # not while RUNNING
        assert act(client, "pause").status_code == 200
        assert order(client)["status"] == "PAUSED"
        assert order_stats(sim)["suborders"] == ["PENDING"]  # its restoration was stopped
        assert act(client, "pause").status_code == 401
        assert act(client, "resume").status_code == 200
        assert order(client)["status"] == "RUNNING"
        assert order_stats(sim)["suborders"] == ["RESTORING"]
        assert order_stats(sim)["history"] == ["PENDING", "RUNNING", "PAUSED", "RUNNING"]


def test_retry_brings_files_in_error_back() -> None:
    files = [
        {"filename": "lost.bin", "size": 10, "in_error": True},
        {"filename": "cut.bin", "size": 10, "faults": [{"kind": "status", "status": 500}]},
        {"filename": "fine.bin", "size": 10},
    ]
    orders = [{"id": 1, "files": files}, {"id": 2, "files": [{"filename": "ok", "size": 1}]}]
    with running(orders=orders, max_active_suborders=5) as (sim, client):
        assert act(client, "retry", 2).status_code == 401  # DONE: nothing to retry
        assert fetch(client, 2).status_code == 500
        assert fetch(client, 3).status_code == 200
        assert summary(order(client)) == ("DONE_WITH_WARNING", 100, 0, 1, False)
        assert act(client, "retry").status_code == 200
        # Both went back to PENDING and were restored again: the storage error stays.
        assert file_stats(sim, 1)["state"] == "ERROR"
        assert (file_stats(sim, 2)["state"], file_stats(sim, 2)["download_error"]) == (
            "AVAILABLE",
            None,
        )
        assert listed(client) == [2]
        assert order_stats(sim)["history"][-2:] == ["RUNNING", "DONE_WITH_WARNING"]
        assert len(order_stats(sim)["suborders"]) == 2


def test_delete_removes_the_files_and_hides_the_order() -> None:
    with running(orders=[{"id": 1, "files": [{"filename": "a", "size": 1}]}]) as (_, client):
        assert act(client, "delete").status_code == 200
        assert order(client)["status"] == "DELETED"
        assert fetch(client, 1).status_code == 404
        assert client.get(ORDERS).json()["content"] == []
        assert act(client, "delete").status_code == 401
        assert act(client, "delete", 99).status_code == 404


def test_actions_on_another_users_order_are_refused() -> None:
    users = [
        {"username": USER, "tokens": ["a-long-lived-token"]},
        {"username": "eve@example.org", "tokens": ["eve"]},
    ]
    orders = [{"id": 1, "owner": "eve@example.org", "files": [{"filename": "a", "size": 1}]}]
    with running(users=users, orders=orders) as (_, client):
        assert act(client, "delete").status_code == 401
        assert act(client, "pause").status_code == 401
