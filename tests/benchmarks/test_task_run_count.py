"""A benchmark run of the pipeline counts only if the Prefect server recorded every task run of
it Completed: checked against a real `prefect server start`, with its task-run recorder
batched (every state arrives) and turned off (none does)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.bench import child_env
from benchmarks.prefect_api import count_in_home
from benchmarks.procs import PREFECT_SERVER_SETTINGS, prefect_server
from benchmarks.workloads import Harness, OrderSpec, Run, clean
from regards_order.simulator import Simulator

VENV_BIN = Path(sys.executable).parent
RECORDER_OFF = {"PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "false"}

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/time").exists(), reason="the harness measures with GNU time"
)


def _harness(work: Path, settings: dict[str, str]) -> Iterator[Harness]:
    env = child_env(work)
    home, log = work / "prefect", work / "prefect-server.log"
    with prefect_server(home, env, log, str(VENV_BIN / "prefect"), settings) as api:
        yield Harness(work, env, api, VENV_BIN)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """The benchmark's own server: the recorder writes states in batches."""
    yield from _harness(tmp_path_factory.mktemp("batched"), PREFECT_SERVER_SETTINGS)


@pytest.fixture(scope="module")
def recorder_off(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """A server that records no task-run state at all."""
    yield from _harness(tmp_path_factory.mktemp("recorder-off"), RECORDER_OFF)


def _pipeline(harness: Harness, spec: OrderSpec, label: str) -> tuple[Simulator, Run]:
    dest = harness.work / label
    with Simulator(spec.scenario()) as simulator:
        run = harness.pipeline(
            simulator, spec, str(dest), label=label, rep=0, concurrency=4, local=dest
        )
    clean(dest)
    return simulator, run


def test_every_task_run_of_an_order_over_several_suborders_is_counted(batched: Harness) -> None:
    # 30 files in suborders of 8: at most 2 suborders wait at once, so the run looks several
    # times, and each look is a poll and a listing on top of one transfer per file; the quota
    # is read once, and every file of the order listed at the first look and at the end.
    spec = OrderSpec(order_id=41, count=30, size=2048, suborder_files=8)
    simulator, run = _pipeline(batched, spec, "batched")

    assert run.ok, run.error
    looks = run.extra["looks"]
    assert run.extra["suborders"] == 4 and looks >= 2
    counted = run.task_runs
    assert counted is not None
    requests = simulator.stats()["requests"]
    assert (requests["quota"], requests["dataset_files"]) == (1, 2)
    assert counted["expected"] == 30 + 2 * looks + 1 + 2
    assert counted["completed"] == counted["recorded"] == counted["expected"]
    assert simulator.stats()["downloads_completed"] == 30


def test_a_run_whose_task_runs_the_server_did_not_record_does_not_count(
    recorder_off: Harness,
) -> None:
    recorder_off.task_run_deadline = 3.0  # nothing will ever be recorded: no need to wait long
    spec = OrderSpec(order_id=42, count=3, size=2048)
    simulator, run = _pipeline(recorder_off, spec, "recorder-off")

    # The files were delivered: the missing states alone fail the run.
    assert simulator.stats()["downloads_completed"] == 3
    assert not run.ok
    assert "states were lost" in run.error
    counted = run.task_runs
    assert counted is not None
    # 3 transfers, a poll and a listing per look, the quota, every file at the start and the end.
    assert counted["completed"] == 0 and counted["expected"] == 3 + 2 * run.extra["looks"] + 3
    assert counted["flow_run_id"]  # the flow run itself is recorded; its task runs are not


def test_a_home_without_a_database_holds_no_task_run(tmp_path: Path) -> None:
    counted = count_in_home(tmp_path, "download-order-1", expected=5)
    assert counted.short and counted.completed == 0 and counted.flow_run_id is None
