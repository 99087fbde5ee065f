"""The served deployments (deployments/serve.py), triggered through the API of a real server."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from prefect.exceptions import PrefectHTTPStatusError

from regards_order.record import RECORD_FOLDER
from regards_order.simulator import Simulator
from tests.helpers.deployments import (
    FAST_OPTIONS,
    OPS_PASSWORD,
    OPS_USER,
    ORDER_LIMITED,
    ORDER_OVERLAP,
    ORDER_SCHEDULED,
    ORDER_SECRET,
    ORDER_SERVE,
    ORDER_UNKNOWN,
    ORDERS_MANY,
    Served,
    assert_delivered,
    expected_files,
)
from tests.helpers.prefect_server import PrefectServer
from tests.helpers.scenarios import PASSWORD, USER
from tests.helpers.waiting import wait_until

ON_DEMAND = "download-order"
SCHEDULED = "download-order-scheduled"

pytestmark = pytest.mark.usefixtures("served")


def test_on_demand_run_delivers_the_order_without_a_password_parameter(
    prefect_server: PrefectServer, regards: Simulator, tmp_path: Path
) -> None:
    target = tmp_path / "delivery"
    started = prefect_server.run(
        ON_DEMAND, order_id=ORDER_SERVE, target=str(target), options=FAST_OPTIONS
    )
    run = prefect_server.wait_final(started.id)
    assert run.state.is_completed(), run.state.message
    assert_delivered(regards, ORDER_SERVE, target)
    # The connection came from the deployment, the password from serve.py's environment.
    assert run.parameters["connection"]["host"] == regards.url
    assert run.parameters["connection"]["username"] == USER
    assert "password" not in run.parameters["connection"]
    assert PASSWORD not in json.dumps(run.parameters)
    deployment = prefect_server.deployment(ON_DEMAND)
    assert PASSWORD not in json.dumps(deployment.parameters)
    assert deployment.enforce_parameter_schema


@pytest.mark.parametrize(
    ("parameters", "reason"),
    [
        ({"order_id": 0, "target": "somewhere"}, "'order_id'. Failure reason: 0 is less than"),
        ({"order_id": "abc", "target": "somewhere"}, "'order_id'. Failure reason: 'abc' is not"),
        ({"order_id": 7, "target": ""}, "'target'. Failure reason: '' should be non-empty"),
    ],
    ids=["order-id-zero", "order-id-text", "empty-target"],
)
def test_bad_parameters_are_refused_before_anything_runs(
    prefect_server: PrefectServer, parameters: dict[str, Any], reason: str
) -> None:
    before = _count_runs(prefect_server, ON_DEMAND)
    with pytest.raises(PrefectHTTPStatusError) as refused:
        prefect_server.run(ON_DEMAND, **parameters)
    assert refused.value.response.status_code == 409
    assert f"Validation failed for field {reason}" in str(refused.value)
    assert _count_runs(prefect_server, ON_DEMAND) == before  # no run was even created


def test_an_unknown_order_fails_the_run_with_a_clear_message(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    started = prefect_server.run(
        ON_DEMAND, order_id=ORDER_UNKNOWN, target=str(tmp_path / "none"), options=FAST_OPTIONS
    )
    run = prefect_server.wait_final(started.id)
    assert run.state.is_failed(), run.state
    assert f"order {ORDER_UNKNOWN} not delivered" in run.state.message
    assert f"Order {ORDER_UNKNOWN} not found" in run.state.message


def test_the_password_can_come_from_a_secret_block_named_by_a_parameter(
    prefect_server: PrefectServer, regards: Simulator, tmp_path: Path
) -> None:
    from prefect.blocks.system import Secret

    with prefect_server.client():
        Secret(value=OPS_PASSWORD).save("regards-ops-password", overwrite=True)
    target = tmp_path / "ops"
    # serve.py's REGARDS_PASSWORD is another user's: only the block can log this one in.
    connection = {
        "host": regards.url,
        "project": "test",
        "username": OPS_USER,
        "password_block": "regards-ops-password",
    }
    started = prefect_server.run(
        ON_DEMAND,
        order_id=ORDER_SECRET,
        target=str(target),
        connection=connection,
        options=FAST_OPTIONS,
    )
    run = prefect_server.wait_final(started.id)
    assert run.state.is_completed(), run.state.message
    assert_delivered(regards, ORDER_SECRET, target)
    assert OPS_PASSWORD not in json.dumps(run.parameters)


def test_overlapping_runs_of_one_order_deliver_it_intact(
    prefect_server: PrefectServer, regards: Simulator, tmp_path: Path
) -> None:
    """Two runs of the same order into the same target at the same time: each file is written
    under a partial name of its own and renamed once verified, the record is merged and
    replaced atomically, so neither run can leave the other a torn file or a lost entry."""
    target = tmp_path / "shared"
    options = FAST_OPTIONS | {"concurrency": 2}  # each file takes ~1.3 s: the runs overlap
    started = [
        prefect_server.run(ON_DEMAND, order_id=ORDER_OVERLAP, target=str(target), options=options)
        for _ in range(2)
    ]
    first, second = (prefect_server.wait_final(run.id, timeout=120) for run in started)
    assert first.state.is_completed(), first.state.message
    assert second.state.is_completed(), second.state.message
    assert first.start_time < second.end_time and second.start_time < first.end_time, (
        "the two runs did not overlap: the test proved nothing"
    )
    # Both runs wrote some file at once: the case that could have torn it.
    files = regards.stats()["files"]
    both = [i for i in regards.state.file_ids(ORDER_OVERLAP) if files[str(i)]["completed"] == 2]
    assert both, "no file was downloaded by both runs: the test proved nothing"
    assert_delivered(regards, ORDER_OVERLAP, target)
    record = json.loads((target / RECORD_FOLDER / f"order-{ORDER_OVERLAP}.json").read_text())
    names = {entry["name"] for entry in record["files"].values()}
    assert names == set(expected_files(regards, ORDER_OVERLAP))


def test_the_scheduled_deployment_is_registered_as_documented(
    prefect_server: PrefectServer, served: Served
) -> None:
    from regards_order.deployments.serve import DEFAULT_SCHEDULE, DEFAULT_TIMEZONE

    deployment = prefect_server.deployment(SCHEDULED)
    assert DEFAULT_SCHEDULE == "0 2 * * *" and DEFAULT_TIMEZONE == "UTC"  # as the docs say
    [schedule] = deployment.schedules
    assert schedule.active
    assert schedule.schedule.cron == DEFAULT_SCHEDULE
    assert schedule.schedule.timezone == DEFAULT_TIMEZONE
    assert deployment.parameters == {
        "order_id": ORDER_SCHEDULED,
        "target": served.env["REGARDS_SCHEDULED_TARGET"],
        "connection": {"host": served.env["REGARDS_HOST"], "project": "test", "username": USER},
    }
    assert deployment.global_concurrency_limit.limit == 1
    assert deployment.concurrency_options.collision_strategy == "CANCEL_NEW"

    # The server's scheduler plans the next runs from it: every night at 02:00 UTC, with the
    # deployment's parameters.
    def planned() -> list[Any]:
        return [run for run in _runs(prefect_server, SCHEDULED) if run.state.is_scheduled()]

    upcoming = wait_until(planned, "the scheduler to plan runs of the scheduled deployment")
    for run in upcoming:
        start = run.expected_start_time.astimezone(UTC)
        assert (start.hour, start.minute, start.second) == (2, 0, 0)
        assert run.parameters == deployment.parameters


def _runs(server: PrefectServer, name: str) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deployment = server.deployment(name)
    with server.client() as client:
        runs: list[Any] = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )
    return runs


def _count_runs(server: PrefectServer, name: str) -> int:
    return len(_runs(server, name))


def test_the_scheduled_deployment_cancels_a_run_while_another_is_going(
    prefect_server: PrefectServer, regards: Simulator, tmp_path: Path
) -> None:
    target = tmp_path / "limited"
    options = FAST_OPTIONS | {"concurrency": 1}  # ~5 s: the second run finds the slot taken
    started = [
        prefect_server.run(SCHEDULED, order_id=ORDER_LIMITED, target=str(target), options=options)
        for _ in range(2)
    ]
    runs = [prefect_server.wait_final(run.id, timeout=120) for run in started]
    states = sorted(run.state.type.value for run in runs)
    assert states == ["CANCELLED", "COMPLETED"], [run.state for run in runs]
    assert_delivered(regards, ORDER_LIMITED, target)


def test_many_orders_by_the_served_download_orders_deployment(
    prefect_server: PrefectServer, regards: Simulator, tmp_path: Path
) -> None:
    started = prefect_server.run(
        "download-orders",
        flow="download-orders",
        target=str(tmp_path),
        order_ids=list(ORDERS_MANY),
        options=FAST_OPTIONS,
    )
    run = prefect_server.wait_final(started.id, timeout=300)
    assert run.state.is_completed(), run.state.message
    for order_id in ORDERS_MANY:  # one download-order run each, into <target>/<order id>
        assert_delivered(regards, order_id, tmp_path / str(order_id))
        assert len(prefect_server.runs_of(ON_DEMAND, order_id=order_id)) == 1
