"""The durable record of an order's delivery, kept beside the files at the target, and the
`FileState` of each file that it is written from.

The server forgets a file once a download of it was aborted (it leaves the available list and
no endpoint lists it again), so the record is the only memory of every file a run has seen.
It lives at `<target>/.regards-order/order-<id>.json`, on the same filesystem as the files
(local or object store), is rewritten atomically as a run goes, and a later run of the same
order fetches by id every recorded file that is not verified at the target.
It holds no secret: file records, names, outcomes and MD5s only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from enum import StrEnum

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from regards_order.errors import TargetError
from regards_order.models import OrderFile
from regards_order.report import Outcome
from regards_order.transfer import Target, write_small

RECORD_FOLDER = ".regards-order"


class Origin(StrEnum):
    """Where this run got a file from, which decides how it is fetched."""

    #: From the record of an earlier run: skipped if verified at the target, else fetched by id.
    RECORDED = "recorded"
    #: Listed by the server in this run: it keeps the file's suborder (and the user's next
    #: ones) waiting until the file is downloaded, so it is downloaded even if already there.
    LISTED = "listed"
    #: Settled earlier in this run (skipped, or failed on what may pass) and listed again.
    LISTED_AGAIN = "listed again"

    @property
    def listed(self) -> bool:
        """The server waits for this file to be downloaded."""
        return self is not Origin.RECORDED


class Phase(StrEnum):
    """Where a file is in this run."""

    WAITING = "waiting"  # known to the server, not restored yet
    QUEUED = "queued"
    IN_FLIGHT = "in flight"
    SETTLED = "settled"


class FileState(BaseModel):
    """All that is known of one file: what the record keeps, then this run's progress."""

    file: OrderFile
    name: str  # under the target, given once and for good
    # The last word on the file, this run's once it settled, else an earlier run's.
    outcome: Outcome | None = None
    md5: str | None = None
    error: str | None = None
    # This run only: not written to the record.
    origin: Origin = Field(default=Origin.RECORDED, exclude=True)
    phase: Phase = Field(default=Phase.QUEUED, exclude=True)
    attempts: int = Field(default=0, exclude=True)
    size: int | None = Field(default=None, exclude=True)
    #: A failure that may pass: when this run may try the file again.
    retry_at: float | None = Field(default=None, exclude=True)


class RecordDocument(BaseModel):
    """The whole record of one order at one target."""

    version: int = 1
    order_id: int
    files: dict[str, FileState] = {}


#: Serializes a record straight to bytes: no str copy of a document that holds every file.
_DOCUMENT_JSON = TypeAdapter(RecordDocument)


class DeliveryRecord:
    """Read and write the record of one order at one target, merging what another run of the
    same order (an overlapping schedule, a second operator) wrote meanwhile."""

    def __init__(self, target: Target, order_id: int) -> None:
        self.target = target
        self.order_id = order_id
        self.path = target.path(f"{RECORD_FOLDER}/order-{order_id}.json")
        self._saved_at = float("-inf")
        self._written: tuple[object, ...] | None = None
        #: Files only another run knows, written back with ours until adopted.
        self._foreign: dict[str, FileState] = {}

    def load(self) -> dict[str, FileState]:
        """The files of the stored record, by key (none when there is no record yet)."""
        stored = self._read()
        return dict(stored.files) if stored is not None else {}

    def _read(self) -> RecordDocument | None:
        try:
            raw = self.target.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        try:
            return RecordDocument.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as error:
            raise TargetError(
                f"the delivery record {self.target.url(self.path)} is unreadable "
                f"({error.__class__.__name__}); move it away to start the order afresh"
            ) from None

    def save(
        self, states: Mapping[str, FileState], *, at_most_every: float = 0.0
    ) -> dict[str, FileState] | None:
        """Write `states` atomically, merged with what another run wrote since our last save;
        return the files only that run knows, or None when skipped (saved less than
        `at_most_every` seconds ago).

        A file we have not settled yet takes the other run's outcome when it has one."""
        if time.monotonic() - self._saved_at < at_most_every:
            return None
        # Read back (and merge) only what another run wrote since our last save.
        stored = self._read() if self._stamp() != self._written else None
        if stored is not None:
            for key, theirs in stored.files.items():
                ours = states.get(key)
                if ours is None:
                    self._foreign.setdefault(key, theirs)
                elif ours.outcome is None and theirs.outcome is not None:
                    ours.outcome, ours.md5, ours.error = theirs.outcome, theirs.md5, theirs.error
        files = {**self._foreign, **states}
        document = RecordDocument.model_construct(version=1, order_id=self.order_id, files=files)
        write_small(self.target, self.path, _DOCUMENT_JSON.dump_json(document, indent=1))
        self._written = self._stamp()
        self._saved_at = time.monotonic()
        return dict(self._foreign)

    def forget_foreign(self) -> None:
        """The foreign files were adopted: they are among the states given to `save` now."""
        self._foreign.clear()

    def _stamp(self) -> tuple[object, ...] | None:
        """What tells one version of the stored record from another, cheaply."""
        try:
            info = self.target.fs.info(self.path)
        except FileNotFoundError:
            return None
        return (info.get("size"), info.get("mtime"), info.get("ETag"), info.get("created"))
