"""What a download_order run shows in Prefect as it goes and when it ends: one log line per
file (from the run), a progress artifact of the files settled, and a table artifact with one
row per file."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from uuid import UUID

from prefect.artifacts import (
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)

from regards_order.errors import RegardsOrderError, TargetError
from regards_order.paths import MANIFEST_NAME as MANIFEST
from regards_order.report import OrderReport, Outcome
from regards_order.run import OrderRun
from regards_order.transfer import Target, write_small

#: Seconds between two updates of the progress artifact.
PROGRESS_INTERVAL = 1.0


#: The setting that gives Prefect's own task-run log level (see tidy_run_logs).
TASK_RUN_LEVEL = "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL"


class _NoTracebackForExpectedFailures(logging.Filter):
    """An answer of the server or the target (a RegardsOrderError) is said in its line; a
    traceback would only bury it. Prefect also logs a failed state returned by a task with
    an empty exception ("NoneType: None"): dropped too. A bug keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = record.exc_info
        if info and (info[1] is None or isinstance(info[1], RegardsOrderError)):
            record.exc_info = None
            record.exc_text = None
        return True


_EXPECTED = _NoTracebackForExpectedFailures()


def tidy_run_logs() -> None:
    """A run's logs in Prefect: one line per file (logged by the run), so Prefect's own
    "Finished in state Completed()" line of each task run stays out unless its level was set
    (warnings and errors stay); and no traceback for an expected failure."""
    if not os.environ.get(TASK_RUN_LEVEL):
        logging.getLogger("prefect.task_runs").setLevel(logging.WARNING)
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logger = logging.getLogger(name)
        if _EXPECTED not in logger.filters:
            logger.addFilter(_EXPECTED)


class Progress:
    """The progress artifact of a run: the share of known files that settled. Its updates go
    out beside the run's loop, never holding up the start of the next transfers."""

    def __init__(self, run: OrderRun, artifact: UUID) -> None:
        self.run = run
        self.artifact = artifact
        self._shown: tuple[int, int] = (0, 0)
        self._shown_at = time.monotonic()
        self._sending: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, run: OrderRun) -> Progress:
        """Create the artifact, at 0 %."""
        description = f"Order {run.order_id}: files done"
        return cls(run, await acreate_progress_artifact(0.0, description=description))

    def update(self) -> None:
        """Show the current share, if it changed, at most every PROGRESS_INTERVAL seconds (the
        update goes out meanwhile; one at a time)."""
        sending = self._sending is not None and not self._sending.done()
        if not sending and time.monotonic() - self._shown_at >= PROGRESS_INTERVAL:
            self._sending = asyncio.get_running_loop().create_task(self._show())

    async def final(self) -> None:
        """Show the share the run ended with."""
        if self._sending is not None:
            await self._sending
        await self._show()

    async def _show(self) -> None:
        delivery = self.run.delivery
        now_shown = (delivery.settled, delivery.known)
        if now_shown != self._shown:
            settled, known = now_shown
            await aupdate_progress_artifact(self.artifact, 100.0 * settled / max(known, 1))
        self._shown, self._shown_at = now_shown, time.monotonic()


async def publish(report: OrderReport, progress: Progress, destination: Target) -> None:
    """The final progress, the table of every file's outcome, and `MD5SUMS` at the target's
    root: what `md5sum -c` checks, one line per verified file of the order, so that anyone can
    check a delivery without this tool. Replaced atomically at each run."""
    await progress.final()
    verified = [f for f in report.files if f.outcome is not Outcome.FAILED and f.md5]
    if verified:
        # Names are single path components under the root: `<md5>  <name>`.
        lines = "".join(f"{f.md5}  {f.target.rsplit('/', 1)[1]}\n" for f in verified)
        try:
            write_small(destination, destination.path(MANIFEST), lines.encode())
        except TargetError as error:
            report.warnings.append(f"{MANIFEST} could not be written: {error}")
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
