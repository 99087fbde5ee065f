"""The quiet period of a user's transfers, read through the session's Prefect API: at most
one Variable read per QUIET_READ_EVERY_SECONDS of the (injected) clock, and this process's own
429 seen at once."""

from __future__ import annotations

import time
import uuid

import pytest
from prefect.variables import Variable

from regards_order.tasks.limits import QUIET_READ_EVERY_SECONDS, _QuietCache, quiet_everyone

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_the_quiet_period_is_read_once_a_second_and_set_at_once() -> None:
    name = f"regards-transfers-{uuid.uuid4().hex[:8]}"
    cache = _QuietCache()
    assert cache.until(name, now=100.0) == 0.0  # no variable yet: no quiet period
    Variable.set(f"{name}-quiet-until", 5_000.0, overwrite=True)  # another run's 429
    assert cache.until(name, now=100.0 + QUIET_READ_EVERY_SECONDS / 2) == 0.0  # not read again
    assert cache.until(name, now=100.0 + QUIET_READ_EVERY_SECONDS) == 5_000.0


def test_this_processs_own_429_needs_no_read() -> None:
    from regards_order.tasks import limits

    name = f"regards-transfers-{uuid.uuid4().hex[:8]}"
    limits._QUIET.until(name, now=0.0)
    quiet_everyone(name, seconds=30.0)
    stored = Variable.get(f"{name}-quiet-until")
    assert isinstance(stored, float) and stored > time.time() + 20
    Variable.set(f"{name}-quiet-until", 1.0, overwrite=True)
    # Its own value, from the cache: the Variable was not read again.
    noted_at, _ = limits._QUIET._read[name]
    assert limits._QUIET.until(name, now=noted_at) == stored
