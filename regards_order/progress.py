"""What the delivery in this process is doing now, for a display to show while it runs.

The run says what it saw of the order and what it knows of the files; each transfer in flight
counts the bytes it has received. A display (the command line's) reads a `Snapshot` at its own
pace, from another thread. Transfers in other processes (a Dask cluster) are not seen here:
the counts of files still are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from regards_order.models import Order


@dataclass(frozen=True)
class Moving:
    """One transfer in flight."""

    name: str
    size: int | None
    received: int
    started: float  # monotonic


@dataclass(frozen=True)
class Snapshot:
    """The delivery at one moment."""

    order: Order | None
    files_known: int
    files_done: int  # verified at the target (downloaded or already there)
    files_failed: int
    bytes_known: int
    bytes_done: int
    moving: tuple[Moving, ...]
    at: float = field(default_factory=time.monotonic)

    @property
    def bytes_moving(self) -> int:
        return sum(m.received for m in self.moving)


@dataclass
class _Counting:
    name: str
    size: int | None
    received: int
    started: float


class Watch:
    """The process-wide account a run keeps up to date (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._order: Order | None = None
        self._files = (0, 0, 0)  # known, done, failed
        self._bytes = (0, 0)  # known, done
        self._moving: dict[str, _Counting] = {}

    def order_seen(self, order: Order) -> None:
        with self._lock:
            self._order = order

    def files(self, known: int, done: int, failed: int, bytes_known: int, bytes_done: int) -> None:
        with self._lock:
            self._files = (known, done, failed)
            self._bytes = (bytes_known, bytes_done)

    def counted(
        self, key: str, name: str, size: int | None, chunks: Iterable[bytes]
    ) -> Iterator[bytes]:
        """`chunks` as they come, each counted as received by the transfer of `key`."""
        entry = _Counting(name, size, 0, time.monotonic())
        with self._lock:
            self._moving[key] = entry
        try:
            for chunk in chunks:
                entry.received += len(chunk)  # one writer; readers copy it under the lock
                yield chunk
        finally:
            with self._lock:
                self._moving.pop(key, None)

    def snapshot(self) -> Snapshot:
        with self._lock:
            known, done, failed = self._files
            bytes_known, bytes_done = self._bytes
            moving = tuple(
                Moving(e.name, e.size, e.received, e.started) for e in self._moving.values()
            )
            return Snapshot(self._order, known, done, failed, bytes_known, bytes_done, moving)


#: The delivery of this process.
WATCH = Watch()
