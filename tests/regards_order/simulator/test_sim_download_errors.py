"""DOWNLOAD_ERROR and what it does to the order, over real HTTP, as rs-order behaves.

A download that does not end with the whole body read turns the file DOWNLOAD_ERROR: a status
passed through from storage, a body cut short, a client gone. The order service's own refusals
change nothing. A DONE order whose last AVAILABLE file is downloaded while another is
DOWNLOAD_ERROR turns DONE_WITH_WARNING with no file in error, for good.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from regards_order.simulator import Simulator
from regards_order.simulator.content import content_md5
from tests.helpers.simulator_client import (
    fetch,
    file_stats,
    listed,
    md5,
    order,
    order_stats,
    running,
    summary,
    wait_for,
)

BIG = 32 * 2**20  # more than loopback socket buffers hold: a vanished client is always noticed

# How file 1 fails once -> (its fault, its size, the downloadError rs-order records).
FAILURES: dict[str, tuple[dict[str, Any], int, str]] = {
    "429": ({"kind": "status", "status": 429, "retry_after": 7}, 10_000, "Too Many Requests"),
    "500": ({"kind": "status", "status": 500}, 10_000, "Internal Server Error"),
    "503": ({"kind": "status", "status": 503}, 10_000, "Service Unavailable"),
    "202": ({"kind": "status", "status": 202}, 10_000, "Accepted"),
    "404": ({"kind": "status", "status": 404}, 10_000, "Not Found"),
    "410": ({"kind": "status", "status": 410}, 10_000, "Gone"),
    "truncate": (
        {"kind": "truncate", "at_byte": 1000},
        10_000,
        "Cannot completely retrieve data file from storage, only 1000/10000 bytes",
    ),
    # The body pauses early, long enough for the client to hang up in the middle.
    "disconnect": ({"kind": "stall", "at_byte": 65536, "seconds": 0.5}, BIG, ""),
}


def two_files(failure: str, **scenario: Any) -> dict[str, Any]:
    """Order 1: file 1 fails once as ``failure`` says, file 2 is clean."""
    fault, size, _ = FAILURES[failure]
    files = [
        {"filename": "a.bin", "size": size, "faults": [fault]},
        {"filename": "b.bin", "size": 100},
    ]
    return {"orders": [{"id": 1, "files": files}], **scenario}


def fail_once(sim: Simulator, client: httpx.Client, failure: str) -> None:
    """Make file 1's download fail as ``failure`` says; return once the server saw it."""
    fault, size, message = FAILURES[failure]
    if fault["kind"] == "status":
        answer = fetch(client, 1)
        assert answer.status_code == fault["status"]
        if fault["status"] == 202:
            assert answer.content == b""
        if "retry_after" in fault:
            assert answer.headers["retry-after"] == str(fault["retry_after"])
    elif fault["kind"] == "truncate":
        with pytest.raises(httpx.RemoteProtocolError):
            fetch(client, 1)
    else:
        with client.stream("GET", "/api/v1/rs-order/orders/files/1") as r:
            assert r.status_code == 200
            next(r.iter_raw(4096))
        # Leaving the block closed the connection while the server was pausing.
    wait_for(lambda: file_stats(sim, 1)["state"] == "DOWNLOAD_ERROR")
    stats = file_stats(sim, 1)
    assert stats["download_errors"] == 1
    if message:
        assert stats["download_error"] == message
    else:
        sent = stats["bytes_sent"]
        assert 0 < sent < size
        assert stats["download_error"] == (
            f"Cannot completely retrieve data file from storage, only {sent}/{size} bytes"
        )


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failed_download_leaves_the_listing_and_is_served_again_by_id(failure: str) -> None:
    with running(**two_files(failure)) as (sim, client):
        assert listed(client) == [1, 2]
        fail_once(sim, client, failure)
        assert listed(client) == [2]
        again = fetch(client, 1)
        size = FAILURES[failure][1]
        assert again.status_code == 200 and md5(again.content) == content_md5(1, 1, size)
        stats = file_stats(sim, 1)
        assert (stats["state"], stats["completed"], stats["download_errors"]) == (
            "DOWNLOADED",
            1,
            1,
        )


@pytest.mark.parametrize("failure", ["429", "503", "202", "truncate", "disconnect"])
def test_done_order_turns_done_with_warning_after_an_aborted_download(failure: str) -> None:
    with running(**two_files(failure)) as (sim, client):
        assert summary(order(client)) == ("DONE", 100, 2, 0, True)
        fail_once(sim, client, failure)
        # File 2 still waits for the user; the server's count is not recomputed for a DONE order.
        assert summary(order(client)) == ("DONE", 100, 2, 0, True)

        assert fetch(client, 2).status_code == 200
        assert summary(order(client)) == ("DONE_WITH_WARNING", 100, 0, 0, False)

        size = FAILURES[failure][1]
        again = fetch(client, 1)  # still served by id
        assert again.status_code == 200 and md5(again.content) == content_md5(1, 1, size)
        assert summary(order(client)) == ("DONE_WITH_WARNING", 100, 0, 0, False)
        assert order_stats(sim)["history"] == ["PENDING", "RUNNING", "DONE", "DONE_WITH_WARNING"]
        assert file_stats(sim, 1)["state"] == "DOWNLOADED"


def test_a_file_downloaded_again_in_time_leaves_the_order_done() -> None:
    with running(**two_files("503")) as (sim, client):
        fail_once(sim, client, "503")
        assert fetch(client, 1).status_code == 200
        assert fetch(client, 2).status_code == 200
        assert summary(order(client)) == ("DONE", 100, 0, 0, False)
        assert order_stats(sim)["history"] == ["PENDING", "RUNNING", "DONE"]


def test_a_download_error_does_not_hold_its_suborder() -> None:
    scenario = two_files("truncate", suborder_max_files=1, max_active_suborders=1)
    with running(**scenario) as (sim, client):
        assert order_stats(sim)["suborders"] == ["WAITING", "PENDING"]
        assert summary(order(client)) == ("RUNNING", 99, 1, 0, True)
        fail_once(sim, client, "truncate")
        # The first suborder holds no AVAILABLE file any more: it is over, the second starts.
        assert order_stats(sim)["suborders"] == ["DONE", "WAITING"]
        assert listed(client) == [2]
        assert summary(order(client)) == ("DONE", 100, 1, 0, True)
        assert fetch(client, 2).status_code == 200
        assert summary(order(client)) == ("DONE_WITH_WARNING", 100, 0, 0, False)


def test_percent_completed_counts_bytes_restored() -> None:
    files = [{"filename": "small", "size": 100}, {"filename": "large", "size": 300}]
    scenario = {
        "suborder_max_files": 1,
        "max_active_suborders": 1,
        "orders": [{"id": 1, "files": files}],
    }
    with running(**scenario) as (sim, client):
        assert summary(order(client)) == ("RUNNING", 25, 1, 0, True)
        assert fetch(client, 1).status_code == 200
        assert summary(order(client)) == ("DONE", 100, 1, 0, True)
        assert fetch(client, 2).status_code == 200
        assert summary(order(client)) == ("DONE", 100, 0, 0, False)
        assert order_stats(sim)["history"] == ["PENDING", "RUNNING", "DONE"]


def test_the_order_services_own_refusals_leave_the_file_as_it_is() -> None:
    users = [
        {"username": "demo@example.org", "tokens": ["a-long-lived-token"]},
        {"username": "eve@example.org", "tokens": ["eve-token"]},
    ]
    orders = [
        {
            "id": 1,
            "files": [
                {"filename": "ok.bin", "size": 10},
                {"filename": "lost.bin", "size": 10, "in_error": True},
            ],
        },
        {"id": 2, "owner": "eve@example.org", "files": [{"filename": "eve.bin", "size": 10}]},
        {"id": 3, "state": "paused", "files": [{"filename": "later.bin", "size": 10}]},
    ]
    with running(users=users, orders=orders, max_active_suborders=5) as (sim, client):
        assert fetch(client, 3).status_code == 403  # eve's file
        assert fetch(client, 2).status_code == 422  # in ERROR at restoration
        assert fetch(client, 4).status_code == 202  # never restored: the order is paused
        states = {
            i: (file_stats(sim, i)["state"], file_stats(sim, i)["download_errors"])
            for i in (2, 3, 4)
        }
        assert states == {2: ("ERROR", 0), 3: ("AVAILABLE", 0), 4: ("PENDING", 0)}
        assert file_stats(sim, 2)["download_error"] is None
        assert summary(order(client)) == ("DONE_WITH_WARNING", 100, 1, 1, True)


def test_the_last_available_file_aborted_turns_the_order_at_once() -> None:
    # Nothing is left AVAILABLE: no suborder waits, and the maintenance finds the error now.
    fault, size, _ = FAILURES["truncate"]
    orders = [{"id": 1, "files": [{"filename": "only.bin", "size": size, "faults": [fault]}]}]
    with running(orders=orders) as (sim, client):
        assert summary(order(client)) == ("DONE", 100, 1, 0, True)
        fail_once(sim, client, "truncate")
        assert summary(order(client)) == ("DONE_WITH_WARNING", 100, 0, 0, False)
        assert listed(client) == []
        assert fetch(client, 1).status_code == 200
        assert summary(order(client)) == ("DONE_WITH_WARNING", 100, 0, 0, False)
