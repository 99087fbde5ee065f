"""The Prefect task that delivers one file, retried when what went wrong is transient."""

from __future__ import annotations

from typing import Any

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import TaskRunContext
from prefect.runtime import task_run

from regards_order.client import shared_client
from regards_order.delivery import fetch_file
from regards_order.errors import QuotaExceeded, RegardsOrderError, is_retryable
from regards_order.models import OrderFile
from regards_order.report import FileOutcome
from regards_order.settings import Connection
from regards_order.stopping import pause
from regards_order.transfer import open_target
from tasks.limits import quiet_everyone, user_slot

#: Longest wait a server's Retry-After may impose on one attempt.
MAX_RETRY_AFTER_SECONDS = 600.0


def retry_on_transient(task: Task[Any, Any], run: TaskRun, state: State[Any]) -> bool:
    """Retry a failed transfer only when the library says the error may pass."""
    try:
        state.result()
    except Exception as error:
        return is_retryable(error)
    return False


@task(
    name="transfer-file",
    task_run_name="transfer-{name}",
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_on_transient,
)
def transfer_file(
    connection: Connection,
    file: OrderFile,
    name: str,
    target: str,
    storage_options: dict[str, Any],
    user_limit: str | None = None,
    refetch: bool = False,
    listed: bool = False,
) -> FileOutcome:
    """Stream one file to the target, verify its MD5 and commit it; skip it if already there,
    unless `refetch`. `listed`: the server listed it in this run (see fetch_file)."""
    attempt = task_run.run_count
    try:
        with user_slot(user_limit):
            return fetch_file(
                shared_client(connection),
                open_target(target, storage_options),
                file,
                name,
                attempts=attempt,
                refetch=refetch,
                listed=listed,
            )
    except RegardsOrderError as error:
        error.attempts = attempt
        if is_retryable(error):
            _say_retrying(name, error, attempt)
        if error.retryable and error.retry_after:
            # Honour the server's Retry-After before Prefect schedules the next attempt, and
            # make every other transfer of the user wait as long when they share a limit.
            wait = min(error.retry_after, MAX_RETRY_AFTER_SECONDS)
            if isinstance(error, QuotaExceeded):
                quiet_everyone(user_limit, wait)
            pause(wait)
        raise


def _say_retrying(name: str, error: RegardsOrderError, attempt: int) -> None:
    """A warning for each attempt that will be tried again (Prefect's own line is INFO, which
    the command line keeps quiet), so that a struggling transfer shows while it struggles."""
    context = TaskRunContext.get()
    retries = context.task.retries if context is not None else 0
    if attempt <= retries:
        get_run_logger().warning(
            "%s: attempt %d of %d failed (%s); trying again", name, attempt, retries + 1, error
        )
