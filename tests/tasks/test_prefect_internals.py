"""Canaries of the private Prefect APIs the project relies on (tasks/prefect_internals.py):
each fails, saying what to change, when Prefect stops behaving as the project assumes."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from prefect import flow, task
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from regards_order.tasks.prefect_internals import (
    ConcurrencySlotAcquisitionError,
    ForgetfulThreadPool,
    forget_task_results,
)

pytestmark = pytest.mark.usefixtures("prefect_api")

FILES = 25


class Result(BaseModel):
    name: str
    size: int


@task
def deliver(index: int) -> Result:
    return Result(name=f"file-{index}.bin", size=1000 + index)


def kept_by(runner: ThreadPoolTaskRunner[Any]) -> tuple[int, int, list[Result]]:
    """Run FILES tasks in `runner`; return the cancel events it still holds once its threads
    are gone, the results Prefect mapped to states before forgetting, and the results."""

    @flow
    def transfers() -> tuple[int, int, list[Result]]:
        with runner:
            futures = [runner.submit(deliver, {"index": i}) for i in range(FILES)]
            results = [future.result() for future in futures]
        context = FlowRunContext.get()
        assert context is not None
        mapped_before = len(context.run_results)
        forget_task_results()
        assert not context.run_results
        return len(runner._cancel_events), mapped_before, results

    return transfers()


def test_the_pool_and_the_flow_forget_every_settled_task_run() -> None:
    events, mapped_before, results = kept_by(ForgetfulThreadPool(max_workers=4))
    assert [r.size for r in results] == [1000 + i for i in range(FILES)]
    assert events == 0
    # What forget_task_results drops: a State per result and per field of each result.
    assert mapped_before >= FILES


def test_prefects_own_pool_keeps_one_cancel_event_per_task_run() -> None:
    # The reason ForgetfulThreadPool exists: if Prefect stops doing this, drop the subclass.
    events, _, _ = kept_by(ThreadPoolTaskRunner(max_workers=4))
    assert events == FILES


def test_cancel_all_while_runs_end_on_other_threads() -> None:
    # The race it must survive: pool threads forget their events while cancel_all walks them.
    pool = ForgetfulThreadPool(max_workers=4)
    release = threading.Event()

    @task
    def hold(index: int) -> int:
        release.wait(10)
        return index

    @flow
    def held() -> None:
        with pool:
            for i in range(40):
                pool.submit(hold, {"index": i})
            release.set()  # they end (and forget) while the pool is cancelled below
            pool.cancel_all()

    # Without the lock: "RuntimeError: dictionary changed size during iteration", now and then.
    state = held(return_state=True)
    assert state.is_completed(), state.message


def test_a_refused_slot_raises_the_private_error() -> None:
    # prefect.concurrency.sync.concurrency raises it when the API grants no slot in time.
    with (
        pytest.raises(ConcurrencySlotAcquisitionError),
        concurrency("regards-canary-no-such-limit", occupy=1, strict=True, timeout_seconds=1),
    ):
        pass
