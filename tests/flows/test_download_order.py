"""The download_order flow against the simulator over real HTTP, with a real Prefect API."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from regards_order.report import Outcome
from regards_order.simulator import Scenario, Simulator
from regards_order.simulator.content import content_md5
from tests.helpers.flow_runs import assert_all_delivered, run
from tests.helpers.scenarios import (
    FAST,
    LONG_LIVED_TOKEN,
    PASSWORD,
    USER,
    connection_for,
    generated,
    scenario,
)
from tests.helpers.targets import DeliveryTarget
from tests.helpers.waiting import md5

pytestmark = pytest.mark.usefixtures("prefect_api")

Start = Callable[[Scenario], Simulator]


@pytest.mark.parametrize("dialect", ["current", "legacy", "docs"])
def test_each_dialect_is_delivered(
    start_simulator: Start, target: DeliveryTarget, dialect: str
) -> None:
    sim = start_simulator(scenario([generated(1, 5, 70_000, dialect=dialect)]))
    state, report = run(1, target, connection_for(sim))
    assert state.is_completed(), state.message
    assert report.ok and report.counts["downloaded"] == 5
    assert_all_delivered(report, target)
    assert target.names() == {f"o1-{i:03d}.bin" for i in range(5)}
    for outcome in report.files:
        if dialect == "docs":
            assert outcome.id is None  # no ids in the docs dialect: files are tracked by URL
        else:
            assert outcome.id is not None
            assert outcome.md5 == content_md5(1, outcome.id, 70_000)


def test_six_suborders_with_two_per_user_complete(
    start_simulator: Start, target: DeliveryTarget
) -> None:
    sim = start_simulator(
        scenario([generated(1, 24, 20_000)], suborder_max_files=4, restore_seconds=0.05)
    )
    state, report = run(1, target, connection_for(sim))
    assert state.is_completed(), state.message
    assert report.counts == {"downloaded": 24, "skipped": 0, "failed": 0}
    assert_all_delivered(report, target)
    stats = sim.stats()
    assert stats["max_active_suborders"][USER] == 2  # the limit was reached and held
    assert stats["orders"]["1"]["status"] == "DONE"
    assert stats["orders"]["1"]["suborders"] == ["DONE"] * 6
    for file_id in sim.state.file_ids(1):
        assert stats["files"][str(file_id)]["completed"] == 1


def test_shrinking_pages_lose_no_file(start_simulator: Start, tmp_path: Path) -> None:
    sim = start_simulator(scenario([generated(1, 30, 1000)]))
    options = FAST.model_copy(update={"page_size": 4, "concurrency": 8})
    state, report = run(1, tmp_path, connection_for(sim), options)
    assert state.is_completed(), state.message
    assert report.counts["downloaded"] == 30
    assert sim.stats()["downloads_completed"] == 30


def test_transient_faults_recover(start_simulator: Start, target: DeliveryTarget) -> None:
    files = [
        {
            "filename": "503.bin",
            "size": 3000,
            "faults": [{"kind": "status", "status": 503, "times": 2}],
        },
        {
            "filename": "429.bin",
            "size": 3000,
            "faults": [{"kind": "status", "status": 429, "times": 1, "retry_after": 1}],
        },
        {
            "filename": "cut.bin",
            "size": 300_000,
            "faults": [{"kind": "truncate", "at_byte": 1000}],
        },
        {"filename": "bad-once.bin", "size": 3000, "faults": [{"kind": "corrupt", "times": 1}]},
        {"filename": "202.bin", "size": 3000, "faults": [{"kind": "status", "status": 202}]},
    ]
    sim = start_simulator(scenario([{"id": 1, "owner": USER, "files": files}]))
    state, report = run(1, target, connection_for(sim))
    assert state.is_completed(), state.message
    attempts = {f.filename: f.attempts for f in report.files}
    assert attempts == {
        "503.bin": 3,
        "429.bin": 2,
        "cut.bin": 2,
        "bad-once.bin": 2,
        "202.bin": 2,
    }
    assert_all_delivered(report, target)
    assert sim.stats()["files"]["3"]["aborted"] == 1  # the cut download, as the server saw it


def test_always_corrupt_file_fails_alone(start_simulator: Start, target: DeliveryTarget) -> None:
    files = [
        {
            "filename": "rotten.bin",
            "size": 6_000_000,
            "faults": [{"kind": "corrupt", "times": None}],
        }
    ]
    sim = start_simulator(
        scenario(
            [{"id": 1, "owner": USER, "files": files, "generate": [{"count": 4, "size": 900}]}]
        )
    )
    state, report = run(1, target, connection_for(sim))
    assert state.is_failed()
    assert "1 of 5 files failed: rotten.bin: MD5" in state.message
    (failed,) = [f for f in report.files if f.outcome is Outcome.FAILED]
    assert failed.filename == "rotten.bin" and failed.attempts == FAST.retries + 1
    assert sim.stats()["files"]["1"]["requests"] == FAST.retries + 1
    assert report.counts["downloaded"] == 4
    # No object, no partial, no pending multipart upload: nothing of the bad file anywhere.
    assert target.names() == {f"file-0000{i}.dat" for i in range(4)}
    assert target.leftovers() == [] and target.pending_uploads() == []


def test_permanent_file_errors_are_not_retried(start_simulator: Start, tmp_path: Path) -> None:
    files = [
        {
            "filename": "gone.bin",
            "size": 10,
            "faults": [{"kind": "status", "status": 404, "times": None}],
        },
        {
            "filename": "mine-not.bin",
            "size": 10,
            "faults": [{"kind": "status", "status": 403, "times": None}],
        },
        {
            "filename": "broken.bin",
            "size": 10,
            "faults": [{"kind": "status", "status": 422, "times": None}],
        },
        {"filename": "liar.bin", "size": 10, "checksum": "not-an-md5"},
    ]
    sim = start_simulator(scenario([{"id": 1, "owner": USER, "files": files}]))
    state, report = run(1, tmp_path, connection_for(sim))
    assert state.is_failed()
    outcomes = {f.filename: (f.outcome, f.attempts) for f in report.files}
    assert all(o == (Outcome.FAILED, 1) for o in outcomes.values()), outcomes
    errors = {f.filename: f.error or "" for f in report.files}
    assert "404" in errors["gone.bin"] and "403" in errors["mine-not.bin"]
    assert "422" in errors["broken.bin"] and "not an MD5" in errors["liar.bin"]
    # What cannot be verified is never delivered, but read to its end and discarded: the
    # server would otherwise keep its suborder waiting.
    liar = sim.stats()["files"]["4"]
    assert liar["requests"] == 1 and liar["completed"] == 1
    assert not (tmp_path / "liar.bin").exists()


def test_a_file_failing_longer_than_its_retries_is_tried_again_while_the_order_runs(
    start_simulator: Start, tmp_path: Path
) -> None:
    # FAST gives 4 attempts; the server answers 503 to the first 5 requests. The order keeps
    # restoring suborders for seconds after, and still lists the file: a later look retries it.
    files = [
        {
            "filename": "flaky.bin",
            "size": 1_000,
            "faults": [{"kind": "status", "status": 503, "times": 5}],
        }
    ]
    order = {"id": 1, "owner": USER, "files": files, "generate": [{"count": 9, "size": 1_000}]}
    sim = start_simulator(scenario([order], suborder_max_files=2, restore_seconds=1.0))
    options = FAST.model_copy(update={"timeout": 60.0})
    state, report = run(1, tmp_path, connection_for(sim), options)
    assert state.is_completed(), state.message
    assert report.counts == {"downloaded": 10, "skipped": 0, "failed": 0}
    flaky = next(f for f in report.files if f.filename == "flaky.bin")
    assert flaky.attempts == 2  # the second attempt of the second round
    stats = sim.stats()["files"]["1"]
    assert stats["requests"] == 6 and stats["completed"] == 1
    assert md5(tmp_path / "flaky.bin") == flaky.md5


def test_a_file_that_cannot_be_verified_does_not_stall_the_order(
    start_simulator: Start, tmp_path: Path
) -> None:
    # One such file in each of the first two suborders: were they left waiting, the user's
    # two suborders would be taken for good and the third would never start.
    files = [
        {"filename": "liar-a.bin", "size": 10, "checksum": "not-an-md5"},
        {"filename": "good-a.bin", "size": 10},
        {"filename": "liar-b.bin", "size": 10, "checksum": "not-an-md5"},
        {"filename": "good-b.bin", "size": 10},
    ]
    order = {"id": 1, "owner": USER, "files": files, "generate": [{"count": 6, "size": 1_000}]}
    sim = start_simulator(scenario([order], suborder_max_files=2, restore_seconds=0.05))
    options = FAST.model_copy(update={"timeout": 60.0})
    state, report = run(1, tmp_path, connection_for(sim), options)
    assert state.is_failed()
    assert report.counts == {"downloaded": 8, "skipped": 0, "failed": 2}
    assert not any("deadline" in problem for problem in report.problems), report.problems
    assert sim.stats()["orders"]["1"]["suborders"] == ["DONE"] * 5
    assert not (tmp_path / "liar-a.bin").exists() and not (tmp_path / "liar-b.bin").exists()


def test_malicious_names_stay_inside_the_target(
    start_simulator: Start, target: DeliveryTarget
) -> None:
    names = ["../escape.txt", "/etc/passwd", "a/b", "..", " ", "c\x00d\ne", "x" * 300, "dup", "dup"]
    files = [{"filename": name, "size": 100 + i} for i, name in enumerate(names)]
    sim = start_simulator(scenario([{"id": 1, "owner": USER, "files": files}]))
    state, report = run(1, target, connection_for(sim))
    assert state.is_completed(), state.message
    delivered = target.names()
    assert len(delivered) == len(names)
    assert all("/" not in name for name in delivered)  # all directly under the target
    assert {"_escape.txt", "_etc_passwd", "a_b", "dup", "dup.9"} <= delivered
    sizes = sorted(len(target.read(name)) for name in delivered)
    assert sizes == [100 + i for i in range(len(names))]  # nothing overwritten
    assert len({f.target for f in report.files}) == len(names)
    parent = target.fs._parent(target.root)
    outside = [p for p in target.fs.find(parent) if not p.startswith(target.root + "/")]
    assert outside == []


@pytest.mark.parametrize(
    ("order", "user_of_order", "expected"),
    [
        ({"state": "expired"}, USER, "EXPIRED: its files are gone"),
        ({"state": "deleted"}, USER, "DELETED: its files are gone"),
        ({}, "someone-else@example.org", "HTTP 403"),
        (None, USER, "HTTP 404"),
    ],
)
def test_undeliverable_orders_fail_clearly(
    start_simulator: Start,
    tmp_path: Path,
    order: dict[str, Any] | None,
    user_of_order: str,
    expected: str,
) -> None:
    orders = [] if order is None else [{**generated(1, 2, 10), **order, "owner": user_of_order}]
    sim = start_simulator(scenario(orders))
    state, report = run(1, tmp_path, connection_for(sim))
    assert state.is_failed()
    assert expected in state.message
    assert not report.ok
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]


def test_server_side_errors_fail_the_order(start_simulator: Start, tmp_path: Path) -> None:
    files = [{"filename": "lost.bin", "size": 10, "in_error": True}]
    sim = start_simulator(
        scenario([{"id": 1, "owner": USER, "files": files, "generate": [{"count": 2, "size": 10}]}])
    )
    state, report = run(1, tmp_path, connection_for(sim))
    assert state.is_failed()
    assert report.status == "DONE_WITH_WARNING" and report.files_in_error == 1
    assert "1 file of order 1 in error on the server, which cannot deliver them" in state.message
    assert report.counts == {"downloaded": 2, "skipped": 0, "failed": 1}
    # The server's list of every file names the lost one, with the server's reason.
    (lost,) = [f for f in report.files if f.outcome is Outcome.FAILED]
    assert lost.filename == "lost.bin" and (lost.error or "").startswith("in error on the server")
    assert not (tmp_path / "lost.bin").exists()


def test_without_the_list_of_every_file_the_errors_are_counted(
    start_simulator: Start, tmp_path: Path
) -> None:
    files = [{"filename": "lost.bin", "size": 10, "in_error": True}]
    sim = start_simulator(
        scenario(
            [{"id": 1, "owner": USER, "files": files, "generate": [{"count": 2, "size": 10}]}],
            dataset_files_endpoint=False,
        )
    )
    state, report = run(1, tmp_path, connection_for(sim))
    assert state.is_failed() and report.files_in_error == 1
    assert report.counts == {"downloaded": 2, "skipped": 0, "failed": 0}  # unnamed, but counted
    assert "1 file of order 1 in error on the server" in state.message


def test_an_order_downloaded_elsewhere_is_delivered_again_by_id(
    start_simulator: Start, tmp_path: Path
) -> None:
    """Once every file of a DONE order is DOWNLOADED, the available list is empty for good; a
    second target gets the files by id from the server's list of every file."""
    sim = start_simulator(scenario([generated(1, 3, 5_000)]))
    first, _ = run(1, tmp_path / "first", connection_for(sim))
    assert first.is_completed()
    assert sim.stats()["orders"]["1"]["history"][-1] == "DONE"
    state, report = run(1, tmp_path / "second", connection_for(sim))
    assert state.is_completed(), state.message
    assert report.counts == {"downloaded": 3, "skipped": 0, "failed": 0}
    for i in range(3):
        data = (tmp_path / "second" / f"o1-{i:03d}.bin").read_bytes()
        assert md5(data) == content_md5(1, i + 1, 5_000)
    assert all(sim.stats()["files"][str(i + 1)]["completed"] == 2 for i in range(3))


def test_the_quota_caps_transfers_at_once_so_none_is_refused(
    start_simulator: Start, tmp_path: Path
) -> None:
    """The user may download 2 files at once: at concurrency 4, the server would answer 429
    to the 3rd (and the file would turn DOWNLOAD_ERROR); read first, the quota keeps it at 2."""
    slow = [{"kind": "slow", "bytes_per_second": 400_000, "times": None}]
    files = [{"filename": f"slow-{i}.bin", "size": 200_000, "faults": slow} for i in range(6)]
    sim = start_simulator(
        scenario(
            [{"id": 1, "owner": USER, "files": files}],
            users=[{"username": USER, "password": PASSWORD, "rate_limit": 2}],
        )
    )
    options = FAST.model_copy(update={"concurrency": 4})
    state, report = run(1, tmp_path, connection_for(sim), options)
    assert state.is_completed(), state.message
    assert report.counts == {"downloaded": 6, "skipped": 0, "failed": 0}
    stats = sim.stats()
    assert [stats["files"][str(i)]["download_errors"] for i in range(1, 7)] == [0] * 6
    assert stats["max_concurrent_downloads"] == {USER: 2}


def test_token_renewed_during_a_long_run(start_simulator: Start, tmp_path: Path) -> None:
    sim = start_simulator(
        scenario(
            [generated(1, 12, 10_000)],
            suborder_max_files=2,
            restore_seconds=0.15,
            token_lifetime=0.5,
        )
    )
    state, report = run(1, tmp_path, connection_for(sim))
    assert state.is_completed(), state.message
    stats = sim.stats()
    assert stats["logins"] >= 2
    assert report.counts["downloaded"] == 12


def test_token_rejected_midway_is_renewed_once(start_simulator: Start, tmp_path: Path) -> None:
    sim = start_simulator(
        scenario([generated(1, 8, 10_000)], suborder_max_files=2, restore_seconds=0.1)
    )
    connection = connection_for(sim)
    # Log in, then make the server forget every token it issued: the next call gets 401.
    from regards_order.client import shared_client

    shared_client(connection).check_credentials()
    sim.state.expire_tokens()
    state, report = run(1, tmp_path, connection)
    assert state.is_completed(), state.message
    stats = sim.stats()
    assert stats["unauthorized"] >= 1 and stats["logins"] == 2
    assert report.counts["downloaded"] == 8


def test_second_run_downloads_nothing(start_simulator: Start, target: DeliveryTarget) -> None:
    sim = start_simulator(scenario([generated(1, 6, 50_000)], suborder_max_files=2))
    state, first = run(1, target, connection_for(sim))
    assert state.is_completed(), state.message
    sent = sim.stats()["bytes_sent"]
    assert sent == 6 * 50_000
    state, second = run(1, target, connection_for(sim))
    assert state.is_completed(), state.message
    assert sim.stats()["bytes_sent"] == sent
    assert second.counts == {"downloaded": 0, "skipped": 6, "failed": 0}
    assert [f.target for f in second.files] == [f.target for f in first.files]


def test_an_order_listed_afresh_is_downloaded_though_its_files_are_there(
    start_simulator: Start, tmp_path: Path
) -> None:
    # A server that lists the order's files again (here: a fresh simulator of the same order)
    # keeps each suborder waiting until its files are downloaded: files already at the target
    # must be fetched all the same, or the order stalls at its third suborder.
    orders = scenario([generated(1, 12, 5_000)], suborder_max_files=2, restore_seconds=0.05)
    state, _ = run(1, tmp_path, connection_for(start_simulator(orders)))
    assert state.is_completed(), state.message
    again = start_simulator(orders)
    options = FAST.model_copy(update={"timeout": 60.0})
    state, report = run(1, tmp_path, connection_for(again), options)
    assert state.is_completed(), state.message
    stats = again.stats()
    assert stats["orders"]["1"]["status"] == "DONE"
    assert stats["orders"]["1"]["suborders"] == ["DONE"] * 6
    assert stats["downloads_completed"] == 12
    assert report.counts == {"downloaded": 12, "skipped": 0, "failed": 0}
    for entry in report.files:
        assert md5(Path(entry.target)) == entry.md5


def test_file_damaged_at_target_is_fetched_again(
    start_simulator: Start, target: DeliveryTarget
) -> None:
    sim = start_simulator(scenario([generated(1, 3, 5_000)]))
    run(1, target, connection_for(sim))
    target.write("o1-001.bin", b"\x00" * 5_000)  # same size, wrong bytes, no verified MD5
    state, report = run(1, target, connection_for(sim))
    assert state.is_completed(), state.message
    assert report.counts == {"downloaded": 1, "skipped": 2, "failed": 0}
    assert hashlib.md5(target.read("o1-001.bin")).hexdigest() == content_md5(1, 2, 5_000)


def test_large_file_goes_through_several_parts(
    start_simulator: Start, target: DeliveryTarget
) -> None:
    size = 13 * 1024 * 1024  # three parts of S3 multipart at the 5 MiB block size below
    sim = start_simulator(
        scenario([{"id": 1, "owner": USER, "files": [{"filename": "big.nc", "size": size}]}])
    )
    if target.kind == "s3":
        target.storage_options["default_block_size"] = 5 * 1024 * 1024
    state, report = run(1, target, connection_for(sim))
    assert state.is_completed(), state.message
    (outcome,) = report.files
    assert outcome.size == size and outcome.md5 == content_md5(1, 1, size)
    assert hashlib.md5(target.read("big.nc")).hexdigest() == outcome.md5
    if target.kind == "s3":
        assert target.fs.metadata(f"{target.root}/big.nc")["regards-md5"] == outcome.md5
        etag = target.fs.info(f"{target.root}/big.nc")["ETag"]
        assert etag.strip('"').endswith("-3")  # a multipart object: its ETag is no MD5


def test_deadline_stops_a_paused_order(start_simulator: Start, tmp_path: Path) -> None:
    sim = start_simulator(scenario([generated(1, 2, 10, state="paused")]))
    options = FAST.model_copy(update={"timeout": 0.5})
    state, report = run(1, tmp_path, connection_for(sim), options)
    assert state.is_failed()
    assert "deadline of 0.5 s passed with order 1 PAUSED" in state.message
    assert report.status == "PAUSED"
    assert any("paused" in w for w in report.warnings)


def test_long_lived_token_without_password(start_simulator: Start, tmp_path: Path) -> None:
    sim = start_simulator(scenario([generated(1, 2, 100)]))
    connection = connection_for(
        sim, username=None, password=None, token=SecretStr(LONG_LIVED_TOKEN)
    )
    state, report = run(1, tmp_path, connection)
    assert state.is_completed(), state.message
    assert sim.stats()["logins"] == 0
    assert report.counts["downloaded"] == 2


def test_artifacts_show_every_outcome(start_simulator: Start, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    sim = start_simulator(scenario([generated(77, 3, 100)]))
    state, _ = run(77, tmp_path, connection_for(sim))
    assert state.is_completed()

    async def artifacts() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts()

    found = [
        a for a in asyncio.run(artifacts()) if a.flow_run_id == state.state_details.flow_run_id
    ]
    table = next(a for a in found if a.type == "table")
    progress = next(a for a in found if a.type == "progress")
    assert table.key == "order-77-files"
    assert "o77-000.bin" in str(table.data) and "downloaded" in str(table.data)
    assert progress.data == 100.0


def test_every_size_is_recognised_as_verified_on_a_rerun(
    start_simulator: Start, target: DeliveryTarget
) -> None:
    from regards_order.transfer import UPLOAD_PART_BYTES

    sizes = {"empty.dat": 0, "one.dat": 1, "part.dat": UPLOAD_PART_BYTES}
    sizes["part-and-one.dat"] = UPLOAD_PART_BYTES + 1
    files = [{"filename": name, "size": size} for name, size in sizes.items()]
    sim = start_simulator(scenario([{"id": 1, "owner": USER, "files": files}]))
    state, first = run(1, target, connection_for(sim))
    assert state.is_completed(), state.message
    assert first.counts == {"downloaded": 4, "skipped": 0, "failed": 0}
    assert_all_delivered(first, target)
    assert {name: len(target.read(name)) for name in sizes} == sizes
    if target.kind == "s3":  # multipart uploads both, of exactly one part and a byte more
        etags = {name: target.fs.info(f"{target.root}/{name}")["ETag"] for name in sizes}
        assert etags["part.dat"].strip('"').endswith("-1")
        assert "-" in etags["part-and-one.dat"]
    sent = sim.stats()["bytes_sent"]
    state, second = run(1, target, connection_for(sim))
    assert state.is_completed(), state.message
    assert second.counts == {"downloaded": 0, "skipped": 4, "failed": 0}
    assert sim.stats()["bytes_sent"] == sent  # not a byte fetched again, the empty file included


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 429, "retry_after": 1},
        {"kind": "status", "status": 503},
        {"kind": "truncate", "at_byte": 1000},
    ],
    ids=["429", "503", "truncated"],
)
def test_an_aborted_download_of_the_last_file_still_delivers_the_order(
    start_simulator: Start, tmp_path: Path, fault: dict[str, Any]
) -> None:
    # One file per suborder; the last one's first download does not end: the server makes it
    # DOWNLOAD_ERROR while the order is DONE with nothing else to download, so the order
    # turns DONE_WITH_WARNING for good, with no file in error. The file is fetched again.
    files: list[dict[str, Any]] = [{"filename": f"f{i}.bin", "size": 5000} for i in range(3)]
    files[-1]["faults"] = [fault]
    sim = start_simulator(
        scenario([{"id": 1, "owner": USER, "files": files}], suborder_max_files=1)
    )
    state, report = run(1, tmp_path, connection_for(sim))
    assert state.is_completed(), state.message
    stats = sim.stats()
    assert stats["orders"]["1"]["history"][-2:] == ["DONE", "DONE_WITH_WARNING"]
    assert stats["files"]["3"]["download_errors"] == 1 and stats["files"]["3"]["completed"] == 1
    assert report.ok and report.status == "DONE_WITH_WARNING" and report.files_in_error == 0
    assert report.counts == {"downloaded": 3, "skipped": 0, "failed": 0}
    assert any("DONE_WITH_WARNING with no file in error" in w for w in report.warnings)
    for outcome in report.files:
        assert md5(Path(outcome.target)) == outcome.md5


def test_sixty_four_transfers_at_once_while_the_looks_at_the_order_go_on(
    start_simulator: Start, tmp_path: Path
) -> None:
    # Every body lasts at least 16 s (128 KiB/s): while all 64 are in flight, the run must
    # still look at the order (its calls have a pool of their own, bodies never wait).
    slow = [{"kind": "slow", "bytes_per_second": 128 * 1024}]
    files = [
        {"filename": f"big-{i:02d}.bin", "size": 2 * 1024 * 1024, "faults": slow} for i in range(64)
    ]
    sim = start_simulator(scenario([{"id": 1, "owner": USER, "files": files}]))
    options = FAST.model_copy(update={"concurrency": 64})
    state, report = run(1, tmp_path, connection_for(sim), options)
    assert state.is_completed(), state.message
    assert report.counts["downloaded"] == 64
    stats = sim.stats()
    assert stats["max_concurrent_downloads"][USER] == 64
    starts = [stats["files"][str(i)]["requested_at"][0] for i in range(1, 65)]
    all_in_flight, first_done = max(starts), min(starts) + 16.0
    looks = [t for t in stats["look_times"]["order"] if all_in_flight < t < first_done]
    assert all_in_flight < first_done and len(looks) >= 2, (all_in_flight, first_done, looks)


def test_md5sums_lets_anyone_check_the_delivery_without_this_tool(
    start_simulator: Start, tmp_path: Path
) -> None:
    import subprocess

    sim = start_simulator(scenario([generated(1, 4, 3_000)], suborder_max_files=2))
    for _ in range(2):  # the first run downloads, the second finds every file there
        state, report = run(1, tmp_path, connection_for(sim))
        assert state.is_completed(), state.message
        checked = subprocess.run(
            ["md5sum", "-c", "MD5SUMS"], cwd=tmp_path, capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert sorted(checked.stdout.splitlines()) == [f"o1-{i:03d}.bin: OK" for i in range(4)]
    assert report.counts["skipped"] == 4
