"""The Prefect task that delivers one file, retried when what went wrong is transient."""

from __future__ import annotations

from typing import Any

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import TaskRunContext
from prefect.runtime import task_run
from prefect.states import Failed

from regards_order.client import shared_client
from regards_order.delivery import Transfer, fetch_file
from regards_order.errors import QuotaExceeded, RegardsOrderError
from regards_order.report import FileOutcome, Outcome
from regards_order.settings import Connection
from regards_order.stopping import pause, stop_requested
from regards_order.tasks.limits import quiet_everyone, user_slot
from regards_order.transfer import open_target

#: Longest wait a server's Retry-After may impose on one attempt.
MAX_RETRY_AFTER_SECONDS = 600.0


def retry_on_transient(task: Task[Any, Any], run: TaskRun, state: State[Any]) -> bool:
    """Retry a failed transfer only when its outcome says the failure may pass."""
    outcome = state.data
    return isinstance(outcome, FileOutcome) and outcome.retryable and not stop_requested()


@task(
    name="transfer-file",
    task_run_name="transfer-{name}",
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_on_transient,
)
def transfer_file(
    name: str,
    connection: Connection,
    transfer: Transfer,
    target: str,
    storage_options: dict[str, Any],
    owner: str,
    user_limit: str | None = None,
) -> FileOutcome | State[FileOutcome]:
    """Stream one file to the target, verify its MD5 and commit it (or skip it when it is
    already there and need not be downloaded). A failure is a Failed state whose data is the
    file's outcome, with the attempts made. `name` (the file's name at the target) names the
    task run."""
    attempt = task_run.run_count
    destination = open_target(target, storage_options)
    try:
        with user_slot(user_limit):
            return fetch_file(
                shared_client(connection), destination, transfer, owner=owner, attempts=attempt
            )
    except RegardsOrderError as error:
        failure = error
    if failure.retryable:
        _say_retrying(transfer.name, failure, attempt)
        if failure.retry_after:
            # Honour the server's Retry-After before Prefect schedules the next attempt, and
            # make every other transfer of the user wait as long when they share a limit.
            wait = min(failure.retry_after, MAX_RETRY_AFTER_SECONDS)
            if isinstance(failure, QuotaExceeded):
                quiet_everyone(user_limit, wait)
            pause(wait)
    file = transfer.file
    outcome = FileOutcome.for_file(
        file,
        target=destination.url(destination.path(transfer.name)),
        outcome=Outcome.FAILED,
        attempts=attempt,
        error=str(failure),
        retryable=failure.retryable,
    )
    return Failed(message=f"{transfer.name}: {failure}", data=outcome)


def _say_retrying(name: str, error: RegardsOrderError, attempt: int) -> None:
    """A warning for each attempt that will be tried again (Prefect's own line is INFO, which
    the command line keeps quiet), so that a struggling transfer shows while it struggles."""
    context = TaskRunContext.get()
    retries = context.task.retries if context is not None else 0
    if attempt <= retries and not stop_requested():
        get_run_logger().warning(
            "%s: attempt %d of %d failed (%s); trying again", name, attempt, retries + 1, error
        )
