"""The polling pace grows, is capped, is jittered, and honours Retry-After."""

from __future__ import annotations

from regards_order.polling import Backoff


def test_backoff_grows_to_its_cap_and_resets() -> None:
    pace = Backoff(1.0, 5.0, factor=2.0, jitter=0.0)
    assert [pace.next() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert pace.reset() == 1.0
    assert pace.next() == 1.0


def test_backoff_is_jittered_within_bounds() -> None:
    pace = Backoff(10.0, 10.0, jitter=0.5)
    delays = {pace.next() for _ in range(50)}
    assert len(delays) > 1
    assert all(5.0 <= d <= 10.0 for d in delays)


def test_retry_after_is_a_floor() -> None:
    pace = Backoff(1.0, 2.0, jitter=0.0)
    assert pace.next(at_least=30.0) == 30.0
