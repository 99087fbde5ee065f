"""Scenario loading, deterministic content and the suborder state machine (no HTTP)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import regards_order.simulator as simulator_pkg
from regards_order.simulator import Scenario, load_scenario
from regards_order.simulator.content import (
    CHUNK_SIZE,
    content_bytes,
    content_md5,
    iter_content,
)
from regards_order.simulator.state import ApiError, SimState

USER = "demo@example.org"
DEMO = Path(simulator_pkg.__file__).parent / "scenarios" / "demo.json"


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def make_state(**scenario: Any) -> SimState:
    state = SimState(Scenario.model_validate(scenario))
    state.prepare()
    return state


def suborders(state: SimState, order_id: int) -> list[str]:
    states: list[str] = state.stats()["orders"][str(order_id)]["suborders"]
    return states


def download(state: SimState, file_id: int, user: str = USER) -> None:
    plan = state.begin_download(user, file_id)
    state.end_download(plan, plan.size, complete=True)


# ---- scenario -----------------------------------------------------------------------------


def test_empty_scenario_has_documented_defaults() -> None:
    sc = Scenario.model_validate({})
    assert (sc.project, sc.client_id, sc.client_secret) == ("demo", "client", "secret")
    assert sc.token_lifetime == 7200
    assert [(u.username, u.password, u.tokens) for u in sc.users] == [
        (USER, "demo", ["a-long-lived-token"])
    ]
    assert (sc.max_active_suborders, sc.suborder_max_files, sc.suborder_max_bytes) == (
        2,
        5000,
        100_000_000,
    )
    assert (sc.restore_seconds, sc.default_page_size, sc.max_page_size) == (0.0, 10, 2000)
    assert sc.orders == [] and sc.faults == []


def test_file_ids_are_assigned_in_order_skipping_explicit_ones() -> None:
    sc = Scenario.model_validate(
        {
            "orders": [
                {
                    "id": 7,
                    "files": [
                        {"filename": "a", "size": 1},
                        {"id": 2, "filename": "b", "size": 1},
                        {"filename": "c", "size": 1},
                    ],
                    "generate": [{"count": 2, "size": 5, "name": "g-{i:03d}.bin"}],
                },
                {"id": 8, "files": [{"filename": "d", "size": 1}]},
            ]
        }
    )
    resolved = sc.resolve()
    assert [(f.id, f.filename) for f in resolved[7]] == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
        (4, "g-000.bin"),
        (5, "g-001.bin"),
    ]
    assert [f.id for f in resolved[8]] == [6]
    assert resolved[7][3].size == 5
    product = resolved[7][0].product_id
    assert re.fullmatch(r"URN:AIP:DATA:demo:[0-9a-f-]{36}:V1", product)
    assert product == sc.resolve()[7][0].product_id  # stable
    assert product != resolved[7][1].product_id


@pytest.mark.parametrize(
    "bad",
    [
        {"orders": [{"id": 1}, {"id": 1}]},
        {
            "orders": [
                {"id": 1, "files": [{"id": 3, "filename": "a", "size": 1}]},
                {"id": 2, "files": [{"id": 3, "filename": "b", "size": 1}]},
            ]
        },
        {"orders": [{"id": 1, "files": [{"filename": "a", "size": 1, "faults": [{"kind": "x"}]}]}]},
        {"faults": [{"endpoint": "order", "kind": "status"}]},
        {"faults": [{"endpoint": "nowhere", "kind": "empty"}]},
        {"orders": [{"id": 1, "generate": [{"count": 1, "size": 1, "name": "{j}"}]}]},
        {"orders": [{"id": 1, "dialect": "klingon"}]},
        {"unknown_key": 1},
    ],
)
def test_invalid_scenarios_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Scenario.model_validate(bad)


def test_demo_scenario_matches_its_description() -> None:
    sc = load_scenario(DEMO)
    (order,) = sc.orders
    files = sc.resolve()[order.id]
    assert order.id == 1234 and order.owner == USER
    assert len(files) == 24 and files[0].filename == "scene-000.tif"
    sizes = [f.size for f in files]
    assert min(sizes) == 64 * 1024 and 7 * 2**20 < max(sizes) <= 8 * 2**20
    assert sum(sizes) < 60_000_000
    assert sc.suborder_max_files == 4 and sc.restore_seconds == 0.5
    kinds = sorted(fault.kind for f in files for fault in f.faults)
    assert kinds == ["status", "truncate"]
    state = SimState(sc)
    assert len(suborders(state, 1234)) == 6


# ---- content ------------------------------------------------------------------------------


def test_content_is_deterministic_and_slices_agree() -> None:
    size = 2 * CHUNK_SIZE + 12345
    whole = content_bytes(1, 2, size)
    assert len(whole) == size and whole == content_bytes(1, 2, size)
    assert whole != content_bytes(1, 3, size) and whole[:4096] != whole[4096:8192]
    assert md5(whole) == content_md5(1, 2, size)
    for start, stop, piece in [(0, 10, 3), (1000, 70000, 4096), (CHUNK_SIZE - 5, size, 1 << 20)]:
        parts = list(iter_content(1, 2, size, start=start, stop=stop, piece=piece))
        assert all(len(p) <= piece for p in parts)
        assert b"".join(parts) == whole[start:stop]
    assert content_md5(1, 2, 0) == md5(b"")


def test_corrupt_content_has_same_length_but_differs() -> None:
    size = 100_000
    good = content_bytes(5, 6, size)
    bad = b"".join(iter_content(5, 6, size, corrupt=True))
    assert len(bad) == size and bad != good
    assert md5(bad) != content_md5(5, 6, size)


# ---- state machine ------------------------------------------------------------------------


def test_suborders_split_by_count_and_bytes() -> None:
    sizes = [50, 50, 200, 10, 10, 10]
    files = [{"filename": f"f{i}", "size": s} for i, s in enumerate(sizes)]
    state = make_state(
        suborder_max_bytes=100,
        suborder_max_files=2,
        max_active_suborders=10,
        orders=[{"id": 1, "files": files}],
    )
    # [50, 50] [200 alone: bigger than the limit] [10, 10] [10]
    assert suborders(state, 1) == ["WAITING"] * 4


def test_per_user_limit_spans_orders_and_starts_fifo() -> None:
    one = {"filename": "x", "size": 10}
    state = make_state(
        suborder_max_files=1,
        orders=[{"id": 2, "files": [one, one]}, {"id": 1, "files": [one, one]}],
    )
    # Order 1 goes first (FIFO by order id), and fills both slots.
    assert suborders(state, 1) == ["WAITING", "WAITING"]
    assert suborders(state, 2) == ["PENDING", "PENDING"]
    first = state.file_ids(1)[0]
    download(state, first)
    assert state.file_state(first) == "DOWNLOADED"
    assert suborders(state, 1) == ["DONE", "WAITING"]
    assert suborders(state, 2) == ["WAITING", "PENDING"]
    assert state.order_view(2, USER)["status"] == "RUNNING"
    assert state.stats()["max_active_suborders"][USER] == 2


def test_statuses_of_special_orders() -> None:
    f = {"filename": "x", "size": 10}
    err = {"filename": "e", "size": 10, "in_error": True}
    state = make_state(
        max_active_suborders=10,
        orders=[
            {"id": 1, "files": [err, err]},
            {"id": 2, "files": [f, err]},
            {"id": 3, "state": "paused", "files": [f]},
            {"id": 4, "state": "expired", "files": [f]},
            {"id": 5, "state": "deleted", "files": [f]},
            {"id": 6, "files": [f, f]},
            {"id": 7, "expiration_date": "2030-01-01T00:00:00Z", "files": []},
        ],
    )
    views = {i: state.order_view(i, USER) for i in range(1, 8)}
    status = {i: v["status"] for i, v in views.items()}
    assert status == {
        1: "FAILED",
        2: "DONE_WITH_WARNING",
        3: "PAUSED",
        4: "EXPIRED",
        5: "DELETED",
        6: "DONE",
        7: "DONE_WITH_WARNING",  # no file: no dataset task, as rs-order ends such an order
    }
    assert views[1]["filesInErrorCount"] == 2 and views[1]["percentCompleted"] == 100
    assert views[2]["availableFilesCount"] == 1 and views[2]["waitingForUser"] is True
    assert views[3]["percentCompleted"] == 0 and views[3]["availableFilesCount"] == 0
    assert views[7]["expirationDate"] == "2030-01-01T00:00:00Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", views[6]["expirationDate"])
    # A paused order's files are never restored; an expired one's are gone.
    with pytest.raises(ApiError) as paused:
        state.begin_download(USER, state.file_ids(3)[0])
    assert paused.value.status == 202
    with pytest.raises(ApiError) as expired:
        state.begin_download(USER, state.file_ids(4)[0])
    assert expired.value.status == 404
    with pytest.raises(ApiError) as in_error:
        state.begin_download(USER, state.file_ids(2)[1])
    assert in_error.value.status == 422


def test_expire_tokens_spares_long_lived_tokens() -> None:
    state = make_state()
    params = {"username": USER, "password": "demo", "grant_type": "password"}
    token = state.login(("client", "secret"), "demo", params)["access_token"]
    assert state.user_for_token(token) == USER
    state.expire_tokens()
    with pytest.raises(ApiError) as denied:
        state.user_for_token(token)
    assert denied.value.status == 401
    assert state.user_for_token("a-long-lived-token") == USER
    assert state.stats()["unauthorized"] == 1


def test_catalog_scenario_matches_its_description() -> None:
    sc = load_scenario(DEMO.with_name("catalog.json"))
    state = SimState(sc)
    state.prepare()
    catalog = state.catalog
    assert len(catalog.products) == 14 and [d.label for d in catalog.datasets] == [
        "Sentinel-2 L1C",
        "Sentinel-1 IW",
    ]
    assert [p.provider_id for p in catalog.select("cloud_cover:[0 TO 10]")] == ["S2A_MSIL1C_0001"]
    assert len(catalog.select("tags:radar AND polarisation:VV")) == 12
    # The user left one radar product in the basket: the trap an auto-order falls into.
    basket = state.basket(USER)
    assert basket is not None
    (selection,) = basket["datasetSelections"]
    assert (selection["datasetLabel"], selection["objectsCount"]) == ("Sentinel-1 IW", 1)
