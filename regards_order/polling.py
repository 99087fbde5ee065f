"""Polling pace: a capped, jittered, growing interval that starts over when things move."""

from __future__ import annotations

import random


class Backoff:
    """Delays between two looks at an order.

    Each `next()` is the previous delay times `factor`, capped at `maximum`, with up to
    `jitter` (a fraction) taken off at random so that many clients do not poll in step.
    `reset()` starts over from `initial` when the order showed progress.
    """

    def __init__(
        self, initial: float, maximum: float, *, factor: float = 1.6, jitter: float = 0.2
    ) -> None:
        self.initial = initial
        self.maximum = max(maximum, initial)
        self.factor = factor
        self.jitter = jitter
        self._current = initial

    def reset(self) -> float:
        """The first delay again."""
        self._current = self.initial
        return self._jittered(self._current)

    def next(self, at_least: float = 0.0) -> float:
        """The next, longer delay; never shorter than `at_least` (a server's Retry-After)."""
        delay = self._jittered(self._current)
        self._current = min(self._current * self.factor, self.maximum)
        return max(delay, at_least)

    def _jittered(self, delay: float) -> float:
        return delay * (1 - self.jitter * random.random())
