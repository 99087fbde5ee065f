"""The client's calls for ordering from the catalogue, over real HTTP against the simulator:
search, basket, auto-order, download quota, every file of an order, the user's orders."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from regards_order.client import RegardsClient
from regards_order.errors import (
    EndpointAbsent,
    InvalidQuery,
    NotFound,
    OrderRefused,
    ServerError,
    is_retryable,
)
from regards_order.models import DataType, ServerFileState
from regards_order.simulator import Scenario, Simulator
from tests.helpers.scenarios import LONG_LIVED_TOKEN, PASSWORD, USER, connection_for, scenario

Start = Callable[[Scenario], Simulator]


def product(provider_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "provider_id": provider_id,
        "properties": {"orbit": int(provider_id[-1])},
        "files": {
            "RAWDATA": [{"filename": f"{provider_id}.zip", "size": 1000 + int(provider_id[-1])}],
            "QUICKLOOK_SD": [{"filename": f"{provider_id}_sd.png", "size": 10}],
            "THUMBNAIL": [{"filename": f"{provider_id}_th.png", "size": 5}],
        },
        **extra,
    }


CATALOG = {"products": [product(f"S2A_{i}") for i in range(1, 6)] + [product("S1B_6")]}


def user(**extra: Any) -> dict[str, Any]:
    return {"username": USER, "password": PASSWORD, "tokens": [LONG_LIVED_TOKEN], **extra}


@pytest.fixture
def connect(start_simulator: Start) -> Iterator[Callable[..., tuple[Simulator, RegardsClient]]]:
    """A simulator of the catalogue (and `settings`) and a client of the test user to it."""
    clients: list[RegardsClient] = []

    def connect(**settings: Any) -> tuple[Simulator, RegardsClient]:
        settings.setdefault("catalog", CATALOG)
        sim = start_simulator(scenario(settings.pop("orders", []), **settings))
        client = RegardsClient(connection_for(sim))
        clients.append(client)
        return sim, client

    yield connect
    for client in clients:
        client.close()


def catalog_stats(sim: Simulator) -> dict[str, Any]:
    stats: dict[str, Any] = sim.stats()["catalog"]
    return stats


# ---- search ---------------------------------------------------------------------------------


def test_a_search_page_reads_the_products_and_their_files(connect: Any) -> None:
    sim, client = connect()
    page = client.search('providerId:"S2A_3"', 0, 20)
    (found,) = page.products
    served = next(p for p in sim.state.catalog.products if p.provider_id == "S2A_3")
    assert (found.id, found.provider_id, found.label) == (served.id, "S2A_3", "S2A_3")
    assert found.id.startswith("URN:AIP:DATA:test:")
    assert set(found.files) == {"RAWDATA", "QUICKLOOK_SD", "THUMBNAIL"}
    (raw,) = found.files["RAWDATA"]
    assert (raw.data_type, raw.filename, raw.size) == ("RAWDATA", "S2A_3.zip", 1003)
    assert raw.checksum == served.files["RAWDATA"][0].checksum
    assert (page.number, page.total_elements, page.has_next) == (0, 1, False)


def test_every_page_of_a_search_is_walked(connect: Any) -> None:
    sim, client = connect()
    found = [p.provider_id for p in client.iter_products("providerId:S2A*", page_size=2)]
    assert found == ["S2A_1", "S2A_2", "S2A_3", "S2A_4", "S2A_5"]
    searches = [(s["q"], s["page"], s["size"]) for s in catalog_stats(sim)["searches"]]
    assert searches == [("providerId:S2A*", n, 2) for n in range(3)]


def test_a_server_that_caps_page_sizes_still_gives_every_product(connect: Any) -> None:
    sim, client = connect(max_page_size=2)
    found = [p.provider_id for p in client.iter_products("", page_size=500)]
    assert found == ["S2A_1", "S2A_2", "S2A_3", "S2A_4", "S2A_5", "S1B_6"]
    assert [s["page"] for s in catalog_stats(sim)["searches"]] == [0, 1, 2]


def test_a_search_that_finds_nothing_is_one_empty_page(connect: Any) -> None:
    _, client = connect()
    assert list(client.iter_products('providerId:"NOTHING"')) == []


@pytest.mark.parametrize(
    ("query", "server_says"),
    [
        ("orbit:1 orbit:2", "Indeterminate relationship between criteria"),
        ("nope:1", "Invalid OpenSearch parameter : nope."),
    ],
)
def test_a_malformed_query_is_an_invalid_query_with_the_servers_words(
    connect: Any, query: str, server_says: str
) -> None:
    sim, client = connect()
    with pytest.raises(InvalidQuery) as caught:
        list(client.iter_products(query))
    assert str(caught.value).startswith(f"the catalogue search {query!r}: the server refused")
    assert server_says in str(caught.value)
    assert not is_retryable(caught.value)
    assert [s["q"] for s in catalog_stats(sim)["searches"]] == [query]


# ---- basket ---------------------------------------------------------------------------------


def test_no_basket_is_none(connect: Any) -> None:
    sim, client = connect()
    assert client.basket() is None
    assert catalog_stats(sim)["basket_reads"] == 1


def test_an_empty_basket_is_empty(connect: Any) -> None:
    _, client = connect(users=[user(basket=[])])
    basket = client.basket()
    assert basket is not None and basket.is_empty and basket.owner == USER


def test_a_basket_with_selections_and_emptying_it(connect: Any) -> None:
    sim, client = connect(users=[user(basket=["providerId:S2A_1", "providerId:S2A_2"])])
    basket = client.basket()
    assert basket is not None and not basket.is_empty
    assert (basket.selections, basket.items) == (1, 2)  # one dataset, two queries in it
    client.empty_basket()
    assert client.basket() is None
    client.empty_basket()  # emptying no basket is fine
    stats = catalog_stats(sim)
    assert (stats["basket_reads"], stats["basket_deletes"]) == (2, 2)


# ---- auto-order -----------------------------------------------------------------------------


def test_a_granted_auto_order_sends_the_filters_and_gives_the_order(connect: Any) -> None:
    sim, client = connect()
    grant = client.apply(
        ["providerId:S2A_1", "providerId:S2A_2"],
        [DataType.RAWDATA, DataType.QUICKLOOK, DataType.RAWDATA],
        r"S2A_\d(_sd\.png|\.zip)",
        "my-correlation",
    )
    assert grant.correlation_id == "my-correlation"
    (applied,) = catalog_stats(sim)["applies"]
    assert applied == {
        "user": USER,
        "queries": ["providerId:S2A_1", "providerId:S2A_2"],
        "filters": {
            "dataTypes": ["QUICKLOOK", "RAWDATA"],
            "filenameRegExp": r"S2A_\d(_sd\.png|\.zip)",
        },
        "correlationId": "my-correlation",
        "status": "GRANTED",
        "orderId": grant.order_id,
    }
    order = client.get_order(grant.order_id)
    assert order.label is not None and order.label.startswith("Generated order ")
    assert order.creation_date is not None and order.creation_date.tzinfo is not None
    (task,) = order.dataset_tasks
    assert order.dataset_task_ids == (task.id,)
    assert (task.files_count, task.files_size) == (4, 1001 + 1002 + 20)
    assert (task.file_types, task.filename_pattern) == (
        ("QUICKLOOK", "RAWDATA"),
        r"S2A_\d(_sd\.png|\.zip)",
    )


def test_no_filename_filter_is_sent_without_one(connect: Any) -> None:
    sim, client = connect()
    client.apply(["providerId:S2A_1"], [DataType.RAWDATA], None, "c")
    assert catalog_stats(sim)["applies"][0]["filters"] == {"dataTypes": ["RAWDATA"]}


@pytest.mark.parametrize(
    ("queries", "settings", "status", "error_type", "server_says"),
    [
        (['providerId:"NOTHING"'], {}, "FAILED", "EMPTY_ORDER", "EmptySelectionException: "),
        (["orbit:[1 TO"], {}, "FAILED", "INTERNAL_ERROR", "CatalogSearchException: "),
        (
            ["providerId:S2A_1"],
            {"users": [user(orders_limit=0)]},
            "DENIED",
            "ORDER_LIMIT_REACHED",
            "TooManyItemsSelectedInBasketException: ",
        ),
        (
            ["providerId:S2A_1"],
            {"apply_faults": [{"status": "DENIED", "error_type": "FORBIDDEN", "message": "no"}]},
            "DENIED",
            "FORBIDDEN",
            "no",
        ),
        (
            ["providerId:S2A_1"],
            {"apply_faults": [{"status": "FAILED", "error_type": "INVALID_CONTENT"}]},
            "FAILED",
            "INVALID_CONTENT",
            "Simulated refusal",
        ),
    ],
)
def test_a_refused_auto_order_carries_the_servers_status_type_and_message(
    connect: Any,
    queries: list[str],
    settings: dict[str, Any],
    status: str,
    error_type: str,
    server_says: str,
) -> None:
    sim, client = connect(**settings)
    with pytest.raises(OrderRefused) as caught:
        client.apply(queries, [DataType.RAWDATA], None, "c-9")
    refused = caught.value
    assert (refused.status, refused.error_type) == (status, error_type)
    assert refused.server_message is not None and refused.server_message.startswith(server_says)
    assert str(refused).startswith(f"the auto-order: {status} {error_type}: {server_says}")
    assert "\n" not in str(refused)
    assert not is_retryable(refused)
    assert catalog_stats(sim)["orders_created"] == []
    copy = pickle.loads(pickle.dumps(refused))
    assert (type(copy), str(copy), copy.status, copy.error_type, copy.server_message) == (
        OrderRefused,
        str(refused),
        status,
        error_type,
        refused.server_message,
    )


def test_a_request_the_server_finds_invalid_is_refused_without_a_status(connect: Any) -> None:
    sim, client = connect()
    with pytest.raises(OrderRefused) as caught:
        client.apply(["providerId:S2A_1"], [DataType.RAWDATA], None, "c" * 256)
    assert (caught.value.status, caught.value.error_type) == (None, None)
    assert "must not exceed 255 characters" in str(caught.value)
    assert catalog_stats(sim)["applies"][0]["status"] == "INVALID"


def test_an_auto_order_failing_on_the_server_is_a_server_error(connect: Any) -> None:
    sim, client = connect(faults=[{"endpoint": "apply", "kind": "status", "status": 503}])
    with pytest.raises(ServerError) as caught:
        client.apply(["providerId:S2A_1"], [DataType.RAWDATA], None, "c")
    assert str(caught.value).startswith("the auto-order: HTTP 503")
    assert catalog_stats(sim)["orders_created"] == []


# ---- download quota -------------------------------------------------------------------------


def test_the_quota_and_what_is_left_of_it(connect: Any) -> None:
    _, client = connect(
        users=[user(rate_limit=2, max_quota=3)],
        orders=[{"id": 1, "owner": USER, "files": [{"filename": "a.bin", "size": 5}]}],
    )
    order_file = next(iter(client.iter_available(1, 10)))
    with client.open_file(order_file) as download:
        assert len(b"".join(download.chunks())) == 5
    quota = client.quota()
    assert quota is not None
    assert (quota.max_quota, quota.rate_limit, quota.current_quota) == (3, 2, 1)
    assert (quota.simultaneous_limit, quota.downloads_left) == (2, 2)


def test_an_unlimited_quota(connect: Any) -> None:
    _, client = connect()
    quota = client.quota()
    assert quota is not None
    assert (quota.simultaneous_limit, quota.downloads_left) == (None, None)


@pytest.mark.parametrize("endpoint", ["absent", "forbidden"])
def test_no_quota_where_the_server_does_not_tell(connect: Any, endpoint: str) -> None:
    sim, client = connect(quota_endpoint=endpoint)
    assert client.quota() is None
    assert sim.stats()["requests"]["quota"] == 1


# ---- every file of an order -----------------------------------------------------------------


def test_every_file_of_an_order_in_every_state(connect: Any) -> None:
    broken = product("S2A_7")
    broken["files"]["RAWDATA"][0]["faults"] = [{"kind": "status", "status": 500}]
    sim, client = connect(catalog={"products": [*CATALOG["products"], broken]})
    grant = client.apply(["providerId:S2A*"], [DataType.RAWDATA], None, "c")
    (task_id,) = client.get_order(grant.order_id).dataset_task_ids
    first, second = list(client.iter_available(grant.order_id, 2))[:2]
    with client.open_file(first) as download:
        body = b"".join(download.chunks())
    assert hashlib.md5(body, usedforsecurity=False).hexdigest() == first.checksum
    failing = next(
        f for f in client.iter_available(grant.order_id, 10) if f.filename == "S2A_7.zip"
    )
    with pytest.raises(ServerError), client.open_file(failing):
        pass

    files = list(client.iter_order_files(grant.order_id, task_id, page_size=2))
    assert sorted(f.filename for f in files) == [f"S2A_{i}.zip" for i in (1, 2, 3, 4, 5, 7)]
    states = {f.filename: f.state for f in files}
    assert states[first.filename] is ServerFileState.DOWNLOADED
    assert states["S2A_7.zip"] is ServerFileState.DOWNLOAD_ERROR
    assert states[second.filename] is ServerFileState.AVAILABLE
    errored = next(f for f in files if f.filename == "S2A_7.zip")
    assert errored.download_error == "Internal Server Error"
    assert {f.order_id for f in files} == {grant.order_id} and all(f.files_task_id for f in files)
    assert sim.stats()["requests"]["dataset_files"] == 3  # 6 files, pages of 2

    # A file of any state is downloaded by id, as the available list would have it.
    again = next(f for f in files if f.filename == first.filename)
    as_listed = again.order_file(client.connection.api_url)
    assert (as_listed.id, as_listed.checksum, as_listed.size) == (
        first.id,
        first.checksum,
        first.size,
    )
    with client.open_file(as_listed) as download:
        assert b"".join(download.chunks()) == body


def test_a_server_without_the_every_file_endpoint_says_so(connect: Any) -> None:
    _, client = connect(dataset_files_endpoint=False)
    grant = client.apply(["providerId:S2A_1"], [DataType.RAWDATA], None, "c")
    (task_id,) = client.get_order(grant.order_id).dataset_task_ids
    with pytest.raises(EndpointAbsent) as caught:
        list(client.iter_order_files(grant.order_id, task_id))
    assert isinstance(caught.value, NotFound) and not is_retryable(caught.value)
    assert f"dataset task {task_id} of order {grant.order_id}" in str(caught.value)


# ---- the user's orders ----------------------------------------------------------------------


def test_the_users_orders_are_listed_across_pages_newest_first(connect: Any) -> None:
    orders = [{"id": n, "owner": USER, "label": f"o{n}"} for n in range(1, 6)]
    others = [{"id": 9, "owner": "someone@else.org"}]
    _, client = connect(orders=orders + others)
    assert [o.id for o in client.iter_orders(page_size=2)] == [5, 4, 3, 2, 1]
