"""Helpers for the simulator's HTTP tests: a started simulator, an httpx client, short calls."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from regards_order.simulator import Scenario, Simulator

USER = "demo@example.org"
AUTH = {"Authorization": "Bearer a-long-lived-token"}
ORDERS = "/api/v1/rs-order/user/orders"


@contextmanager
def running(**scenario: Any) -> Iterator[tuple[Simulator, httpx.Client]]:
    """A simulator of ``scenario`` on 127.0.0.1 and a client of it (the demo user's token)."""
    with (
        Simulator(Scenario.model_validate(scenario)) as sim,
        httpx.Client(base_url=sim.url, timeout=10, headers=AUTH) as client,
    ):
        yield sim, client


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def order(client: httpx.Client, order_id: int = 1) -> dict[str, Any]:
    r = client.get(f"{ORDERS}/{order_id}")
    assert r.status_code == 200, r.text
    content: dict[str, Any] = r.json()["content"]
    return content


def listed(client: httpx.Client, order_id: int = 1) -> list[int]:
    """Ids of the order's available files (one page of up to 2000)."""
    r = client.get(f"/api/v1/rs-order/orders/{order_id}/files/available", params={"size": 2000})
    assert r.status_code == 200, r.text
    return [item["content"]["id"] for item in r.json()["content"]]


def fetch(client: httpx.Client, file_id: int) -> httpx.Response:
    return client.get(f"/api/v1/rs-order/orders/files/{file_id}")


def file_stats(sim: Simulator, file_id: int) -> dict[str, Any]:
    stats: dict[str, Any] = sim.stats()["files"][str(file_id)]
    return stats


def order_stats(sim: Simulator, order_id: int = 1) -> dict[str, Any]:
    stats: dict[str, Any] = sim.stats()["orders"][str(order_id)]
    return stats


def summary(view: dict[str, Any]) -> tuple[str, int, int, int, bool]:
    """(status, percentCompleted, availableFilesCount, filesInErrorCount, waitingForUser)."""
    return (
        view["status"],
        view["percentCompleted"],
        view["availableFilesCount"],
        view["filesInErrorCount"],
        view["waitingForUser"],
    )
