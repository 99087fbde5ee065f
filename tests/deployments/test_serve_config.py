"""serve.py's configuration: the documented environment variables, read without a server."""

from __future__ import annotations

import re

import pytest

from regards_order.deployments.serve import deployments

SITE = {
    "REGARDS_HOST": "https://regards.example.org",
    "REGARDS_PROJECT": "myproject",
    "REGARDS_USERNAME": "me@example.org",
    "REGARDS_PASSWORD_BLOCK": "regards-password",
}


def test_the_schedule_and_the_parameters_come_from_the_environment() -> None:
    served = deployments(
        SITE
        | {
            "REGARDS_CLIENT_ID": "site-client",
            "REGARDS_CLIENT_SECRET_BLOCK": "site-client-secret",
            "REGARDS_TARGET": "/data/regards",
            "REGARDS_SCHEDULE": "0 * * * *",
            "REGARDS_SCHEDULE_TIMEZONE": "Europe/Paris",
            "REGARDS_SCHEDULED_ORDER_ID": "42",
            "REGARDS_SCHEDULED_TARGET": "s3://archive/regards",
            "REGARDS_SUBSCRIPTION_QUERIES": "tile:T31TCJ AND ingested:[{since} TO {until}]\n\n"
            "tile:T30TYP AND ingested:[{since} TO {until}]\n",
            "REGARDS_SUBSCRIPTION_TARGET": "s3://archive/new",
            "REGARDS_SUBSCRIPTION_SINCE": "2026-11-01T00:00:00Z",
            "REGARDS_SUBSCRIPTION_SCHEDULE": "*/15 * * * *",
        }
    )
    assert list(served) == [
        "download-order",
        "download-order-scheduled",
        "download-orders",
        "order-and-download",
        "subscription",
        "unpack-archive",
    ]
    on_demand, scheduled, many = (served[n] for n in list(served)[:3])
    ordering, subscription, unpack = (served[n] for n in list(served)[3:])
    connection = {
        "host": "https://regards.example.org",
        "project": "myproject",
        "username": "me@example.org",
        "client_id": "site-client",
        "password_block": "regards-password",
        "client_secret_block": "site-client-secret",
    }
    assert (on_demand.name, on_demand.schedules) == ("download-order", [])
    assert on_demand.parameters == {"connection": connection, "target": "/data/regards"}
    assert scheduled.name == "download-order-scheduled"
    [schedule] = scheduled.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 * * * *", "Europe/Paris")
    assert scheduled.parameters == {
        "order_id": 42,
        "target": "s3://archive/regards",
        "connection": connection,
    }
    assert (unpack.name, unpack.schedules, unpack.parameters) == ("unpack-archive", [], {})
    [trigger] = unpack.triggers
    assert trigger.enabled is False  # off unless REGARDS_UNPACK_ARCHIVES=1
    assert (
        deployments(SITE | {"REGARDS_UNPACK_ARCHIVES": "1"})["unpack-archive"].triggers[0].enabled
    )
    assert (many.name, many.schedules) == ("download-orders", [])
    assert many.parameters == {"connection": connection, "target": "/data/regards"}
    assert many.entrypoint == "regards_order.flows.download_orders.download_orders"
    for deployment in (on_demand, scheduled):
        assert deployment.entrypoint == "regards_order.flows.download_order.download_order"
    assert ordering.parameters == {"connection": connection, "target": "/data/regards"}
    assert subscription.parameters == {
        "queries": [
            "tile:T31TCJ AND ingested:[{since} TO {until}]",
            "tile:T30TYP AND ingested:[{since} TO {until}]",
        ],
        "connection": connection,
        "target": "s3://archive/new",
        "since": "2026-11-01T00:00:00Z",
    }
    [every] = subscription.schedules
    assert (every.schedule.cron, every.schedule.timezone) == ("*/15 * * * *", "Europe/Paris")
    assert every.active  # its queries were given
    [off] = deployments(SITE)["subscription"].schedules
    assert not off.active  # the default queries never order by themselves
    assert subscription.concurrency_limit == 1
    for deployment in (ordering, subscription):
        assert deployment.entrypoint == (
            "regards_order.flows.order_and_download.order_and_download"
        )
    for deployment in served.values():
        assert deployment.enforce_parameter_schema


def test_without_settings_it_serves_the_bundled_simulator_every_night() -> None:
    served = deployments({})
    on_demand, scheduled = served["download-order"], served["download-order-scheduled"]
    assert on_demand.parameters == {
        "connection": {
            "host": "http://127.0.0.1:8080",
            "project": "demo",
            "username": "demo@example.org",
        }
    }
    [schedule] = scheduled.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")
    assert scheduled.parameters["order_id"] == 1234


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"REGARDS_HOST": "regards.example.org"}, "REGARDS_HOST: host must be an http(s) URL"),
        ({"REGARDS_SCHEDULED_ORDER_ID": "abc"}, "REGARDS_SCHEDULED_ORDER_ID must be an order id"),
        ({"REGARDS_SCHEDULED_ORDER_ID": "0"}, "REGARDS_SCHEDULED_ORDER_ID must be an order id"),
        ({"REGARDS_SCHEDULE": "every night"}, "Invalid cron string"),
    ],
)
def test_a_bad_setting_stops_serve_before_anything_is_registered(
    setting: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        deployments(SITE | setting)


@pytest.mark.parametrize("name", ["download-order", "download-orders", "order-and-download"])
def test_every_field_of_the_form_is_titled_and_fillable_at_once(name: str) -> None:
    schema = deployments({})[name]._parameter_openapi_schema.model_dump()
    raw_names = []
    for field_name, field in schema["properties"].items():
        assert field.get("description"), f"{field_name} has no description in the run form"
        if field.get("title", field_name) in (field_name, field_name.replace("_", " ")):
            raw_names.append(field_name)
    assert raw_names == [], "fields the form shows by their raw name"
    for definition in schema["definitions"].values():
        for field_name, field in definition.get("properties", {}).items():
            assert field.get("title"), f"{field_name} has no title"
            # An optional value is a plain input, not a switch between a type and "None".
            assert "anyOf" not in field, f"{field_name}: {field['anyOf']}"
