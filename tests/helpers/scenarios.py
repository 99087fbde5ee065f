"""Scenarios of the simulator, the test user's connection to it, fast pacing."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from regards_order.settings import Connection, DownloadOptions
from regards_order.simulator import Scenario, Simulator

USER = "demo@example.org"
PASSWORD = "demo-password-7f3a"
LONG_LIVED_TOKEN = "long-lived-token-91c2"


def scenario(orders: list[dict[str, Any]], **settings: Any) -> Scenario:
    """A scenario with the test user, the given orders and settings."""
    document: dict[str, Any] = {
        "project": "test",
        "users": [{"username": USER, "password": PASSWORD, "tokens": [LONG_LIVED_TOKEN]}],
        "orders": orders,
    }
    document.update(settings)
    return Scenario.model_validate(document)


def generated(order_id: int, count: int, size: int, **extra: Any) -> dict[str, Any]:
    """An order of the test user with `count` generated files of `size` bytes."""
    return {
        "id": order_id,
        "owner": USER,
        "generate": [{"count": count, "size": size, "name": f"o{order_id}-{{i:03d}}.bin"}],
        **extra,
    }


def connection_for(simulator: Simulator, **overrides: Any) -> Connection:
    """A connection of the test user to `simulator`."""
    values: dict[str, Any] = {
        "host": simulator.url,
        "project": "test",
        "username": USER,
        "password": SecretStr(PASSWORD),
    }
    values.update(overrides)
    return Connection(**values)


#: Fast pacing for tests: no real waiting between polls or retries.
FAST = DownloadOptions(poll_interval=0.05, max_poll_interval=0.2, retry_delay=0.0, retries=3)
