"""What a download_order run keeps per file in Prefect's own bookkeeping: nothing once the
file has settled (an order of tens of thousands of files must not grow by a State each)."""

from __future__ import annotations

from typing import Any

import pytest
from prefect import flow, task
from prefect.context import FlowRunContext
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from flows.order_run import TransferThreadPool, _forget_task_results

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
    are gone, the results Prefect still maps to states after settling, and the results."""

    @flow
    def transfers() -> tuple[int, int, list[Result]]:
        with runner:
            futures = [runner.submit(deliver, {"index": i}) for i in range(FILES)]
            results = [future.result() for future in futures]
        context = FlowRunContext.get()
        assert context is not None
        mapped_before = len(context.run_results)
        _forget_task_results()
        assert not context.run_results
        return len(runner._cancel_events), mapped_before, results

    return transfers()


def test_the_transfer_pool_and_the_flow_forget_every_settled_task_run() -> None:
    events, mapped_before, results = kept_by(TransferThreadPool(max_workers=4))
    assert [r.size for r in results] == [1000 + i for i in range(FILES)]
    assert events == 0
    # What _forget_task_results drops: a State per result and per field of each result.
    assert mapped_before >= FILES


def test_prefects_own_pool_keeps_one_cancel_event_per_task_run() -> None:
    # The reason TransferThreadPool exists: if Prefect stops doing this, drop the subclass.
    events, _, _ = kept_by(ThreadPoolTaskRunner(max_workers=4))
    assert events == FILES
