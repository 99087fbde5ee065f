"""The simulator's records of orders, dataset tasks, suborders and files, and their JSON views.

Nothing here locks: ``SimState`` owns the records and calls in under its lock. Counters are kept
incremental (``SimFile.move``) so that the maintenance of an order costs O(1), not O(files):
the benchmarks serve 20,000-file orders. ``Order.maintain`` is the rule of rs-order's order
maintenance (see ``state``'s module docstring).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from regards_order.simulator.scenario import AnyFileFault, FaultBase, ResolvedFile

JSON = dict[str, Any]
F = TypeVar("F", bound=FaultBase)

# Orders whose completion the maintenance recomputes, and those it only tidies up.
_COMPUTED = frozenset({"RUNNING", "PAUSED"})
_FINISHED = frozenset({"DONE", "DONE_WITH_WARNING", "FAILED", "EXPIRED"})
GONE = frozenset({"EXPIRED", "DELETED"})


def iso(moment: datetime) -> str:
    """ISO-8601 UTC timestamp with milliseconds and a ``Z``, as REGARDS writes dates."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_iso() -> str:
    return iso(datetime.now(UTC))


class FaultQueue(Generic[F]):
    """Faults consumed in list order, each answering its first ``times`` matching requests."""

    def __init__(self, faults: Iterable[F]) -> None:
        self._faults = list(faults)
        self._left = [f.times for f in self._faults]

    def take(self) -> F | None:
        for i, left in enumerate(self._left):
            if left is None:
                return self._faults[i]
            if left > 0:
                self._left[i] = left - 1
                return self._faults[i]
        return None


@dataclass(eq=False)
class SimFile:
    """One file of an order (an OrderDataFile)."""

    spec: ResolvedFile
    order: Order
    faults: FaultQueue[AnyFileFault]
    suborder: SubOrder | None = None
    dataset_task: DatasetTask | None = None
    checksum: str = ""
    state: str = "PENDING"
    download_error: str | None = None  # the server's ``downloadError``
    counts: Counter[str] = field(default_factory=Counter)  # requests, bytes_sent, completed...

    @property
    def content(self) -> tuple[int, int]:
        """The content key of its bytes (see ``content``)."""
        return self.spec.content or (self.spec.order_id, self.spec.id)

    def move(self, state: str) -> None:
        """Change state, keeping the order's and the suborder's counters right."""
        order = self.order
        order.counts[self.state] -= 1
        order.counts[state] += 1
        order.pending_bytes += self.spec.size * ((state == "PENDING") - (self.state == "PENDING"))
        if self.suborder is not None:
            self.suborder.available += (state == "AVAILABLE") - (self.state == "AVAILABLE")
        self.state = state

    def fail_download(self, message: str) -> None:
        """A download that did not end with the whole body read: what rs-order records."""
        self.move("DOWNLOAD_ERROR")
        self.download_error = message
        self.counts["download_errors"] += 1

    @property
    def recorded_size(self) -> int | None:
        """The size the server's record holds (a scenario may make it wrong, or absent): both
        listings show this one stored value."""
        r = self.spec
        listed = r.size if r.listed_size is None else r.listed_size
        return None if listed == "absent" else listed

    def entity(self) -> JSON:
        """The file as ``/orders/{id}/dataset/{task}/files`` shows it (null fields omitted)."""
        r = self.spec
        item: JSON = {
            "id": r.id,
            "state": self.state,
            "downloadError": self.download_error,
            "orderId": r.order_id,
            "filesTaskId": self.suborder.id if self.suborder else None,
            "ipId": r.ip_id or r.product_id,
            "productId": r.product_id,
            "version": 1,
            "dataType": r.data_type,
            "filename": r.filename,
            "filesize": self.recorded_size,
            "checksum": self.checksum,
            "digestAlgorithm": "MD5",
            "mimeType": r.mime_type,
            "online": True,
            "reference": False,
            "uri": f"file:///regards/storage/{self.checksum}",
        }
        return {k: v for k, v in item.items() if v is not None}

    def available_item(self, dialect: str, base_url: str) -> JSON:
        """The file as the available listing shows it, in the order's dialect."""
        r = self.spec
        size = self.recorded_size
        if dialect == "docs":
            uri = f"{base_url}/api/v1/rs-catalog/{r.product_id}/files/{self.checksum}"
            item = {"productId": r.product_id, "checksum": self.checksum, "fileSize": size}
            item |= {"filename": r.filename, "mimeType": r.mime_type, "uri": uri}
            return {k: v for k, v in item.items() if v is not None}
        url = f"{base_url}/api/v1/rs-order/orders/files/{r.id}"
        item = {"id": r.id, "productId": r.product_id}
        item |= {"version": 1, "downloadUrl": url} if dialect == "current" else {"uri": url}
        item |= {"mimeType": r.mime_type, "checksum": self.checksum, "filesize": size}
        item["filename"] = r.filename
        return {"content": {k: v for k, v in item.items() if v is not None}, "links": []}


@dataclass(eq=False)
class SubOrder:
    """A FilesTask: the files restored together, then waiting for the user."""

    id: int
    order: Order
    files: list[SimFile]
    state: str = "PENDING"  # PENDING, RESTORING, WAITING, DONE
    started: float = 0.0
    available: int = 0


@dataclass(eq=False)
class DatasetTask:
    """The part of an order that comes from one dataset selection."""

    id: int
    label: str
    objects_count: int
    file_filter: JSON | None = None  # fileSelectionDescription, when filters were given
    files: list[SimFile] = field(default_factory=list)  # in the order the server pages them
    files_size: int = 0

    def view(self) -> JSON:
        task: JSON = {
            "id": self.id,
            "datasetLabel": self.label,
            "objectsCount": self.objects_count,
            "filesCount": len(self.files),
            "filesSize": self.files_size,
        }
        if self.file_filter is not None:
            task["fileSelectionDescription"] = self.file_filter
        return task


@dataclass(eq=False)
class Order:
    """An order and what the server stores about it."""

    id: int
    owner: str
    label: str
    dialect: str
    expiration: str
    created: str
    files: list[SimFile] = field(default_factory=list)
    suborders: list[SubOrder] = field(default_factory=list)
    dataset_tasks: list[DatasetTask] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    status: str = "PENDING"
    status_date: str = ""
    history: list[str] = field(default_factory=lambda: ["PENDING"])
    correlation_id: str | None = None  # kept, never shown: reading an order back omits it
    # What the server stores and the maintenance updates.
    percent: int = 0
    in_error: int = 0
    available_count: int = 0
    waiting: bool = False
    total_bytes: int = 0
    pending_bytes: int = 0

    def add_files(self, files: list[SimFile]) -> None:
        """Count new PENDING files in (at creation, or a retry's reset files)."""
        self.files += files
        self.counts["PENDING"] += len(files)
        size = sum(f.spec.size for f in files)
        self.total_bytes += size
        self.pending_bytes += size

    def set_status(self, status: str) -> None:
        if status != self.status:
            self.status, self.status_date = status, now_iso()
            self.history.append(status)

    def maintain(self) -> None:
        """What ``OrderMaintenanceService.updateTenantOrdersComputations`` does to the order."""
        counts = self.counts
        if self.status == "PENDING":  # the creation completes: an order with no file is empty
            self.set_status("RUNNING" if self.files else "DONE_WITH_WARNING")
        if self.files and self.status in _COMPUTED:
            total = self.total_bytes
            self.percent = (total - self.pending_bytes) * 100 // total if total else 100
            self.in_error = counts["ERROR"]
            self.available_count = counts["AVAILABLE"]
            if self.percent == 100:
                if self.in_error == 0:
                    self.set_status("DONE")
                elif self.in_error == len(self.files):
                    self.set_status("FAILED")
                else:
                    self.set_status("DONE_WITH_WARNING")
        elif self.status in _FINISHED and not self.waiting and self.available_count > 0:
            if self.status == "DONE" and counts["DOWNLOAD_ERROR"] > 0:
                self.set_status("DONE_WITH_WARNING")
            if counts["AVAILABLE"] == 0:
                self.available_count = 0

    def view(self) -> JSON:
        """The ``content`` of ``GET /rs-order/user/orders/{id}``."""
        return {
            "id": self.id,
            "owner": self.owner,
            "label": self.label,
            "status": self.status,
            "percentCompleted": self.percent,
            "availableFilesCount": self.available_count,
            "filesInErrorCount": self.in_error,
            "waitingForUser": self.waiting,
            "expirationDate": self.expiration,
            "statusDate": self.status_date,
            "creationDate": self.created,
            "datasetTasks": [task.view() for task in self.dataset_tasks],
        }


@dataclass(frozen=True)
class DownloadPlan:
    """What the HTTP layer needs to serve one download; hand it back to ``end_download``."""

    file_id: int
    content: tuple[int, int]
    user: str
    filename: str
    size: int
    mime_type: str
    fault: AnyFileFault | None  # never a StatusFault: begin_download answers those itself


def split(files: list[SimFile], max_files: int, max_bytes: int) -> list[list[SimFile]]:
    """Files cut into suborders of at most ``max_files`` files and ``max_bytes`` bytes."""
    groups: list[list[SimFile]] = []
    current: list[SimFile] = []
    current_bytes = 0
    for f in files:
        if current and (len(current) >= max_files or current_bytes + f.spec.size > max_bytes):
            groups.append(current)
            current, current_bytes = [], 0
        current.append(f)
        current_bytes += f.spec.size
    if current:
        groups.append(current)
    return groups


def page(items: list[Any], number: int, size: int) -> tuple[list[Any], JSON]:
    """One page of ``items`` and its Spring metadata."""
    total = len(items)
    meta = {"size": size, "totalElements": total, "totalPages": -(-total // size), "number": number}
    return items[number * size : (number + 1) * size], meta
