"""Serve the regards-order deployments from this process: no work pool, no worker to run.

    uv run python deployments/serve.py          # or: make serve
    python -m regards_order.deployments.serve   # where only the wheel is installed

Served until Ctrl-C or SIGTERM:

- `download-order/download-order`, on demand: Run > Custom run, fill in the order id and the
  target.
- `download-order/download-order-scheduled`, on a cron schedule: the order, the target and the
  connection are the deployment's parameters.
- `download-orders/download-orders`, on demand: many orders (ids, or every order of the user
  in a status), one `download-order` run each, into `<target>/<order id>`.
- `order-and-download/order-and-download`, on demand: catalogue queries ordered (once per
  request and target), then delivered.
- `order-and-download/subscription`, on a cron schedule: orders what is new since its last
  successful run (the queries' `{since}` and `{until}`) and delivers it.
- `unpack-archive/unpack-archive`, triggered: each delivered .zip, .tar, .tar.gz or .tgz is
  unpacked beside it. Its trigger is on only with REGARDS_UNPACK_ARCHIVES=1: the example to
  copy for any step that follows a delivery.

They are configured from this process's environment, read once at start-up (restart to change):

    REGARDS_HOST, REGARDS_PROJECT, REGARDS_USERNAME   the connection they all start with
    REGARDS_CLIENT_ID                                 a site's own OAuth2 client id
    REGARDS_PASSWORD_BLOCK / REGARDS_TOKEN_BLOCK      a Prefect Secret block holding the secret
    REGARDS_CLIENT_SECRET_BLOCK                       one holding a site's own client secret
    REGARDS_TARGET                                    default target of the on-demand ones
    REGARDS_SCHEDULE, REGARDS_SCHEDULE_TIMEZONE       cron and time zone of the scheduled one
    REGARDS_SCHEDULED_ORDER_ID, REGARDS_SCHEDULED_TARGET   what the scheduled one delivers, where
    REGARDS_SUBSCRIPTION_QUERIES                      the subscription's queries, one per line
                                                      (unset: its schedule is off)
    REGARDS_SUBSCRIPTION_TARGET, REGARDS_SUBSCRIPTION_SINCE   where it delivers; its first start
    REGARDS_SUBSCRIPTION_SCHEDULE                     its cron, in REGARDS_SCHEDULE_TIMEZONE
    REGARDS_UNPACK_ARCHIVES                           1: unpack delivered archives (trigger on)

The defaults fit the bundled simulator (`regards-order simulate`, order 1234). No secret is ever
a parameter: each run reads the password or token from the Secret block named above, or else
from REGARDS_PASSWORD / REGARDS_TOKEN in this process's environment; a site's own client
secret likewise (REGARDS_CLIENT_SECRET_BLOCK, else REGARDS_CLIENT_SECRET).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from prefect import Flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType
from pydantic import ValidationError

from regards_order.deployments.unpack_trigger import unpack_trigger
from regards_order.flows.download_order import download_order
from regards_order.flows.download_orders import download_orders
from regards_order.flows.order_and_download import order_and_download
from regards_order.flows.unpack_archive import unpack_archive
from regards_order.settings import Connection

ON_DEMAND = "download-order"
SCHEDULED = "download-order-scheduled"
MANY = "download-orders"
ORDER = "order-and-download"
SUBSCRIPTION = "subscription"
UNPACK = "unpack-archive"

#: Every night at 02:00; REGARDS_SCHEDULE takes any cron, e.g. "0 * * * *" for every hour.
DEFAULT_SCHEDULE = "0 2 * * *"
DEFAULT_TIMEZONE = "UTC"
#: The subscription looks for new products every hour.
DEFAULT_SUBSCRIPTION_SCHEDULE = "0 * * * *"

#: The bundled simulator's demo account and order (`regards-order simulate`).
DEFAULTS = {
    "REGARDS_HOST": "http://127.0.0.1:8080",
    "REGARDS_PROJECT": "demo",
    "REGARDS_USERNAME": "demo@example.org",
    "REGARDS_SCHEDULED_ORDER_ID": "1234",
    "REGARDS_SCHEDULED_TARGET": "./regards-scheduled",
    # The bundled catalogue's products carry a start_date (`regards-order simulate --scenario
    # .../scenarios/catalog.json`); a real catalogue names its own date attribute.
    "REGARDS_SUBSCRIPTION_QUERIES": "start_date:[{since} TO {until}]",
    "REGARDS_SUBSCRIPTION_TARGET": "./regards-subscription",
    "REGARDS_SUBSCRIPTION_SINCE": "2024-01-01T00:00:00Z",
}

#: Connection fields a deployment may carry, and the variable each comes from.
CONNECTION_VARIABLES = {
    "host": "REGARDS_HOST",
    "project": "REGARDS_PROJECT",
    "username": "REGARDS_USERNAME",
    "client_id": "REGARDS_CLIENT_ID",
    "password_block": "REGARDS_PASSWORD_BLOCK",
    "token_block": "REGARDS_TOKEN_BLOCK",
    "client_secret_block": "REGARDS_CLIENT_SECRET_BLOCK",
}


def connection_parameters(env: Mapping[str, str]) -> dict[str, Any]:
    """The connection the deployments start with: where to log in, never a secret itself."""
    values = {
        field: env.get(variable) or DEFAULTS.get(variable)
        for field, variable in CONNECTION_VARIABLES.items()
    }
    parameters = {name: value for name, value in values.items() if value}
    try:
        Connection.model_validate(parameters)  # a bad host fails now, not at the first run
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        setting = CONNECTION_VARIABLES.get(field, "REGARDS_*")
        raise ValueError(f"{setting}: {first['msg'].removeprefix('Value error, ')}") from None
    return parameters


def deployments(env: Mapping[str, str] = os.environ) -> dict[str, RunnerDeployment]:
    """Every deployment, by name, configured from `env`."""
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
    timezone = env.get("REGARDS_SCHEDULE_TIMEZONE") or DEFAULT_TIMEZONE
    schedule = Cron(env.get("REGARDS_SCHEDULE") or DEFAULT_SCHEDULE, timezone=timezone)
    lines = (env.get("REGARDS_SUBSCRIPTION_QUERIES") or "").splitlines()
    queries_given = [q.strip() for q in lines if q.strip()]
    queries = queries_given or [DEFAULTS["REGARDS_SUBSCRIPTION_QUERIES"]]
    subscription = {
        "queries": queries,
        "connection": connection,
        "target": env.get("REGARDS_SUBSCRIPTION_TARGET") or DEFAULTS["REGARDS_SUBSCRIPTION_TARGET"],
        "since": env.get("REGARDS_SUBSCRIPTION_SINCE") or DEFAULTS["REGARDS_SUBSCRIPTION_SINCE"],
    }
    every = env.get("REGARDS_SUBSCRIPTION_SCHEDULE") or DEFAULT_SUBSCRIPTION_SCHEDULE
    made = [
        _deployment(
            download_order,
            name=ON_DEMAND,
            description="Deliver one REGARDS order, verified, to a folder or an fsspec URL: "
            "Run > Custom run, then fill in the order id and the target.",
            parameters=on_demand,
            tags=["regards"],
        ),
        _deployment(
            download_order,
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
        ),
        _deployment(
            download_orders,
            name=MANY,
            description="Deliver many orders (ids, or every order of the user in a status), "
            "one download-order run each, into <target>/<order id>.",
            parameters=on_demand,
            tags=["regards"],
        ),
        _deployment(
            order_and_download,
            name=ORDER,
            description="Order what catalogue queries find (once per request and target), "
            "then deliver it, verified: Run > Custom run, fill in the queries and the target.",
            parameters=on_demand,
            tags=["regards", "catalogue"],
        ),
        _deployment(
            order_and_download,
            name=SUBSCRIPTION,
            description=f"Order what is new in the catalogue since the last successful run "
            f"({', '.join(queries)}) and deliver it to {subscription['target']}.",
            parameters=subscription,
            # It orders by itself: its schedule is on only once its queries are given, never
            # with the default that fits the bundled simulator.
            schedule=Cron(every, timezone=timezone, active=bool(queries_given)),
            # Two windows at once would order the same products twice.
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
            tags=["regards", "catalogue", "scheduled"],
        ),
        _deployment(
            unpack_archive,
            name=UNPACK,
            description="Unpack each delivered archive beside it (triggered by the "
            "regards-order.file.delivered events of .zip, .tar, .tar.gz and .tgz files).",
            triggers=[unpack_trigger(enabled=env.get("REGARDS_UNPACK_ARCHIVES") == "1")],
            tags=["regards", "downstream"],
        ),
    ]
    return {deployment.name: deployment for deployment in made}


def _deployment(flow: Flow[Any, Any], **settings: Any) -> RunnerDeployment:
    """A deployment of `flow` loaded by module path (`to_deployment`, typed for a synchronous
    caller)."""
    made = flow.to_deployment(entrypoint_type=EntrypointType.MODULE_PATH, **settings)
    assert isinstance(made, RunnerDeployment)
    return made


def main() -> None:
    """Serve every deployment until interrupted."""
    try:
        served = deployments()
    except ValueError as error:
        sys.exit(f"serve.py: {error}")
    serve(*served.values())


if __name__ == "__main__":
    main()
