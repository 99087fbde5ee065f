"""`regards-order download`: one order delivered from the command line, by the download-order
flow, with the report on stdout (`--json`) whenever the run got as far as the server.

Exit codes: 0 every file of the order is at the target, verified; 1 a file failed or the order
cannot be delivered; 2 a usage or configuration error (wrong credentials among them); 128+N
stopped by signal N. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click
from pydantic import SecretStr, ValidationError

from regards_order.cli import options as cli_options
from regards_order.cli.display import close_view, mode_for, showing
from regards_order.cli.server import ServerUnavailable, TemporaryServer
from regards_order.client import shared_client
from regards_order.delivery import Delivery
from regards_order.errors import (
    AuthenticationError,
    ConfigurationError,
    RegardsOrderError,
    TransportError,
)
from regards_order.record import DeliveryRecord
from regards_order.report import OrderCreated, OrderReport
from regards_order.run import FILE_LINE, OrderRun
from regards_order.settings import Connection, DownloadOptions
from regards_order.stopping import request_stop
from regards_order.transfer import Target, open_target

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "regards-order"


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr, and out with `code`."""
    click.echo(f"{PROG}: error: {message}", err=True)
    raise SystemExit(code)


def _validation_message(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    text = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {text}" if where else text


def connection_from(values: dict[str, Any]) -> Connection:
    """The connection the options and variables describe (exit 2 when they do not)."""
    missing = [f"{s.flag} (or {s.envvar})" for s in cli_options.missing((Connection,), values)]
    if missing:
        fail("missing " + ", ".join(missing), EXIT_USAGE)
    given = cli_options.model_values(Connection, values)
    credentials = ("token", "password", "token_block", "password_block")
    if not any(given.get(name) for name in credentials):
        if not given.get("username"):
            fail("give --username (and a password) or --token", EXIT_USAGE)
        if not sys.stdin.isatty():
            fail("no password: set REGARDS_PASSWORD, give --password, or use --token", EXIT_USAGE)
        given["password"] = SecretStr(click.prompt("REGARDS password", hide_input=True, err=True))
    try:
        connection = Connection.model_validate(given)
    except ValidationError as error:
        fail(_validation_message(error), EXIT_USAGE)
    if connection.ca_bundle and not Path(connection.ca_bundle).is_file():
        fail(f"--ca-bundle {connection.ca_bundle}: no such file", EXIT_USAGE)
    return connection


def download_options_from(values: dict[str, Any]) -> DownloadOptions:
    """The download options the options and variables describe (exit 2 when invalid)."""
    try:
        return DownloadOptions.model_validate(cli_options.model_values(DownloadOptions, values))
    except ValidationError as error:
        fail(_validation_message(error), EXIT_USAGE)
    except ValueError as error:
        fail(str(error), EXIT_USAGE)


def open_checked_target(url: str | None, options: DownloadOptions) -> Target:
    """The target, checked now: usage errors exit 2, a target that cannot take files 1."""
    if not url:
        fail("missing --target (or REGARDS_TARGET)", EXIT_USAGE)
    try:
        destination = open_target(url, options.storage_options)
        destination.check()
    except ConfigurationError as error:
        fail(str(error), EXIT_USAGE)
    except RegardsOrderError as error:
        fail(str(error), EXIT_FAILED)
    return destination


def download(
    order_id: int, target: str | None, values: dict[str, Any], as_json: bool, quiet: bool = False
) -> int:
    """The whole command; returns its exit code."""
    connection = connection_from(values)
    options = download_options_from(values)
    # First of all: the temporary Prefect server starts while the rest gets ready.
    server = None if os.environ.get("PREFECT_API_URL") else TemporaryServer.start()
    try:
        destination = open_checked_target(target, options)
        assert target is not None
        refused = preflight(order_id, destination, connection, options)
        if refused is not None:
            return emit(refused, as_json)
        return run_flow(order_id, target, connection, options, as_json, server, quiet=quiet)
    finally:
        if server is not None:
            server.stop()


def _run_of(order_id: int, destination: Target, options: DownloadOptions) -> OrderRun:
    try:
        delivery = Delivery(DeliveryRecord(destination, order_id))
    except RegardsOrderError as error:
        fail(str(error), EXIT_FAILED)
    return OrderRun(order_id, delivery, options)


def preflight(
    order_id: int, destination: Target, connection: Connection, options: DownloadOptions
) -> OrderReport | None:
    """Fail fast, before Prefect runs anything: credentials the server refuses (exit 2), a
    server out of reach (exit 1), an order that is not the user's, unknown or gone (a report).
    Passing trouble (a server error) is left to the flow, which retries it."""
    client = shared_client(connection)
    try:
        client.check_credentials()
        order = client.get_order(order_id)
    except AuthenticationError as error:
        fail(f"authentication failed: {error}", EXIT_USAGE)
    except TransportError as error:
        # Refused, unknown host, bad certificate: at the very start, a wrong setting far more
        # often than a passing fault.
        fail(str(error), EXIT_FAILED)
    except RegardsOrderError as error:
        if error.retryable:
            return None
        run = _run_of(order_id, destination, options)
        run.look_failed(error)
        return run.report()
    if not order.status.files_gone:
        return None
    run = _run_of(order_id, destination, options)
    run.looked(order, [])
    return run.report()


def run_flow(
    order_id: int,
    target: str,
    connection: Connection,
    options: DownloadOptions,
    as_json: bool,
    server: TemporaryServer | None,
    *,
    quiet: bool = False,
    order: OrderCreated | None = None,
) -> int:
    """Run the download-order flow, showing how it goes, and report how it ended (with the
    `order` it delivers when a catalogue request created it)."""
    stopped_by = _stop_on_signals()
    try:
        if server is not None:
            server.wait_ready()
        from regards_order.flows.download_order import download_order

        _quiet_tracebacks()
        run = download_order(
            order_id=order_id,
            target=target,
            connection=connection,
            options=options,
            return_state=True,
        )
        with showing(order_id, mode_for(quiet)):
            state: Any = _in_worker_thread(run)  # type: ignore[arg-type]
        result = state.result(raise_on_failure=False)
    except ServerUnavailable as error:
        result = error
    except Exception as error:
        result = RegardsOrderError(f"the download flow could not run: {error}")
    if isinstance(result, ConfigurationError | AuthenticationError):
        fail(str(result), EXIT_USAGE)
    if not isinstance(result, OrderReport):
        run_of = _run_of(order_id, open_target(target, options.storage_options), options)
        run_of.broke(str(result) or type(result).__name__)
        result = run_of.report()
    if order is not None:
        result = result.model_copy(update={"order": order})
    code = emit(result, as_json)
    return 128 + stopped_by[0] if stopped_by else code


def emit(report: OrderReport, as_json: bool) -> int:
    """Print the report (JSON on stdout with --json, its summary on stderr); its exit code."""
    if as_json:
        click.echo(json.dumps(report.model_dump(mode="json", by_alias=True), indent=2))
    if report.ok:
        click.echo(report.summary(), err=True)
        return EXIT_OK
    click.echo(f"{PROG}: {report.summary()}", err=True)
    return EXIT_FAILED


def _quiet_tracebacks() -> None:
    """Keep Prefect's log lines but drop the tracebacks it attaches to them: the command line
    reports every failure in one line of its own, and the Prefect API keeps the whole story.
    The line of each file delivered stays off the console too."""

    def drop_traceback(record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        # One line per file delivered is for the Prefect UI; the console shows the failures.
        return not (getattr(record, FILE_LINE, False) and record.levelno < logging.WARNING)

    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.addFilter(drop_traceback)


def _in_worker_thread(run: Coroutine[Any, Any, Any]) -> Any:
    """Run the flow off the main thread, so that SIGTERM and Ctrl-C reach our handlers
    (Prefect takes over SIGTERM for flows run on the main thread and crashes the run)."""
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append(asyncio.run(run))
        except BaseException as error:  # handed to the main thread as it is
            outcome.append(error)

    worker = threading.Thread(target=work, name="regards-order-flow")
    worker.start()
    while worker.is_alive():
        worker.join(0.2)  # short waits: the main thread must stay free to take signals
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _stop_on_signals() -> list[int]:
    """SIGTERM or Ctrl-C: stop cleanly (transfers abandoned, partials removed, record saved,
    report printed); a second one quits at once. Returns the list the signal is noted in."""
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if received:
            close_view()
            os._exit(128 + signum)
        received.append(signum)
        request_stop()
        name = signal.Signals(signum).name
        # To the current sys.stderr: while the live display runs it is the display's, which
        # prints the line above the view (click's own stderr would write through it).
        message = f"{PROG}: {name}: stopping cleanly; send it again to quit at once"
        click.echo(message, file=sys.stderr)

    for each in (signal.SIGTERM, signal.SIGINT):
        signal.signal(each, on_signal)
    return received
