"""Events of a served delivery on a real `prefect server start`: one per file downloaded, one
per run, none for files already there; and the trigger that unpacks delivered archives."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventResourceFilter,
)

from regards_order.simulator import Simulator
from tests.helpers.deployments import (
    ARCHIVE_MEMBERS,
    FAST_OPTIONS,
    ORDER_ARCHIVES,
    Served,
    assert_delivered,
)
from tests.helpers.prefect_server import PrefectServer
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.usefixtures("served")


def events(server: PrefectServer, name: str, prefix: str) -> list[Any]:
    """Every event called `name` whose resource id starts with `prefix`, all pages read."""
    from datetime import UTC, datetime, timedelta

    found: list[Any] = []
    with server.client() as client:
        page = client.read_events(
            filter=EventFilter(
                event=EventNameFilter(name=[name]),
                resource=EventResourceFilter(id_prefix=[prefix]),
                occurred=EventOccurredFilter(since=datetime.now(UTC) - timedelta(hours=1)),
            ),
            limit=50,  # the client's default (100) is more than the server accepts
        )
        found += page.events
        while page.next_page:
            page = client.read_events_page(page.next_page)
            found += page.events
    return found


def test_one_event_per_downloaded_file_and_the_trigger_unpacks_archives(
    prefect_server: PrefectServer, regards: Simulator, served: Served, tmp_path: Path
) -> None:
    target = tmp_path / "delivery"
    started = prefect_server.run(
        "download-order", order_id=ORDER_ARCHIVES, target=str(target), options=FAST_OPTIONS
    )
    assert prefect_server.wait_final(started.id).state.is_completed()
    assert_delivered(regards, ORDER_ARCHIVES, target)
    prefix = f"regards-order.file.{ORDER_ARCHIVES}."
    delivered = wait_until(
        lambda: (
            (found := events(prefect_server, "regards-order.file.delivered", prefix))
            and len(found) >= 3
            and found
        ),
        "an event for each of the three files",
    )
    assert len(delivered) == 3
    files = {f.filename: f for f in regards.scenario.resolve()[ORDER_ARCHIVES]}
    for event in delivered:
        name = event.resource["prefect.resource.name"]
        file = files[name]
        where = str(target / name)
        assert event.resource.id == f"{prefix}{file.id}"
        assert event.resource["regards.order.id"] == str(ORDER_ARCHIVES)
        assert event.resource["regards.file.id"] == str(file.id)
        assert event.resource["regards.product.id"] == file.product_id
        assert event.resource["regards-order.target"] == where
        assert event.payload == {
            "md5": hashlib.md5(Path(where).read_bytes()).hexdigest(),
            "size": file.size,
            "target": where,
        }
        roles = {r.role: r.id for r in event.related}
        assert roles["order"] == f"regards-order.order.{ORDER_ARCHIVES}"

    # The trigger: one unpack-archive run per archive, none for the plain file.
    def unpack_runs() -> list[Any]:
        with prefect_server.client() as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["unpack-archive"]))
            )
        mine = [r for r in runs if str(r.parameters.get("target", "")).startswith(str(target))]
        return mine if len(mine) == 2 and all(r.state.is_final() for r in mine) else []

    runs = {Path(r.parameters["target"]).name: r for r in wait_until(unpack_runs, "two unpacks")}
    assert runs["product.zip"].state.is_completed(), runs["product.zip"].state.message
    for member, data in ARCHIVE_MEMBERS.items():
        assert (target / "product" / member).read_bytes() == data
    assert runs["hostile.tar"].state.is_failed()  # refused members: an operator must see it
    assert (target / "hostile" / "fine.txt").read_bytes() == b"the one safe member"
    assert not (target / "hostile" / "link").exists()
    assert not (target / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/absolute-evil.txt").exists()

    # A re-run finds every file there: its order event, and not one more file event.
    again = prefect_server.run(
        "download-order", order_id=ORDER_ARCHIVES, target=str(target), options=FAST_OPTIONS
    )
    assert prefect_server.wait_final(again.id).state.is_completed()
    order = f"regards-order.order.{ORDER_ARCHIVES}"
    ended = wait_until(
        lambda: (
            len(found := events(prefect_server, "regards-order.order.delivered", order)) >= 2
            and found
        ),
        "the order event of each run",
    )
    assert len(ended) == 2
    assert [e.payload["counts"] for e in sorted(ended, key=lambda e: e.occurred)] == [
        {"downloaded": 3, "skipped": 0, "failed": 0},
        {"downloaded": 0, "skipped": 3, "failed": 0},
    ]
    assert len(events(prefect_server, "regards-order.file.delivered", prefix)) == 3
