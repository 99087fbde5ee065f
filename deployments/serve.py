"""Serve the download-order deployments from this process: no work pool, no worker to run.

    uv run python deployments/serve.py          # or: make serve

Two deployments of the `download-order` flow, served until Ctrl-C or SIGTERM:

- `download-order`, on demand: in the UI, open it, click Run > Custom run, fill in the order id
  and the target.
- `download-order-scheduled`, on a cron schedule: the order, the target and the connection are
  the deployment's parameters, nothing is filled in by hand.

They are configured from this process's environment, read once at start-up (restart to change):

    REGARDS_HOST, REGARDS_PROJECT, REGARDS_USERNAME   the connection both start with
    REGARDS_PASSWORD_BLOCK / REGARDS_TOKEN_BLOCK      name of a Prefect Secret block holding it
    REGARDS_TARGET                                    default target of the on-demand one
    REGARDS_SCHEDULE, REGARDS_SCHEDULE_TIMEZONE       cron and time zone of the scheduled one
    REGARDS_SCHEDULED_ORDER_ID, REGARDS_SCHEDULED_TARGET   what the scheduled one delivers, where

The defaults fit the bundled simulator (`regards-order simulate`, order 1234). The password or
token itself is never a parameter: each run reads it from the Secret block named above, or
from REGARDS_PASSWORD / REGARDS_TOKEN in the environment of this process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType
from pydantic import ValidationError

from regards_order.flows.download_order import download_order
from regards_order.settings import Connection

ON_DEMAND = "download-order"
SCHEDULED = "download-order-scheduled"

#: Every night at 02:00; REGARDS_SCHEDULE takes any cron, e.g. "0 * * * *" for every hour.
DEFAULT_SCHEDULE = "0 2 * * *"
DEFAULT_TIMEZONE = "UTC"

#: The bundled simulator's demo account and order (`regards-order simulate`).
DEFAULTS = {
    "REGARDS_HOST": "http://127.0.0.1:8080",
    "REGARDS_PROJECT": "demo",
    "REGARDS_USERNAME": "demo@example.org",
    "REGARDS_SCHEDULED_ORDER_ID": "1234",
    "REGARDS_SCHEDULED_TARGET": "./regards-scheduled",
}


def connection_parameters(env: Mapping[str, str]) -> dict[str, Any]:
    """The connection both deployments start with: where to log in, never the secret itself."""
    values = {
        "host": env.get("REGARDS_HOST") or DEFAULTS["REGARDS_HOST"],
        "project": env.get("REGARDS_PROJECT") or DEFAULTS["REGARDS_PROJECT"],
        "username": env.get("REGARDS_USERNAME") or DEFAULTS["REGARDS_USERNAME"],
        "password_block": env.get("REGARDS_PASSWORD_BLOCK"),
        "token_block": env.get("REGARDS_TOKEN_BLOCK"),
    }
    parameters = {name: value for name, value in values.items() if value}
    try:
        Connection.model_validate(parameters)  # a bad host fails now, not at the first run
    except ValidationError as error:
        first = error.errors()[0]
        setting = f"REGARDS_{str(first['loc'][0]).upper()}" if first["loc"] else "REGARDS_*"
        raise ValueError(f"{setting}: {first['msg'].removeprefix('Value error, ')}") from None
    return parameters


def deployments(env: Mapping[str, str] = os.environ) -> list[RunnerDeployment]:
    """The on-demand and the scheduled deployment, configured from `env`."""
    connection = connection_parameters(env)
    on_demand: dict[str, Any] = {"connection": connection}
    if env.get("REGARDS_TARGET"):
        on_demand["target"] = env["REGARDS_TARGET"]
    order_id = env.get("REGARDS_SCHEDULED_ORDER_ID") or DEFAULTS["REGARDS_SCHEDULED_ORDER_ID"]
    if not order_id.isdigit() or int(order_id) < 1:
        raise ValueError(f"REGARDS_SCHEDULED_ORDER_ID must be an order id, got {order_id!r}")
    scheduled = {
        "order_id": int(order_id),
        "target": env.get("REGARDS_SCHEDULED_TARGET") or DEFAULTS["REGARDS_SCHEDULED_TARGET"],
        "connection": connection,
    }
    schedule = Cron(
        env.get("REGARDS_SCHEDULE") or DEFAULT_SCHEDULE,
        timezone=env.get("REGARDS_SCHEDULE_TIMEZONE") or DEFAULT_TIMEZONE,
    )
    return [
        _deployment(
            name=ON_DEMAND,
            description="Deliver one REGARDS order, verified, to a folder or an fsspec URL: "
            "Run > Custom run, then fill in the order id and the target.",
            parameters=on_demand,
            tags=["regards"],
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
        _deployment(
            name=SCHEDULED,
            description=f"Deliver order {order_id} to {scheduled['target']} on a schedule; "
            "each run fetches only what is new or missing.",
            parameters=scheduled,
            schedule=schedule,
            # A run still going when the next one is due (a long restore): the new one is
            # cancelled, it would only do the same work.
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
            tags=["regards", "scheduled"],
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
    ]


def _deployment(**settings: Any) -> RunnerDeployment:
    """A deployment of download_order (`to_deployment`, typed for a synchronous caller)."""
    made = download_order.to_deployment(**settings)
    assert isinstance(made, RunnerDeployment)
    return made


def main() -> None:
    """Serve both deployments until interrupted."""
    try:
        served = deployments()
    except ValueError as error:
        sys.exit(f"serve.py: {error}")
    serve(*served)


if __name__ == "__main__":
    main()
