"""One run's decisions about an order: when to look at it, what to transfer next, when and why
to end, and the report.

No I/O here: the flow feeds in what the server answered and how each transfer ended, and asks
what to do next. Time comes from the clock the run is given, so that tests drive every
decision in milliseconds. The end of the run is decided in one place (`_decide`), as one
`EndReason`; the problems, the exit code and the flow run's state follow from it.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable

from regards_order.delivery import Delivery, Transfer
from regards_order.errors import AccessDenied, NotFound, RegardsOrderError
from regards_order.models import Order, OrderFile, OrderStatus, Quota, ServerFile, ServerFileState
from regards_order.polling import Backoff
from regards_order.progress import WATCH
from regards_order.report import EndReason, FileOutcome, OrderReport, Outcome, files
from regards_order.settings import DownloadOptions
from regards_order.stopping import stop_requested

#: Order expiry closer than this is warned about.
EXPIRY_WARNING_SECONDS = 24 * 3600.0

#: Longest sleep between two checks of a stop request and of the deadline.
STOP_CHECK_SECONDS = 1.0

#: Marks the log record of a file that settled (`extra={FILE_LINE: True}`).
FILE_LINE = "regards_order_file"

Clock = Callable[[], float]


class OrderRun:
    """What one run knows of an order and has decided: looks, transfers, the end."""

    def __init__(
        self,
        order_id: int,
        delivery: Delivery,
        options: DownloadOptions,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        stopped: Callable[[], bool] = stop_requested,
        draw: Clock = random.random,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self.order_id = order_id
        self.delivery = delivery
        self.options = options
        self._clock = clock
        self._wall_clock = wall_clock
        self._stopped = stopped
        self.logger = logger or logging.getLogger(__name__)
        self.pace = Backoff(options.poll_interval, options.max_poll_interval, random=draw)
        start = clock()
        self.deadline = start + options.timeout if options.timeout else math.inf
        self.next_look = start
        self.order: Order | None = None
        #: A permanent answer to a look at the order (403, 404, ...): the run cannot go on.
        self.refusal: RegardsOrderError | None = None
        self.poll_errors = 0
        self.last_error: RegardsOrderError | None = None
        #: The latest look began with nothing to transfer and found nothing new.
        self._looked_idle = False
        self.broken: str | None = None
        #: Transfers at once: the options', or fewer where the server allows fewer.
        self.concurrency = options.concurrency
        self.downloads_left: int | None = None
        #: The server listed every file of the order (its newer endpoint).
        self.whole_known = False
        self.end: EndReason | None = None
        self.warnings: list[str] = []
        self._warned: set[str] = set()

    # -- questions (no state changes) -------------------------------------------------------

    @property
    def going(self) -> bool:
        """The run has not ended."""
        return self.end is None

    @property
    def status(self) -> OrderStatus:
        """The order's status at the latest look (UNKNOWN before the first one)."""
        return self.order.status if self.order is not None else OrderStatus.UNKNOWN

    def look_due(self) -> bool:
        """Whether it is time to look at the order again."""
        return self.going and self._clock() >= self.next_look

    def wake_in(self) -> float:
        """Seconds the flow may sleep before something is due (a look, the deadline, a check
        for a stop request), unless a transfer ends first."""
        now = self._clock()
        return max(0.0, min(self.next_look, self.deadline, now + STOP_CHECK_SECONDS) - now)

    # -- what happened ----------------------------------------------------------------------

    def looked(self, order: Order, listed: list[OrderFile]) -> int:
        """Take in a look at the order and its available files; return the new files."""
        now = self._clock()
        idle_before = self.delivery.idle
        self.order, self.poll_errors, self.last_error = order, 0, None
        new = 0
        if not order.status.files_gone:
            new = self.delivery.discover(listed)
            if not order.status.is_final:
                # The server may serve again what failed on a passing fault (by id, listed or
                # not): while the order runs, those files get another round.
                self.delivery.retry_due(now)
        self._looked_idle = idle_before and self.delivery.idle
        self.next_look = now + (self.pace.reset() if new else self.pace.next())
        left = self.delivery.known - self.delivery.settled
        if self.downloads_left is not None and self.downloads_left < left:
            self.warn(
                "quota",
                f"the user's download quota has {self.downloads_left} downloads left, fewer "
                f"than the {left} files of order {self.order_id} left to deliver",
            )
        WATCH.order_seen(order)
        WATCH.files(*self.delivery.totals())
        self._note(order, new)
        self._decide()
        return new

    def look_failed(self, error: RegardsOrderError) -> None:
        """A look at the order failed: retried later if the error may pass."""
        if not error.retryable:
            self.refusal = error
        else:
            self.poll_errors += 1
            self.last_error = error
            self.next_look = self._clock() + self.pace.next(at_least=error.retry_after or 0.0)
            self.logger.warning("Looking at order %s failed, will retry: %s", self.order_id, error)
        self._decide()

    def next_transfer(self) -> Transfer | None:
        """The next file to start, if the run goes on and a transfer slot is free."""
        if not self.going or self.delivery.in_flight >= self.concurrency:
            return None
        return self.delivery.take()

    def quota_known(self, quota: Quota) -> None:
        """The user's download quota: no more transfers at once than the server allows (it
        answers 429 beyond, which aborts the download), and a warning when fewer downloads are
        left than files (once the order's files are known)."""
        limit = quota.simultaneous_limit
        if limit is not None and limit < self.concurrency:
            self.concurrency = max(limit, 1)
            self.logger.info(
                "The user may download %d files at once: transfers capped at %d", limit, limit
            )
        self.downloads_left = quota.downloads_left

    def whole_order(self, files: list[ServerFile], api_url: str) -> int:
        """Every file of the order as the server has it (see Delivery.know); how many files
        the run did not know."""
        new = self.delivery.know(files, api_url)
        if not self.whole_known:
            waiting = sum(file.state is ServerFileState.PENDING for file in files)
            self.logger.info(
                "Order %s holds %d files in all (%d not restored yet, %d in error)",
                self.order_id,
                len(files),
                waiting,
                sum(file.state.in_error for file in files),
            )
        self.whole_known = True
        WATCH.files(*self.delivery.totals())
        return new

    def settled(self, outcome: FileOutcome) -> None:
        """A transfer ended. A failure that may pass gets another round at a later look
        (at least `max_poll_interval` later) while the order runs."""
        now = self._clock()
        retry_at = now + self.options.max_poll_interval if not self._stopped() else None
        self.delivery.settle(outcome, retry_at=retry_at)
        WATCH.files(*self.delivery.totals())
        self._say(outcome)
        if self.delivery.idle:
            # Look now: the server may release the next suborder, and a final order ends there.
            self.next_look = now
        self._decide()

    def tick(self) -> None:
        """Time passed (the deadline may have come, a stop may have been asked for)."""
        self._decide()

    def broke(self, reason: str) -> None:
        """The pipeline itself failed: the run ends with `reason`."""
        self.broken = reason
        self._decide()

    def warn(self, topic: str, warning: str) -> None:
        """Add a warning to the report (once per topic) and log it."""
        if topic not in self._warned:
            self._warned.add(topic)
            self.warnings.append(warning)
            self.logger.warning(warning)

    # -- the end ----------------------------------------------------------------------------

    def _decide(self) -> None:
        """The one place where the run's end is set."""
        if self.end is None:
            self.end = self._reason()

    def _reason(self) -> EndReason | None:
        if self.broken is not None:
            return EndReason.BROKEN
        if isinstance(self.refusal, AccessDenied):
            return EndReason.FORBIDDEN
        if isinstance(self.refusal, NotFound):
            return EndReason.NOT_FOUND
        if self.refusal is not None or self.poll_errors >= self.options.max_poll_errors:
            return EndReason.UNREADABLE
        if self.status.files_gone:
            return EndReason.GONE
        if self.status.is_final and self.delivery.idle and self._looked_idle:
            return EndReason.COMPLETE
        if self._stopped():
            return EndReason.STOPPED
        if self._clock() >= self.deadline:
            return EndReason.DEADLINE
        return None

    def report(self) -> OrderReport:
        """The run's report: the same every time it is asked for."""
        end = self.end or EndReason.BROKEN
        in_error = self.order.files_in_error_count if self.order is not None else 0
        problems = []
        if end is EndReason.COMPLETE:
            if in_error:
                problems.append(
                    f"{files(in_error)} of order {self.order_id} in error on the server, "
                    "which cannot deliver them"
                )
            elif self.status in (OrderStatus.FAILED, OrderStatus.ERROR):
                problems.append(f"the server ended order {self.order_id} {self.status}")
        else:
            problems.append(self._end_problem(end))
        warnings = list(self.warnings)
        if self.status is OrderStatus.DONE_WITH_WARNING and not in_error:
            warnings.append(
                f"the server ended order {self.order_id} DONE_WITH_WARNING with no file in "
                "error: a download of a file was aborted and the file fetched again"
            )
        if end is EndReason.COMPLETE and not self.delivery.known:
            warnings.append(
                f"the server lists no file of order {self.order_id} and the target has no "
                "record of it: there was nothing to deliver"
            )
        unsettled = problems[0] if problems else "not transferred"
        return OrderReport(
            order_id=self.order_id,
            status=str(self.status),
            end=end,
            files=list(self.delivery.outcomes(unsettled)),
            files_in_error=in_error,
            problems=problems,
            warnings=warnings,
        )

    def _end_problem(self, end: EndReason) -> str:
        if end is EndReason.BROKEN:
            return self.broken or "the run ended before its end was decided"
        if self.refusal is not None:
            return str(self.refusal)
        if end is EndReason.UNREADABLE:
            return (
                f"order {self.order_id} could not be read {self.poll_errors} times in a row: "
                f"{self.last_error}"
            )
        if end is EndReason.GONE:
            return f"order {self.order_id} is {self.status}: its files are gone from the server"
        left = self.delivery.undelivered()
        if end is EndReason.STOPPED:
            return f"interrupted with {files(left)} not delivered"
        last = f" (last error: {self.last_error})" if self.last_error else ""
        return (
            f"the deadline of {self.options.timeout or 0:g} s passed with order "
            f"{self.order_id} {self.status} and {files(left)} known not delivered{last}"
        )

    # -- what the log says -------------------------------------------------------------------

    def _say(self, outcome: FileOutcome) -> None:
        """One line per file as it settles (the command line keeps the good ones off its
        console: they carry FILE_LINE)."""
        attempts = f"{outcome.attempts} attempt" + ("s" if outcome.attempts != 1 else "")
        if outcome.outcome is Outcome.FAILED:
            self.logger.warning(
                "%s: failed after %s: %s", outcome.filename, attempts, outcome.error,
                extra={FILE_LINE: True},
            )  # fmt: skip
        else:
            self.logger.info(
                "%s: %s, %s bytes, %s", outcome.filename, outcome.outcome.value, outcome.size,
                attempts, extra={FILE_LINE: True},
            )  # fmt: skip

    # -- what the looks say -----------------------------------------------------------------

    def _note(self, order: Order, new: int) -> None:
        self.logger.info(
            "Order %s is %s (%s%% restored, %s available, %s in error); %d new files",
            order.id,
            order.status,
            order.percent_completed,
            order.available_files_count,
            order.files_in_error_count,
            new,
        )
        if order.status is OrderStatus.PAUSED:
            self.warn("paused", f"order {order.id} is paused on the server")
        expires = order.expiration_date
        if (
            expires is not None
            and expires.timestamp() - self._wall_clock() < EXPIRY_WARNING_SECONDS
        ):
            self.warn("expires", f"order {order.id} expires at {expires.isoformat()}")
