"""Limits shared by every run and worker: a Prefect global concurrency limit per REGARDS user.

REGARDS limits each user (suborders, a download quota answered with 429), whatever machine they
download from. The limit caps the user's concurrent transfers across all runs; a 429 with a
Retry-After sets a quiet period, kept in a Prefect variable, that every transfer of the user
waits out before starting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound
from prefect.variables import Variable

from regards_order.errors import SlotUnavailable
from regards_order.settings import Connection
from regards_order.stopping import pause
from regards_order.tasks.prefect_internals import ConcurrencySlotAcquisitionError

LIMIT_PREFIX = "regards-transfers-"


def limit_name(connection: Connection) -> str:
    """The global concurrency limit of the connection's user."""
    return LIMIT_PREFIX + connection.user_key


async def ensure_user_limit(connection: Connection, size: int | None) -> str | None:
    """Create the user's limit if missing, or set its size; return its name (None: no limit
    asked for)."""
    if size is None:
        return None
    name = limit_name(connection)
    async with get_client() as client:
        try:
            existing = await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=size)
            )
            return name
        if existing.limit != size or not existing.active:
            await client.update_global_concurrency_limit(
                name, GlobalConcurrencyLimitUpdate(limit=size, active=True)
            )
    return name


def _quiet_variable(name: str) -> str:
    return f"{name}-quiet-until"


#: How long this process trusts its last read of a quiet period: the Variable was read by
#: every transfer, one API call per file; other runs' 429s are seen at most this much later.
QUIET_READ_EVERY_SECONDS = 1.0


class _QuietCache:
    """The last quiet-until read (or set) per limit, with when it was read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read: dict[str, tuple[float, float]] = {}  # name -> (read at, until)

    def until(self, name: str, now: float) -> float:
        with self._lock:
            read_at, until = self._read.get(name, (-float("inf"), 0.0))
        if now - read_at < QUIET_READ_EVERY_SECONDS:
            return until
        value = Variable.get(_quiet_variable(name), default=0.0)
        until = float(value) if isinstance(value, int | float) else 0.0
        self.note(name, now, until)
        return until

    def note(self, name: str, now: float, until: float) -> None:
        with self._lock:
            self._read[name] = (now, until)


_QUIET = _QuietCache()


@contextmanager
def user_slot(name: str | None) -> Iterator[None]:
    """Hold one of the user's transfer slots (after any quiet period); no-op without a limit."""
    if name is None:
        yield
        return
    until = _QUIET.until(name, time.monotonic())
    if until > time.time():
        pause(until - time.time())
    with ExitStack() as held:
        try:
            held.enter_context(concurrency(name, occupy=1, strict=True))
        except ConcurrencySlotAcquisitionError as error:
            # The Prefect API was busy or away: a passing fault, retried like any other.
            raise SlotUnavailable(f"no transfer slot from the Prefect API: {error}") from None
        yield


def quiet_everyone(name: str | None, seconds: float) -> None:
    """Make every transfer of the user wait `seconds` before starting (a 429's Retry-After)."""
    if name is not None:
        until = time.time() + seconds
        Variable.set(_quiet_variable(name), until, overwrite=True)
        _QUIET.note(name, time.monotonic(), until)
