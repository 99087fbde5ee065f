"""What a download_order run shows in Prefect as it goes and when it ends: one log line per
file (from the run), a progress artifact of the files settled, and a table artifact with one
row per file."""

from __future__ import annotations

import logging
import os
import time
from uuid import UUID

from prefect.artifacts import (
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)

from regards_order.report import OrderReport
from regards_order.run import OrderRun

#: Seconds between two updates of the progress artifact.
PROGRESS_INTERVAL = 1.0


#: The setting that gives Prefect's own task-run log level (see one_line_per_file).
TASK_RUN_LEVEL = "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL"


def one_line_per_file() -> None:
    """Keep Prefect's own "Finished in state Completed()" line of each task run out of the
    run's logs, unless its level was set: the run logs one line per file that names it.
    Warnings and errors of task runs stay."""
    if not os.environ.get(TASK_RUN_LEVEL):
        logging.getLogger("prefect.task_runs").setLevel(logging.WARNING)


class Progress:
    """The progress artifact of a run: the share of known files that settled."""

    def __init__(self, run: OrderRun, artifact: UUID) -> None:
        self.run = run
        self.artifact = artifact
        self._shown: tuple[int, int] = (0, 0)
        self._shown_at = time.monotonic()

    @classmethod
    async def start(cls, run: OrderRun) -> Progress:
        """Create the artifact, at 0 %."""
        description = f"Order {run.order_id}: files done"
        return cls(run, await acreate_progress_artifact(0.0, description=description))

    async def update(self, *, final: bool = False) -> None:
        """Show the current share, if it changed, at most every PROGRESS_INTERVAL seconds."""
        delivery = self.run.delivery
        now_shown = (delivery.settled, delivery.known)
        due = final or time.monotonic() - self._shown_at >= PROGRESS_INTERVAL
        if now_shown == self._shown or not due:
            return
        settled, known = now_shown
        await aupdate_progress_artifact(self.artifact, 100.0 * settled / max(known, 1))
        self._shown, self._shown_at = now_shown, time.monotonic()


async def publish(report: OrderReport, progress: Progress) -> None:
    """The final progress, and the table of every file's outcome."""
    await progress.update(final=True)
    rows = [
        {
            "file": f.filename,
            "id": f.id,
            "outcome": f.outcome.value,
            "size": f.size,
            "md5": f.md5,
            "attempts": f.attempts,
            "target": f.target,
            "error": f.error or "",
        }
        for f in report.files
    ]
    await acreate_table_artifact(
        rows, key=f"order-{report.order_id}-files", description=report.summary()
    )
