"""Every use of a private Prefect API, in one place, each covered by a canary test
(tests/tasks/test_prefect_internals.py) that fails when Prefect changes it.

- `ConcurrencySlotAcquisitionError` is raised by `prefect.concurrency.sync.concurrency` when the
  API does not grant a slot, but only exported from a private module.
- Prefect's `ThreadPoolTaskRunner` keeps a cancel event per task run it was ever given, in
  `_cancel_events`, until the flow ends: memory growing per file over a huge order.
- The flow run context's `run_results` maps every task result to its state, to draw an edge
  when one task's result is passed to another; this project never does that, and the map holds
  a State per result and per field of each result for the whole run.
"""

from __future__ import annotations

import threading
from typing import Any

from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
from prefect.context import FlowRunContext
from prefect.futures import PrefectConcurrentFuture, PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

__all__ = ["ConcurrencySlotAcquisitionError", "ForgetfulThreadPool", "forget_task_results"]


class ForgetfulThreadPool(ThreadPoolTaskRunner[Any]):
    """Prefect's thread pool, forgetting each task run's cancel event once the run ends."""

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers=max_workers)
        self._forgetting = threading.Lock()
        self._cancelling = False

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        future = super().submit(*args, **kwargs)
        if isinstance(future, PrefectConcurrentFuture):
            future.add_done_callback(self._forget)
        return future

    def _forget(self, future: PrefectFuture[Any]) -> None:
        # Called from pool threads as transfers end; never while cancel_all walks the events.
        with self._forgetting:
            if not self._cancelling:
                self._cancel_events.pop(future.task_run_id, None)

    def cancel_all(self) -> None:
        with self._forgetting:
            self._cancelling = True
        # Outside the lock: the executor's shutdown waits for threads that may be forgetting.
        super().cancel_all()

    def cancel_events(self) -> int:
        """How many task runs the pool still keeps a cancel event for."""
        return len(self._cancel_events)


def forget_task_results() -> None:
    """Drop the current flow run's map from task results to their states."""
    context = FlowRunContext.get()
    if context is not None:
        context.run_results.clear()
