"""A process-wide request to stop, set by a signal and honoured between chunks and polls.

Threads cannot be killed from outside: a transfer in flight checks this flag after every chunk
and gives up cleanly (its partial file removed), and the flow stops starting new work.
"""

from __future__ import annotations

import threading

from regards_order.errors import Interrupted

_stop = threading.Event()


def request_stop() -> None:
    """Ask every transfer and poll loop of this process to stop as soon as it safely can."""
    _stop.set()


def stop_requested() -> bool:
    """Whether a stop was requested."""
    return _stop.is_set()


def check_stop() -> None:
    """Raise Interrupted if a stop was requested."""
    if _stop.is_set():
        raise Interrupted("stopped on request before the file was complete")


def pause(seconds: float) -> None:
    """Sleep up to `seconds`, waking at once if a stop is requested."""
    _stop.wait(seconds)


def clear_stop() -> None:
    """Forget an earlier request (for a process that runs several deliveries, e.g. tests)."""
    _stop.clear()
