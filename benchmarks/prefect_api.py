"""What a Prefect server recorded of one pipeline run: its flow run and how many of its task
runs ended Completed.

Task-run states reach the server as events that its task-run recorder writes in batches, so
a count read right after the CLI exits may still be short: `wait_for_task_runs` reads it again
until it reaches what the run must have left, or a deadline passes. A count still short then
means states were lost (or never sent), and the run does not count.

The running server is asked through its REST API (plain HTTP: the benchmark process does not
import Prefect); the database of the CLI's temporary server, which is gone once the CLI exits,
is read from its PREFECT_HOME with sqlite3.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Seconds between two reads of the count while the recorder may still be flushing: long
#: enough that the reads cost the server little, short beside the recorder's 1 s interval.
POLL_SECONDS = 0.5

#: Longest wait for the recorder. Only a bound on a broken run: a healthy one is counted
#: within a flush interval or two, whatever the machine's speed.
DEADLINE_SECONDS = 60.0

COMPLETED = "COMPLETED"


@dataclass(frozen=True)
class TaskRunCount:
    """Task runs of one flow run as the server recorded them."""

    flow_run_id: str | None
    completed: int  # in state Completed
    recorded: int  # in any state
    expected: int  # what the run must have left Completed

    @property
    def short(self) -> bool:
        """Fewer Completed task runs than the run made: states were lost."""
        return self.completed < self.expected

    def as_json(self) -> dict[str, Any]:
        """Plain fields for the results file."""
        return {
            "flow_run_id": self.flow_run_id,
            "completed": self.completed,
            "recorded": self.recorded,
            "expected": self.expected,
        }


def _post(api: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(  # noqa: S310 - the benchmark's own local server
        f"{api}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30.0) as answer:  # noqa: S310
        return json.loads(answer.read())


def flow_run_started_after(api: str, name: str, after: dt.datetime) -> str | None:
    """The id of the newest flow run called `name` that started after `after`, if any."""
    body = {
        "flow_runs": {"name": {"any_": [name]}, "start_time": {"after_": after.isoformat()}},
        "sort": "START_TIME_DESC",
        "limit": 1,
    }
    runs = _post(api, "/flow_runs/filter", body)
    return str(runs[0]["id"]) if runs else None


def _count(api: str, flow_run_id: str, state_type: str | None) -> int:
    task_runs: dict[str, Any] = {"flow_run_id": {"any_": [flow_run_id]}}
    if state_type is not None:
        task_runs["state"] = {"type": {"any_": [state_type]}}
    return int(_post(api, "/task_runs/count", {"task_runs": task_runs}))


def wait_for_task_runs(
    api: str,
    flow_run_name: str,
    started_after: dt.datetime,
    expected: int,
    deadline_s: float = DEADLINE_SECONDS,
) -> TaskRunCount:
    """Count the Completed task runs of the run's flow run, reading again until there are at
    least `expected` of them (the recorder has flushed) or `deadline_s` seconds pass."""
    deadline = time.monotonic() + deadline_s
    flow_run_id = None
    completed = 0
    while True:
        if flow_run_id is None:
            flow_run_id = flow_run_started_after(api, flow_run_name, started_after)
        if flow_run_id is not None:
            completed = _count(api, flow_run_id, COMPLETED)
            if completed >= expected:
                break
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    recorded = _count(api, flow_run_id, None) if flow_run_id is not None else 0
    return TaskRunCount(flow_run_id, completed, recorded, expected)


def count_in_home(home: Path, flow_run_name: str, expected: int) -> TaskRunCount:
    """The same count, read from the SQLite database a temporary server left in `home`
    (Prefect's default database: `<PREFECT_HOME>/prefect.db`); its newest flow run of that
    name is the run's. The server has stopped: whatever it recorded is there now."""
    database = home / "prefect.db"
    if not database.exists():
        return TaskRunCount(None, 0, 0, expected)
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT id FROM flow_run WHERE name = ? ORDER BY created DESC LIMIT 1",
            (flow_run_name,),
        ).fetchone()
        if row is None:
            return TaskRunCount(None, 0, 0, expected)
        (flow_run_id,) = row
        completed, recorded = db.execute(
            "SELECT COALESCE(SUM(state_type = ?), 0), COUNT(*) FROM task_run WHERE flow_run_id = ?",
            (COMPLETED, flow_run_id),
        ).fetchone()
    return TaskRunCount(str(flow_run_id), int(completed), int(recorded), expected)
