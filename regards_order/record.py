"""The durable record of an order's delivery, kept beside the files at the target.

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

from pydantic import BaseModel, TypeAdapter, ValidationError

from regards_order.errors import TargetError
from regards_order.models import OrderFile
from regards_order.report import FileOutcome, Outcome
from regards_order.transfer import Target, write_small

RECORD_FOLDER = ".regards-order"


class RecordEntry(BaseModel):
    """One file as the record remembers it."""

    file: OrderFile
    name: str
    outcome: Outcome | None = None
    md5: str | None = None
    error: str | None = None


class RecordDocument(BaseModel):
    """The whole record of one order at one target."""

    version: int = 1
    order_id: int
    files: dict[str, RecordEntry] = {}


#: Serializes a record straight to bytes: no str copy of a document that holds every file.
_DOCUMENT_JSON = TypeAdapter(RecordDocument)


class DeliveryRecord:
    """Load, update and save the record of one order at one target."""

    def __init__(self, target: Target, order_id: int, document: RecordDocument) -> None:
        self.target = target
        self.path = target.path(f"{RECORD_FOLDER}/order-{order_id}.json")
        self.document = document
        self._dirty = False
        self._saved_at = float("-inf")
        self._written: tuple[object, ...] | None = None

    @classmethod
    def load(cls, target: Target, order_id: int) -> DeliveryRecord:
        """The record of `order_id` at `target`, empty when there is none yet."""
        record = cls(target, order_id, RecordDocument(order_id=order_id))
        stored = record._read()
        if stored is not None:
            record.document = stored
        return record

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

    @property
    def entries(self) -> dict[str, RecordEntry]:
        """Recorded files by key."""
        return self.document.files

    def remember(self, file: OrderFile, name: str) -> None:
        """Note a newly seen file and the name it was given."""
        self.document.files[file.key] = RecordEntry(file=file, name=name)
        self._dirty = True

    def settle(self, outcome: FileOutcome) -> None:
        """Note how a file ended."""
        entry = self.document.files.get(outcome.key)
        if entry is None:
            return
        entry.outcome = outcome.outcome
        entry.md5 = outcome.md5 if outcome.outcome is not Outcome.FAILED else entry.md5
        entry.error = outcome.error
        self._dirty = True

    def save(self, *, at_most_every: float = 0.0) -> None:
        """Write the record if it changed, atomically, merged with what another run of the
        same order may have written meanwhile; skip if saved less than `at_most_every` s ago."""
        if not self._dirty or time.monotonic() - self._saved_at < at_most_every:
            return
        # Read back (and merge) only what another run wrote since our last save.
        stored = self._read() if self._stamp() != self._written else None
        if stored is not None:
            for key, theirs in stored.files.items():
                ours = self.document.files.get(key)
                if ours is None or (ours.outcome is None and theirs.outcome is not None):
                    self.document.files[key] = theirs
        data = _DOCUMENT_JSON.dump_json(self.document, indent=1)
        write_small(self.target, self.path, data)
        self._written = self._stamp()
        self._dirty = False
        self._saved_at = time.monotonic()

    def _stamp(self) -> tuple[object, ...] | None:
        """What tells one version of the stored record from another, cheaply."""
        try:
            info = self.target.fs.info(self.path)
        except FileNotFoundError:
            return None
        return (info.get("size"), info.get("mtime"), info.get("ETag"), info.get("created"))
