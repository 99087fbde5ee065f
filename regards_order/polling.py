"""Polling pace: a capped, jittered, growing interval that starts over when things move."""

from __future__ import annotations

import random as _random
from collections.abc import Callable


class Backoff:
    """Delays between two looks at an order.

    Each `next()` is the previous delay times `factor`, capped at `maximum`, with up to
    `jitter` (a fraction) taken off at random so that many clients do not poll in step.
    `reset()` starts over from `initial` when the order showed progress. `random` (a draw in
    [0, 1)) can be given for delays that tests know in advance.
    """

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        factor: float = 1.6,
        jitter: float = 0.2,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.initial = initial
        self.maximum = max(maximum, initial)
        self.factor = factor
        self.jitter = jitter
        self._random = random
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
        return delay * (1 - self.jitter * self._random())
