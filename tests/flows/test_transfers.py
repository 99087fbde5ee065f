"""Beyond one thread pool: transfers on a Dask cluster, and a per-user limit across runs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from regards_order.flows.download_order import download_order
from regards_order.settings import TaskRunnerKind
from regards_order.simulator import Scenario, Simulator
from regards_order.tasks.limits import limit_name
from tests.helpers.flow_runs import run
from tests.helpers.scenarios import FAST, USER, connection_for, generated, scenario

pytestmark = pytest.mark.usefixtures("prefect_api")

Start = Callable[[Scenario], Simulator]


def test_transfers_run_in_dask_worker_processes(start_simulator: Start, tmp_path: Path) -> None:
    sim = start_simulator(scenario([generated(1, 8, 300_000)]))
    options = FAST.model_copy(update={"task_runner": TaskRunnerKind.DASK, "dask_workers": 2})
    state, report = run(1, tmp_path, connection_for(sim), options)
    assert state.is_completed(), state.message
    assert report.counts["downloaded"] == 8
    clients = {c for f in sim.stats()["files"].values() for c in f["clients"]}
    pids = {int(c.rsplit("pid ", 1)[1].rstrip(")")) for c in clients}
    assert os.getpid() not in pids  # not one byte fetched by the flow's own process
    assert 1 <= len(pids) <= 2  # the cluster's worker processes, each with its own client


def slow_files(count: int) -> list[dict[str, Any]]:
    return [
        {
            "filename": f"slow-{i}.bin",
            "size": 60_000,
            "faults": [{"kind": "slow", "bytes_per_second": 300_000, "times": None}],
        }
        for i in range(count)
    ]


def test_user_limit_holds_across_parallel_runs(start_simulator: Start, tmp_path: Path) -> None:
    orders = [{"id": n, "owner": USER, "files": slow_files(6)} for n in (1, 2)]
    sim = start_simulator(scenario(orders))
    connection = connection_for(sim)
    options = FAST.model_copy(update={"concurrency": 4, "user_transfer_limit": 2})

    async def both() -> list[Any]:
        runs = [
            download_order(
                order_id=n,
                target=str(tmp_path / str(n)),
                connection=connection,
                options=options,
                return_state=True,
            )
            for n in (1, 2)
        ]
        return list(await asyncio.gather(*runs))

    states = asyncio.run(both())
    assert all(s.is_completed() for s in states), [s.message for s in states]
    assert sim.stats()["max_concurrent_downloads"][USER] == 2  # reached, never passed

    from prefect.client.orchestration import get_client

    async def limit() -> Any:
        async with get_client() as client:
            return await client.read_global_concurrency_limit_by_name(limit_name(connection))

    assert asyncio.run(limit()).limit == 2


def test_without_a_limit_runs_are_not_capped(start_simulator: Start, tmp_path: Path) -> None:
    """The control for the test above: the same runs, no limit, more than 2 in flight."""
    sim = start_simulator(scenario([{"id": 1, "owner": USER, "files": slow_files(6)}]))
    options = FAST.model_copy(update={"concurrency": 4})
    state, _ = run(1, tmp_path, connection_for(sim), options)
    assert state.is_completed()
    assert sim.stats()["max_concurrent_downloads"][USER] > 2


def test_a_429_makes_every_transfer_of_the_user_wait(
    start_simulator: Start, tmp_path: Path
) -> None:
    """A 429 in one run pauses the user's transfers in another run for its Retry-After."""
    import threading
    import time

    throttled = {
        "filename": "throttled.bin",
        "size": 1000,
        "faults": [{"kind": "status", "status": 429, "times": 1, "retry_after": 6}],
    }
    orders = [
        {"id": 1, "owner": USER, "files": [throttled]},
        {"id": 2, "owner": USER, "generate": [{"count": 3, "size": 1000}]},
    ]
    sim = start_simulator(scenario(orders))
    connection = connection_for(sim)
    options = FAST.model_copy(update={"user_transfer_limit": 4})
    first: list[Any] = []
    throttling = threading.Thread(
        target=lambda: first.append(run(1, tmp_path / "1", connection, options))
    )
    throttling.start()
    deadline = time.monotonic() + 60
    while not sim.stats()["files"]["1"]["requested_at"]:  # wait for the 429 to be answered
        assert time.monotonic() < deadline
        time.sleep(0.02)
    answered = sim.stats()["files"]["1"]["requested_at"][0]
    state, report = run(2, tmp_path / "2", connection, options)
    throttling.join(timeout=120)
    assert state.is_completed() and first[0][0].is_completed()
    assert report.counts["downloaded"] == 3
    started = [t for f in ("2", "3", "4") for t in sim.stats()["files"][f]["requested_at"]]
    # The other run's files waited out the Retry-After the first run was told.
    assert min(started) >= answered + 6 - 0.1
