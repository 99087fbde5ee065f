"""The window of a subscription: what is new since its last successful run.

A query may hold `{since}` and `{until}`: each run fills them with the ISO 8601 ends of its
window, from the end of the last successful run's window (kept in a Prefect Variable named
after the deployment) to now; the first run starts at its `since` parameter. A run that
ordered and did not finish keeps its window for the next run, which then finds the order it
created (the target's record of requests) and resumes it, instead of ordering it again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prefect.runtime import deployment
from prefect.variables import Variable

from regards_order.errors import ConfigurationError


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime
    variable: str | None  # where the deployment keeps it; None outside a deployment


def _variable_name() -> str | None:
    name = deployment.name
    if not name:
        return None
    return "regards-order-window-" + re.sub(r"[^a-z0-9_-]+", "-", str(name).lower()).strip("-")


def _moment(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(f"{what} {text!r} is not an ISO 8601 date") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def open_window(since: str) -> Window:
    """This run's window: a window left unfinished, else from the last one's end (or `since`,
    for the first run) to now."""
    variable = _variable_name()
    stored: Any = await Variable.aget(variable) if variable else None
    window, keep = choose_window(stored, since, datetime.now(UTC), variable)
    if keep is not None:
        await _keep(window, keep)
    return window


def choose_window(
    stored: object, since: str, now: datetime, variable: str | None
) -> tuple[Window, dict[str, object] | None]:
    """The window a run takes, from what the Variable holds, and what to keep in it now
    (None: it holds it already)."""
    kept: dict[str, Any] = stored if isinstance(stored, dict) else {}
    pending, done = kept.get("pending"), kept.get("done")
    if isinstance(pending, dict):
        left = Window(
            _moment(pending["since"], "since"), _moment(pending["until"], "until"), variable
        )
        return left, None
    if done:
        start = _moment(str(done), "the last window's end")
    elif since:
        start = _moment(since, "since")
    else:
        raise ConfigurationError(
            "the queries hold {since}: give the first window's start (since, ISO 8601)"
        )
    window = Window(start, max(now, start), variable)
    return window, {"done": done, "pending": _ends(window)}


async def close_window(window: Window) -> None:
    """The window was delivered whole: the next run starts where it ended."""
    await _keep(window, closed(window))


def closed(window: Window) -> dict[str, object]:
    """What the Variable keeps once `window` is delivered whole."""
    return {"done": window.until.isoformat(), "pending": None}


def _ends(window: Window) -> dict[str, str]:
    return {"since": window.since.isoformat(), "until": window.until.isoformat()}


async def _keep(window: Window, value: dict[str, object]) -> None:
    if window.variable is not None:
        await Variable.aset(window.variable, value, overwrite=True)
