"""The regards-order.archive.unpacked event: what it names, and that Prefect accepts it."""

from __future__ import annotations

from prefect.events.schemas.events import Event
from prefect.settings import get_current_settings

from regards_order.tasks.unpack import LISTED_MEMBERS, UNPACKED_EVENT, unpacked_event
from regards_order.unpack import Extracted, Problem, UnpackReport

ARCHIVE = "s3://bucket/regards/x.tar"


def test_an_archive_of_unknown_origin_is_named_by_its_url() -> None:
    report = UnpackReport(ARCHIVE, "s3://bucket/regards/x", [Extracted("a", 1, "0" * 32)])
    event = Event(**unpacked_event(report))
    assert event.event == UNPACKED_EVENT
    assert event.resource.id == f"regards-order.archive.{ARCHIVE}"
    assert event.resource.name == "x.tar"
    assert "regards.order.id" not in event.resource and event.related == []
    assert event.resource["regards-order.unpack.complete"] == "true"


def test_a_huge_archive_s_event_stays_under_prefect_s_limit() -> None:
    long_name = "n" * 5000  # a pax header carries names of any length
    report = UnpackReport(
        ARCHIVE,
        "s3://bucket/regards/x",
        extracted=[Extracted(f"dir/{i}.bin", i, "0" * 32) for i in range(50_000)],
        refused=[Problem(f"../{long_name}{i}", "'..' in its path") for i in range(5_000)],
    )
    event = Event(**unpacked_event(report, order_id="1", file_id="2"))

    assert event.size_bytes < get_current_settings().server.events.maximum_size_bytes
    assert event.payload["members"] == 50_000 and event.payload["listed_all"] is False
    assert 0 < len(event.payload["refused"]) < LISTED_MEMBERS
    assert "5000 refused" in event.payload["summary"]
