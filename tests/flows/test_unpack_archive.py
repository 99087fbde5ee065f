"""The unpack-archive flow against the session's Prefect API: its state, the files at the
target, the event it emits (read back from the API), and the trigger that starts it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, State
from prefect.events import emit_event
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.schemas.events import Event

from regards_order.deployments.unpack_trigger import DELIVERED_EVENT, unpack_trigger
from regards_order.flows.unpack_archive import unpack_archive
from regards_order.tasks.unpack import UNPACKED_EVENT
from regards_order.unpack import UnpackReport
from tests.helpers.archives import Entry, build
from tests.helpers.targets import DeliveryTarget

pytestmark = pytest.mark.usefixtures("prefect_api")

T = TypeVar("T")

#: Longest wait for the API to show what a run did (events and logs arrive in batches).
DEADLINE_SECONDS = 90.0

#: Seconds between two deliveries while waiting for a new automation to react.
REEMIT_SECONDS = 5.0

MEMBERS = [Entry("a.txt", b"alpha"), Entry("sub/b.bin", bytes(range(256)) * 400)]


def wait_for(find: Callable[[], T | None], what: str) -> T:
    """What `find` returns once it is not None; fails after DEADLINE_SECONDS."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while (found := find()) is None:
        assert time.monotonic() < deadline, f"no {what} after {DEADLINE_SECONDS:.0f} s"
        time.sleep(0.2)
    return found


def read_event(name: str, resource_id: str) -> Event:
    def find() -> Event | None:
        with get_client(sync_client=True) as client:
            page = client.read_events(
                filter=EventFilter(
                    event=EventNameFilter(name=[name]),
                    resource=EventResourceFilter(id=[resource_id]),
                ),
                limit=50,  # the client's default (100) is more than the server accepts
            )
        return page.events[0] if page.events else None

    return wait_for(find, f"{name} event of {resource_id}")


def put_archive(target: DeliveryTarget, name: str, entries: list[Entry]) -> str:
    target.fs.makedirs(f"{target.root}/products", exist_ok=True)
    target.write(f"products/{name}", build("." + name.split(".", 1)[1], entries))
    return f"{target.url}/products/{name}"


def run(**parameters: Any) -> State[Any]:
    state: State[Any] = asyncio.run(unpack_archive(**parameters, return_state=True))
    return state


def test_the_archive_is_unpacked_and_announced(target: DeliveryTarget) -> None:
    order, file = "41", uuid.uuid4().hex[:8]
    url = put_archive(target, "granule.tar.gz", MEMBERS)

    state = run(
        target=url,
        storage_options=target.storage_options,
        order_id=order,
        file_id=file,
        product_id="URN:AIP:1",
    )

    assert state.is_completed(), state
    report = state.result()
    assert isinstance(report, UnpackReport) and report.ok
    for entry in MEMBERS:
        assert target.read(f"products/granule/{entry.name}") == entry.data
    assert target.names() == {"products/granule.tar.gz"} | {
        f"products/granule/{e.name}" for e in MEMBERS
    }
    event = read_event(UNPACKED_EVENT, f"regards-order.archive.{order}.{file}")
    assert event.resource.name == "granule.tar.gz"
    assert event.resource["regards-order.unpack.complete"] == "true"
    assert event.resource["regards.product.id"] == "URN:AIP:1"
    assert event.payload["members"] == 2 and event.payload["bytes"] == report.bytes
    assert event.payload["refused"] == [] and event.payload["listed_all"] is True
    assert {m["path"]: m["md5"] for m in event.payload["extracted"]} == {
        e.name: hashlib.md5(e.data).hexdigest() for e in MEMBERS
    }
    assert event.payload["folder"] == report.folder
    roles = {r.role: r.id for r in event.related}
    assert roles["archive"] == f"regards-order.file.{order}.{file}"
    assert roles["flow-run"] == f"prefect.flow-run.{state.state_details.flow_run_id}"


def flow_run_logs(flow_run_id: uuid.UUID) -> list[str]:
    """The run's log messages, once its final state's line has reached the API."""

    def find() -> list[str] | None:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
        messages = [log.message for log in logs]
        return messages if any("Finished in state Failed" in m for m in messages) else None

    return wait_for(find, "final log line")


def test_a_hostile_archive_fails_the_run_and_writes_nothing_outside(tmp_path: Path) -> None:
    target = DeliveryTarget("local", str(tmp_path / "delivery"))
    entries = [
        Entry("../evil", b"x"),
        Entry(f"{tmp_path}/evil-absolute", b"x"),
        Entry("evil-link", kind="symlink", link="/etc/passwd"),
        Entry("evil-hardlink", kind="hardlink", link="/etc/passwd"),
        Entry("evil-device", kind="chardev"),
        Entry("kept.txt", b"kept"),
    ]
    url = put_archive(target, "hostile.tar", entries)

    state = run(target=url)

    assert state.is_failed()
    assert state.message is not None and "5 refused" in state.message
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "delivery/products/hostile.tar",
        "delivery/products/hostile/kept.txt",
    ]
    event = read_event(UNPACKED_EVENT, f"regards-order.archive.{url}")
    assert event.resource["regards-order.unpack.complete"] == "false"
    assert {p["member"] for p in event.payload["refused"]} == {e.name for e in entries[:-1]}
    messages = flow_run_logs(state.state_details.flow_run_id)
    assert any("Refused '../evil'" in m for m in messages)
    assert not any("Traceback" in m for m in messages)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"target": "/data/granule.tif"}, "not an archive"),
        (
            {"target": "s3://bucket/x.zip", "storage_options": {"secret": "s"}},
            "would carry a credential",
        ),
    ],
)
def test_what_cannot_be_unpacked_fails_at_once(parameters: dict[str, Any], message: str) -> None:
    state = run(**parameters)
    assert state.is_failed() and state.message is not None
    assert message in state.message


def test_the_trigger_selects_archives_by_name() -> None:
    from prefect.server.events.schemas.events import Resource, ResourceSpecification

    trigger = unpack_trigger()
    assert trigger.expect == {DELIVERED_EVENT}
    assert trigger.match.root["prefect.resource.name"] == ["*.tar.gz", "*.tgz", "*.tar", "*.zip"]
    spec = ResourceSpecification(trigger.match.root)  # the server's own matching

    def selects(name: str) -> bool:
        resource = {"prefect.resource.id": "regards-order.file.1.2", "prefect.resource.name": name}
        return spec.matches(Resource(resource))

    for name in ["x.zip", "x.tar", "x.tar.gz", "x.tgz", "a b.v2.tar.gz"]:
        assert selects(name), name
    for name in ["x.tif", "x.gz", "x.zip.md5", "xzip", "x.tar.bz2", "x.tgz.part"]:
        assert not selects(name), name


def deployment_runs(deployment_id: uuid.UUID) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


def emit_delivered(url: str, order: str, file: str) -> None:
    emit_event(
        DELIVERED_EVENT,
        resource={
            "prefect.resource.id": f"regards-order.file.{order}.{file}",
            "prefect.resource.name": url.rpartition("/")[2],
            "regards.order.id": order,
            "regards.file.id": file,
            "regards-order.target": url,
        },
        payload={"md5": "0" * 32, "size": 1, "target": url},
    )


def test_a_delivered_archive_starts_a_run_with_the_event_s_values(tmp_path: Path) -> None:
    target = DeliveryTarget("local", str(tmp_path / "delivery"))
    url = put_archive(target, "granule.zip", MEMBERS)
    deployment = unpack_archive.to_deployment(
        name=f"unpack-{uuid.uuid4().hex[:8]}", triggers=[unpack_trigger()]
    )
    deployment_id = deployment.apply()
    order = "7"

    # The server loads a new automation a moment after creating it: deliver again (another
    # file id) every few seconds until a run shows that it reacts.
    emitted_at = -float("inf")

    def first_run() -> FlowRun | None:
        nonlocal emitted_at
        if runs := deployment_runs(deployment_id):
            return runs[0]
        if time.monotonic() - emitted_at > REEMIT_SECONDS:
            emit_delivered(url, order, uuid.uuid4().hex[:8])
            emitted_at = time.monotonic()
        return None

    triggered = wait_for(first_run, "run of the deployment")
    assert triggered.parameters["target"] == url
    assert triggered.parameters["order_id"] == order
    assert triggered.parameters["file_id"] not in (None, "")
    assert triggered.parameters["product_id"] == ""  # the event carries no product label

    # The automation is live now: a file that is not an archive starts nothing, an archive
    # delivered after it does.
    before = {run.id for run in deployment_runs(deployment_id)}
    emit_delivered(url.replace(".zip", ".tif"), order, "not-an-archive")
    emit_delivered(url, order, "after")
    after = wait_for(
        lambda: (
            [
                run
                for run in deployment_runs(deployment_id)
                if run.id not in before and run.parameters["file_id"] == "after"
            ]
            or None
        ),
        "run for the archive delivered after the .tif",
    )
    assert len(after) == 1
    assert all(r.parameters["target"].endswith(".zip") for r in deployment_runs(deployment_id))

    state = run(**triggered.parameters)  # what the deployment's run would do with them
    assert state.is_completed(), state
    assert target.read("products/granule/a.txt") == b"alpha"


def test_the_flow_module_imports_cleanly(tmp_path: Path) -> None:
    """Importing the entrypoint starts nothing and needs no API (as a worker loads it)."""
    code = "import flows.unpack_archive as m; print(m.unpack_archive.name)"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "unpack-archive\n", "")


def test_every_parameter_has_a_title_and_a_description() -> None:
    properties = unpack_archive.parameters.properties
    assert set(properties) == {"target", "storage_options", "order_id", "file_id", "product_id"}
    for name, schema in properties.items():
        assert schema.get("title") and schema.get("description"), name
