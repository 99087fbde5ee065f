"""serve.py's configuration: the documented environment variables, read without a server."""

from __future__ import annotations

import re

import pytest

from regards_order.deployments.serve import DEFAULT_SCHEDULE, DEFAULT_TIMEZONE, deployments

SITE = {
    "REGARDS_HOST": "https://regards.example.org",
    "REGARDS_PROJECT": "myproject",
    "REGARDS_USERNAME": "me@example.org",
    "REGARDS_PASSWORD_BLOCK": "regards-password",
}


def test_the_schedule_and_the_parameters_come_from_the_environment() -> None:
    on_demand, scheduled = deployments(
        SITE
        | {
            "REGARDS_TARGET": "/data/regards",
            "REGARDS_SCHEDULE": "0 * * * *",
            "REGARDS_SCHEDULE_TIMEZONE": "Europe/Paris",
            "REGARDS_SCHEDULED_ORDER_ID": "42",
            "REGARDS_SCHEDULED_TARGET": "s3://archive/regards",
        }
    )
    connection = {
        "host": "https://regards.example.org",
        "project": "myproject",
        "username": "me@example.org",
        "password_block": "regards-password",
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
    for deployment in (on_demand, scheduled):
        assert deployment.entrypoint == "regards_order.flows.download_order.download_order"
        assert deployment.enforce_parameter_schema


def test_without_settings_it_serves_the_bundled_simulator_every_night() -> None:
    on_demand, scheduled = deployments({})
    assert on_demand.parameters == {
        "connection": {
            "host": "http://127.0.0.1:8080",
            "project": "demo",
            "username": "demo@example.org",
        }
    }
    [schedule] = scheduled.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")
    assert (DEFAULT_SCHEDULE, DEFAULT_TIMEZONE) == ("0 2 * * *", "UTC")
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


def test_every_parameter_of_the_form_has_a_title_and_a_description() -> None:
    on_demand, _ = deployments({})
    schema = on_demand._parameter_openapi_schema.model_dump()
    properties = schema["properties"]
    assert set(properties) == {"order_id", "target", "connection", "options"}
    assert properties["order_id"]["title"] == "Order id"
    assert properties["target"]["title"] == "Target"
    for name, field in properties.items():
        assert field.get("description"), f"{name} has no description in the run form"
