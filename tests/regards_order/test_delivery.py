"""Delivery's per-file states: one per file key, the record written from them, merged with
another run's. Over fsspec's memory filesystem: milliseconds, no server."""

from __future__ import annotations

import json
import uuid

from regards_order.delivery import Delivery, Origin
from regards_order.models import OrderFile
from regards_order.record import RECORD_FOLDER, DeliveryRecord, Phase
from regards_order.report import FileOutcome, Outcome
from regards_order.transfer import Target, open_target


def file(file_id: int, name: str | None = None) -> OrderFile:
    return OrderFile(
        id=file_id,
        url=f"https://h/api/v1/rs-order/orders/files/{file_id}",
        filename=name or f"f{file_id}.bin",
        size=3,
        checksum=f"{file_id:032x}",
    )


def done(state_file: OrderFile, kind: Outcome = Outcome.DOWNLOADED) -> FileOutcome:
    return FileOutcome.for_file(
        state_file, target="x", outcome=kind, attempts=2, md5=state_file.checksum
    )


def fresh_target() -> Target:
    return open_target(f"memory://delivery-{uuid.uuid4().hex}")


def delivery(target: Target) -> Delivery:
    return Delivery(DeliveryRecord(target, 5))


def stored(target: Target) -> dict[str, dict[str, object]]:
    raw = target.fs.cat_file(target.path(f"{RECORD_FOLDER}/order-5.json"))
    files: dict[str, dict[str, object]] = json.loads(raw)["files"]
    return files


def test_a_file_listed_twice_is_queued_once() -> None:
    bookkeeping = delivery(fresh_target())
    assert bookkeeping.discover([file(1), file(2)]) == 2
    assert bookkeeping.discover([file(2), file(3)]) == 1  # pages shrink and overlap
    taken = [bookkeeping.take() for _ in range(4)]
    assert [t.file.id for t in taken if t] == [1, 2, 3] and taken[3] is None
    assert bookkeeping.in_flight == 3 and not bookkeeping.idle


def test_clashing_names_are_given_once_and_kept_by_the_next_run() -> None:
    target = fresh_target()
    first = delivery(target)
    first.discover([file(1, "data.nc"), file(2, "data.nc")])
    first.save()
    again = delivery(target)  # a later run: the record's names stand
    again.discover([file(3, "data.nc")])
    names = {again.state(key).name for key in ("1", "2", "3")}
    assert names == {"data.nc", "data.2.nc", "data.3.nc"}
    assert again.state("1").name == "data.nc"


def test_the_record_holds_what_a_later_run_needs_and_nothing_of_this_run() -> None:
    target = fresh_target()
    bookkeeping = delivery(target)
    bookkeeping.discover([file(1), file(2)])
    bookkeeping.take()
    bookkeeping.settle(done(file(1)))
    bookkeeping.save()
    files = stored(target)
    assert set(files) == {"1", "2"}
    assert set(files["1"]) == {"file", "name", "outcome", "md5", "error"}
    assert files["1"]["outcome"] == "downloaded" and files["2"]["outcome"] is None
    later = delivery(target)
    assert later.known == 2 and later.queued == 2  # every recorded file is checked again
    assert later.state("1").origin is Origin.RECORDED
    assert later.state("1").phase is Phase.QUEUED


def test_a_recorded_file_the_server_lists_is_downloaded_not_skipped() -> None:
    target = fresh_target()
    first = delivery(target)
    first.discover([file(1)])
    first.save()
    later = delivery(target)
    later.discover([file(1)])
    transfer = later.take()
    assert transfer is not None and transfer.origin is Origin.LISTED


def test_another_runs_files_are_adopted_while_the_run_goes() -> None:
    target = fresh_target()
    ours, theirs = delivery(target), delivery(target)
    ours.discover([file(1)])
    ours.save()
    theirs.discover([file(1), file(2)])
    theirs.take()
    theirs.take()
    theirs.settle(done(file(2)))
    theirs.settle(done(file(1)))
    theirs.save()
    ours.discover([file(3)])
    ours.save()
    assert ours.known == 3 and ours.state("2").phase is Phase.QUEUED  # to be verified here
    # A file we have not settled takes the other run's outcome (what the record says of it).
    assert ours.state("1").outcome is Outcome.DOWNLOADED
    assert set(stored(target)) == {"1", "2", "3"}


def test_at_the_end_another_runs_files_are_kept_in_the_record_not_adopted() -> None:
    target = fresh_target()
    ours, theirs = delivery(target), delivery(target)
    ours.discover([file(1)])
    ours.save()
    theirs.discover([file(2)])
    theirs.save()
    ours.take()
    ours.settle(done(file(1)))
    ours.save(adopt=False)
    assert ours.known == 1  # this run's report holds its own files only
    assert set(stored(target)) == {"1", "2"}  # the other run's stay recorded


def test_a_save_skipped_for_pacing_keeps_the_change_for_the_next() -> None:
    target = fresh_target()
    bookkeeping = delivery(target)
    bookkeeping.discover([file(1)])
    bookkeeping.save()
    bookkeeping.discover([file(2)])
    bookkeeping.save(at_most_every=3600)
    assert set(stored(target)) == {"1"}
    bookkeeping.save()
    assert set(stored(target)) == {"1", "2"}


def test_a_settled_outcome_counts_once() -> None:
    bookkeeping = delivery(fresh_target())
    bookkeeping.discover([file(1)])
    bookkeeping.take()
    bookkeeping.settle(done(file(1)))
    bookkeeping.settle(done(file(1)))  # not in flight any more: ignored
    assert (bookkeeping.settled, bookkeeping.in_flight, bookkeeping.idle) == (1, 0, True)
    (only,) = bookkeeping.outcomes("unused")
    assert only.outcome is Outcome.DOWNLOADED and only.attempts == 2


def test_a_file_waiting_for_restoration_then_in_error_fails_with_the_servers_reason() -> None:
    from regards_order.models import ServerFile, ServerFileState

    bookkeeping = delivery(fresh_target())

    def entry(state: ServerFileState, error: str | None = None) -> ServerFile:
        return ServerFile(id=7, state=state, filename="late.bin", size=3, download_error=error)

    assert bookkeeping.know([entry(ServerFileState.PENDING)], "https://h/api/v1") == 1
    assert bookkeeping.state("7").phase is Phase.WAITING and bookkeeping.take() is None
    # Read again at the end: the server could not restore it.
    assert bookkeeping.know([entry(ServerFileState.ERROR, "no such file in storage")], "x") == 0
    assert bookkeeping.state("7").phase is Phase.SETTLED
    assert bookkeeping.totals()[2] == 1  # one failed
    (outcome,) = bookkeeping.outcomes("not transferred")
    assert outcome.outcome is Outcome.FAILED
    assert outcome.error == "in error on the server: no such file in storage"
    # Known and in error already: nothing counted twice.
    bookkeeping.know([entry(ServerFileState.ERROR, "no such file in storage")], "x")
    assert bookkeeping.totals()[2] == 1


def test_a_file_the_whole_order_shows_available_is_downloaded_for_its_suborder() -> None:
    from regards_order.models import ServerFile, ServerFileState

    bookkeeping = delivery(fresh_target())
    # Restored between the two listings of one look: absent from the available files, shown
    # AVAILABLE in the list of every file. Its suborder waits for its download all the same.
    entry = ServerFile(id=4, state=ServerFileState.AVAILABLE, filename="a.bin", size=3)
    bookkeeping.know([entry], "https://h/api/v1")
    taken = bookkeeping.take()
    assert taken is not None and taken.origin is Origin.LISTED


def test_a_recorded_file_that_failed_is_taken_again_once_the_server_lists_it() -> None:
    target = fresh_target()
    first = delivery(target)
    first.discover([file(1)])
    first.save()
    again = delivery(target)  # from the record: taken as recorded
    taken = again.take()
    assert taken is not None and taken.origin is Origin.RECORDED
    failed = FileOutcome.for_file(taken.file, target="x", outcome=Outcome.FAILED, attempts=1)
    again.settle(failed)
    assert again.totals()[2] == 1
    # Listed now: the server waits for a download that reads its body to the end.
    again.discover([file(1)])
    retaken = again.take()
    assert retaken is not None and retaken.origin is Origin.LISTED_AGAIN
    assert again.totals()[2] == 0  # its failure taken back
    again.settle(failed.model_copy(update={"attempts": 2}))
    again.discover([file(1)])  # once listed, a failure stands
    assert again.take() is None
