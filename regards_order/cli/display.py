"""What the command line shows while a delivery runs (on stderr: stdout is the report's).

On a terminal, a live view of a few lines, refreshed four times a second: the order, one bar
of the files and bytes verified with the rate and the time left, and a row per transfer in
flight; log lines print above it. Elsewhere (cron, CI, a worker's log), one plain line every
30 s (REGARDS_PROGRESS_EVERY). With --quiet, nothing but errors and the final line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from regards_order.progress import WATCH, Snapshot

#: Seconds between two lines where there is no terminal.
LINE_EVERY_SECONDS = 30.0

#: How far back the rate is measured.
RATE_WINDOW_SECONDS = 10.0

#: Transfers shown one per row, at most.
ROWS = 8


class Mode(StrEnum):
    LIVE = "live"
    LINES = "lines"
    QUIET = "quiet"


def mode_for(quiet: bool) -> Mode:
    """The display this command line gets: live on a terminal, lines elsewhere."""
    if quiet:
        return Mode.QUIET
    return Mode.LIVE if sys.stderr.isatty() else Mode.LINES


def size(count: float) -> str:
    """Bytes in decimal units, as people read them: 3.1 GB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"  # pragma: no cover - the loop always returns


class Rate:
    """Bytes per second over the last RATE_WINDOW_SECONDS."""

    def __init__(self) -> None:
        self._seen: deque[tuple[float, int]] = deque()

    def add(self, snapshot: Snapshot) -> float:
        moved = snapshot.bytes_done + snapshot.bytes_moving
        self._seen.append((snapshot.at, moved))
        while len(self._seen) > 2 and snapshot.at - self._seen[0][0] > RATE_WINDOW_SECONDS:
            self._seen.popleft()
        (first_at, first), (last_at, last) = self._seen[0], self._seen[-1]
        return (last - first) / (last_at - first_at) if last_at > first_at else 0.0


def summary_line(order_id: int, snapshot: Snapshot, rate: float) -> str:
    """`order 1234 RUNNING: 412/2000 files, 3.1/16.0 GB, 85.0 MB/s`."""
    status = snapshot.order.status if snapshot.order else "UNKNOWN"
    done = snapshot.bytes_done + snapshot.bytes_moving
    return (
        f"order {order_id} {status}: {snapshot.files_done}/{snapshot.files_known} files, "
        f"{size(done)}/{size(snapshot.bytes_known)}, {size(rate)}/s"
    )


def _left(snapshot: Snapshot, rate: float) -> str:
    remaining = snapshot.bytes_known - snapshot.bytes_done - snapshot.bytes_moving
    if rate <= 0 or remaining <= 0:
        return ""
    seconds = int(remaining / rate)
    return f", {seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d} left"


def live_view(order_id: int, snapshot: Snapshot, rate: float) -> RenderableType:
    """The live view of one moment."""
    order = snapshot.order
    if order is None:
        head = Text(f"order {order_id}: looking at it")
    else:
        waiting = " (suborders waiting for you)" if order.waiting_for_user else ""
        head = Text(
            f"order {order_id} {order.status}: {order.percent_completed or 0}% restored, "
            f"{order.available_files_count or 0} files available{waiting}"
        )
    total = max(snapshot.bytes_known, 1)
    done = snapshot.bytes_done + snapshot.bytes_moving
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=total, completed=min(done, total), width=30),
        Text(
            f"{snapshot.files_done}/{snapshot.files_known} files verified, "
            f"{size(done)}/{size(snapshot.bytes_known)}, {size(rate)}/s{_left(snapshot, rate)}"
            + (f", {snapshot.files_failed} failed" if snapshot.files_failed else "")
        ),
    )
    rows = Table.grid(padding=(0, 2))
    now = time.monotonic()
    for moving in sorted(snapshot.moving, key=lambda m: m.started)[:ROWS]:
        speed = moving.received / max(now - moving.started, 1e-3)
        of = f"/{size(moving.size)}" if moving.size else ""
        rows.add_row(Text(moving.name, overflow="ellipsis", no_wrap=True),
                     Text(f"{size(moving.received)}{of}"), Text(f"{size(speed)}/s"))  # fmt: skip
    more = len(snapshot.moving) - ROWS
    parts: list[RenderableType] = [head, bar, rows]
    if more > 0:
        parts.append(Text(f"... and {more} more transfers"))
    return Group(*parts)


def _prefect_consoles() -> Iterator[object]:
    """Prefect's console log handlers (they print through a rich Console of their own)."""
    seen = set()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if hasattr(handler, "console") and id(handler) not in seen:
                seen.add(id(handler))
                yield handler


#: The live view on screen, if one is.
_SHOWN: list[Live] = []


def close_view() -> None:
    """Take the live view off the screen and show the cursor again, before quitting at once
    (a second Ctrl-C): never longer than a second, whatever the view's thread is doing."""
    if not _SHOWN:
        return
    live = _SHOWN[0]
    closing = threading.Thread(target=live.stop, name="regards-order-close-view", daemon=True)
    closing.start()
    closing.join(1.0)
    if closing.is_alive():  # the view could not stop: at least give the cursor back
        with contextlib.suppress(OSError):
            os.write(sys.__stderr__.fileno() if sys.__stderr__ else 2, b"\x1b[?25h\n")


@contextmanager
def showing(order_id: int, mode: Mode) -> Iterator[None]:
    """Show the delivery for the length of the block."""
    if mode is Mode.QUIET:
        for handler in _prefect_consoles():
            handler.setLevel(logging.ERROR)  # type: ignore[attr-defined]
        yield
        return
    stop = threading.Event()
    rate = Rate()
    if mode is Mode.LINES:
        every = float(os.environ.get("REGARDS_PROGRESS_EVERY") or LINE_EVERY_SECONDS)

        def lines() -> None:
            while not stop.wait(every):
                snapshot = WATCH.snapshot()
                click.echo(summary_line(order_id, snapshot, rate.add(snapshot)), err=True)

        thread = threading.Thread(target=lines, name="regards-order-lines", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
        return
    console = Console(stderr=True)
    handlers = list(_prefect_consoles())
    before = [handler.console for handler in handlers]  # type: ignore[attr-defined]

    def view() -> RenderableType:
        snapshot = WATCH.snapshot()
        return live_view(order_id, snapshot, rate.add(snapshot))

    # Transient: once the run ends the view goes, and the terminal holds the log lines and
    # the final line alone.
    live = Live(
        get_renderable=view, console=console, refresh_per_second=4, redirect_stderr=True,
        transient=True,
    )  # fmt: skip
    for handler in handlers:
        handler.console = console  # type: ignore[attr-defined]  # log lines above the view
    try:
        with live:
            _SHOWN.append(live)
            try:
                yield
            finally:
                _SHOWN.remove(live)
    finally:
        for handler, original in zip(handlers, before, strict=True):
            handler.console = original  # type: ignore[attr-defined]
