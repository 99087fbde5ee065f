"""Fault injection of the simulator, per file and per endpoint, over real HTTP."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from regards_order.simulator import Scenario, Simulator
from regards_order.simulator.content import content_md5

TOKEN_URL = "/api/v1/rs-authentication/oauth/token"
AUTH = {"Authorization": "Bearer a-long-lived-token"}
LISTING = "/api/v1/rs-order/orders/1/files/available"


@contextmanager
def faulty(
    file_faults: list[dict[str, Any]], size: int = 10_000, **scenario: Any
) -> Iterator[tuple[Simulator, httpx.Client]]:
    """A simulator with one order (id 1) holding file 1 with ``file_faults`` and a clean file 2."""
    orders = [
        {
            "id": 1,
            "files": [
                {"filename": "faulty.bin", "size": size, "faults": file_faults},
                {"filename": "clean.bin", "size": 100},
            ],
        }
    ]
    sc = Scenario.model_validate({"orders": orders, **scenario})
    with Simulator(sc) as sim, httpx.Client(base_url=sim.url, timeout=10) as client:
        yield sim, client


def get_file(client: httpx.Client, file_id: int = 1) -> httpx.Response:
    return client.get(f"/api/v1/rs-order/orders/files/{file_id}", headers=AUTH)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# ---- per-file faults ----------------------------------------------------------------------


def test_status_faults_apply_in_order_with_retry_after() -> None:
    faults = [
        {"kind": "status", "status": 503, "times": 2, "retry_after": 1},
        {"kind": "status", "status": 429},
        {"kind": "status", "status": 202},
    ]
    with faulty(faults) as (sim, client):
        first, second, third, fourth, fifth = (get_file(client) for _ in range(5))
        assert (first.status_code, second.status_code) == (503, 503)
        assert first.headers["retry-after"] == "1" and first.json()["status"] == 503
        assert third.status_code == 429 and "retry-after" not in third.headers
        assert fourth.status_code == 202 and fourth.content == b""
        assert fifth.status_code == 200 and md5(fifth.content) == content_md5(1, 1, 10_000)
        # Each passed-through answer turned the file DOWNLOAD_ERROR; the good one downloaded it.
        stats = sim.stats()["files"]["1"]
        assert (stats["requests"], stats["completed"], stats["aborted"]) == (5, 1, 0)
        assert stats["download_errors"] == 4
        assert stats["state"] == "DOWNLOADED"


def test_faults_only_count_requests_that_would_be_served() -> None:
    faults = [{"kind": "status", "status": 500, "times": 1}]
    with faulty(faults, restore_seconds=0.2) as (_sim, client):
        assert get_file(client).status_code == 202  # not restored: the fault is kept
        time.sleep(0.25)
        assert get_file(client).status_code == 500
        assert get_file(client).status_code == 200


def test_always_on_fault() -> None:
    with faulty([{"kind": "status", "status": 410, "times": None}]) as (sim, client):
        assert {get_file(client).status_code for _ in range(4)} == {410}
        stats = sim.stats()["files"]["1"]
        assert (stats["state"], stats["download_errors"]) == ("DOWNLOAD_ERROR", 4)
        assert stats["download_error"] == "Gone"


def test_truncate_breaks_the_body_and_marks_the_file_aborted() -> None:
    with faulty([{"kind": "truncate", "at_byte": 1000}], size=500_000) as (sim, client):
        with pytest.raises(httpx.RemoteProtocolError):
            get_file(client)
        assert sim.state.file_state(1) == "DOWNLOAD_ERROR"
        stats = sim.stats()
        assert stats["files"]["1"]["bytes_sent"] == 1000 and stats["downloads_aborted"] == 1
        listing = client.get(LISTING, headers=AUTH).json()
        assert [item["content"]["id"] for item in listing["content"]] == [2]
        retry = get_file(client)  # the same client recovers on a fresh connection
        assert retry.status_code == 200 and md5(retry.content) == content_md5(1, 1, 500_000)
        assert sim.state.file_state(1) == "DOWNLOADED"


def test_corrupt_body_has_full_length_but_wrong_md5() -> None:
    with faulty([{"kind": "corrupt", "times": 1}], size=200_000) as (sim, client):
        listed = client.get(LISTING, headers=AUTH).json()["content"][0]["content"]
        bad = get_file(client)
        assert bad.status_code == 200 and len(bad.content) == 200_000
        assert md5(bad.content) != listed["checksum"]
        assert sim.state.file_state(1) == "DOWNLOADED"  # complete, as far as the server knows
        good = get_file(client)
        assert md5(good.content) == listed["checksum"] == content_md5(1, 1, 200_000)


def test_lying_checksum_is_served_as_is() -> None:
    orders = [{"id": 1, "files": [{"filename": "x", "size": 10, "checksum": "0" * 32}]}]
    with (
        Simulator(Scenario.model_validate({"orders": orders})) as sim,
        httpx.Client(base_url=sim.url) as client,
    ):
        item = client.get(LISTING, headers=AUTH).json()["content"][0]["content"]
        assert item["checksum"] == "0" * 32
        assert md5(get_file(client).content) == content_md5(1, 1, 10)


def test_slow_body_is_throttled() -> None:
    with faulty([{"kind": "slow", "bytes_per_second": 1_000_000}], size=300_000) as (_, client):
        began = time.monotonic()
        body = get_file(client).content
        assert time.monotonic() - began >= 0.25
        assert md5(body) == content_md5(1, 1, 300_000)
        began = time.monotonic()
        get_file(client)  # the fault was used up: full speed again
        assert time.monotonic() - began < 0.2


def test_stall_pauses_after_the_given_byte() -> None:
    fault = {"kind": "stall", "at_byte": 5000, "seconds": 0.3}
    with faulty([fault], size=50_000) as (sim, client):
        received, gap, last = 0, 0.0, time.monotonic()
        parts = []
        with client.stream("GET", "/api/v1/rs-order/orders/files/1", headers=AUTH) as r:
            for part in r.iter_raw():
                now = time.monotonic()
                if received >= 5000:
                    gap = max(gap, now - last)
                received += len(part)
                parts.append(part)
                last = now
        assert gap >= 0.25 and received == 50_000
        assert md5(b"".join(parts)) == content_md5(1, 1, 50_000)
        assert sim.stats()["downloads_completed"] == 1


def test_concurrent_downloads_are_counted_per_user() -> None:
    fault = {"kind": "stall", "at_byte": 0, "seconds": 0.3, "times": None}
    with faulty([fault]) as (sim, client):
        results: list[int] = []
        threads = [
            threading.Thread(target=lambda: results.append(get_file(client).status_code))
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200, 200, 200]
        stats = sim.stats()
        assert stats["max_concurrent_downloads"]["demo@example.org"] == 3
        assert stats["downloads_in_flight"] == 0


# ---- global faults ------------------------------------------------------------------------


def test_global_listing_faults() -> None:
    faults = [
        {"endpoint": "files", "kind": "malformed_json"},
        {"endpoint": "files", "kind": "html", "status": 403},
        {"endpoint": "files", "kind": "empty"},
    ]
    with faulty([], faults=faults) as (sim, client):
        # Global faults answer before authentication.
        malformed = client.get(LISTING)
        assert malformed.status_code == 200
        assert malformed.headers["content-type"] == "application/json"
        with pytest.raises(json.JSONDecodeError):
            malformed.json()
        html = client.get(LISTING, headers=AUTH)
        assert html.status_code == 403 and html.headers["content-type"] == "text/html"
        assert html.text == "<html><body>Request Rejected</body></html>"
        empty = client.get(LISTING, headers=AUTH)
        assert empty.status_code == 200 and empty.content == b""
        normal = client.get(LISTING, headers=AUTH)
        assert normal.status_code == 200 and len(normal.json()["content"]) == 2
        assert sim.stats()["requests"]["files"] == 4


def test_global_status_faults_on_each_endpoint() -> None:
    faults = [
        {"endpoint": "token", "kind": "status", "status": 500, "times": 2, "retry_after": 3},
        {"endpoint": "order", "kind": "html"},
        {"endpoint": "download", "kind": "status", "status": 404},
    ]
    with faulty([], faults=faults) as (sim, client):
        body = {"username": "demo@example.org", "password": "demo", "grant_type": "password"}

        def post() -> httpx.Response:
            return client.post(
                TOKEN_URL, params={"scope": "demo"}, auth=("client", "secret"), json=body
            )

        failed = [post(), post()]
        assert [r.status_code for r in failed] == [500, 500]
        assert failed[0].headers["retry-after"] == "3"
        assert post().status_code == 200
        order_url = "/api/v1/rs-order/user/orders/1"
        waf = client.get(order_url, headers=AUTH)
        assert waf.status_code == 200 and waf.headers["content-type"] == "text/html"
        assert client.get(order_url, headers=AUTH).json()["content"]["id"] == 1
        assert get_file(client, 2).status_code == 404
        assert get_file(client, 2).status_code == 200
        stats = sim.stats()
        assert stats["requests"] | {"token": 3, "order": 2, "files": 0, "download": 2} == (
            dict.fromkeys(stats["requests"], 0) | {"token": 3, "order": 2, "download": 2}
        )
        assert stats["logins"] == 1
        assert stats["files"]["2"]["requests"] == 1  # the faulted request never reached it


@pytest.mark.parametrize(
    ("endpoint", "method", "path"),
    [
        ("search", "GET", "/api/v1/rs-catalog/engines/legacy/dataobjects/search"),
        ("basket", "GET", "/api/v1/rs-order/order/basket"),
        ("apply", "POST", "/api/v1/rs-order/user/orders/apply"),
        ("quota", "GET", "/api/v1/rs-storage/quota/current"),
        ("dataset_files", "GET", "/api/v1/rs-order/orders/1/dataset/1/files"),
    ],
)
def test_global_faults_on_the_ordering_endpoints(endpoint: str, method: str, path: str) -> None:
    fault = {"endpoint": endpoint, "kind": "status", "status": 503, "retry_after": 2}
    with faulty([], faults=[fault]) as (sim, client):
        body = {"queries": ["label:x"]} if method == "POST" else None
        first = client.request(method, path, headers=AUTH, json=body)
        assert first.status_code == 503 and first.headers["retry-after"] == "2"
        second = client.request(method, path, headers=AUTH, json=body)
        assert second.status_code in (200, 204, 422)
        assert sim.stats()["requests"][endpoint] == 2
