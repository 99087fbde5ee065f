"""The `regards-order` command line: download an order, or run the simulator.

Exit codes: 0 every file of the order is at the target, verified; 1 a file failed or the order
cannot be delivered; 2 a usage or configuration error. Errors are one line on stderr, never a
traceback; the report (`--json`) is the only thing written to stdout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import click
from pydantic import SecretStr, ValidationError

from regards_order.errors import (
    AuthenticationError,
    ConfigurationError,
    RegardsOrderError,
    TransportError,
)
from regards_order.settings import (
    Connection,
    DownloadOptions,
    TaskRunnerKind,
    parse_storage_options,
)
from regards_order.stopping import request_stop

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

    from regards_order.report import OrderReport

# No telemetry from the embedded Prefect server: it cannot reach the internet from most archives'
# download hosts and would log an error; a user may still turn it on.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# One "Finished in state Completed()" line per file costs more than the file when files are
# small; failures, retries and the flow's own progress lines stay. Users may lower it again.
os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL", "WARNING")
# With no API URL, Prefect starts a temporary server in a subprocess that shares our stderr;
# its own logs (tracebacks of its shutdown among them) are not the user's business.
if not os.environ.get("PREFECT_API_URL"):
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "regards-order"
DEMO_SCENARIO = Path(__file__).parent / "simulator" / "scenarios" / "demo.json"


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"{PROG}: error: {message}", err=True)
    raise SystemExit(code)


def _validation_message(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    text = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {text}" if where else text


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="regards-order", prog_name=PROG)
def cli() -> None:
    """Deliver every file of a CNES REGARDS order, verified, to a folder or any fsspec URL."""


def _download_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--host",
            envvar="REGARDS_HOST",
            help="REGARDS base URL, e.g. https://regards.example.org.",
        ),
        click.option(
            "--project", envvar="REGARDS_PROJECT", help="REGARDS project (the OAuth2 scope)."
        ),
        click.option("--username", envvar="REGARDS_USERNAME", help="REGARDS user."),
        click.option(
            "--password",
            envvar="REGARDS_PASSWORD",
            help="Password (prefer REGARDS_PASSWORD or the prompt).",
        ),
        click.option(
            "--token", envvar="REGARDS_TOKEN", help="A ready Bearer token instead of a login."
        ),
        click.option(
            "--client-id",
            envvar="REGARDS_CLIENT_ID",
            default="client",
            show_default=True,
            help="Basic user of the token endpoint.",
        ),
        click.option(
            "--client-secret",
            envvar="REGARDS_CLIENT_SECRET",
            default="secret",
            help="Basic password of the token endpoint (default: secret).",
        ),
        click.option(
            "--target", envvar="REGARDS_TARGET", help="Folder or fsspec URL the files go to."
        ),
        click.option(
            "--concurrency",
            envvar="REGARDS_CONCURRENCY",
            type=int,
            default=4,
            show_default=True,
            help="Files transferred in parallel.",
        ),
        click.option(
            "--poll-interval",
            envvar="REGARDS_POLL_INTERVAL",
            type=float,
            default=5.0,
            show_default=True,
            help="Initial seconds between two looks at the order.",
        ),
        click.option(
            "--max-poll-interval",
            envvar="REGARDS_MAX_POLL_INTERVAL",
            type=float,
            default=120.0,
            show_default=True,
            help="Longest interval between two looks.",
        ),
        click.option(
            "--timeout",
            envvar="REGARDS_TIMEOUT",
            type=float,
            default=None,
            help="Overall deadline in seconds (default: none).",
        ),
        click.option(
            "--page-size",
            envvar="REGARDS_PAGE_SIZE",
            type=int,
            default=500,
            show_default=True,
            help="Files per page of the listing (max 2000).",
        ),
        click.option(
            "--retries",
            envvar="REGARDS_RETRIES",
            type=int,
            default=5,
            show_default=True,
            help="Further attempts of a file after a transient failure.",
        ),
        click.option(
            "--retry-delay",
            envvar="REGARDS_RETRY_DELAY",
            type=float,
            default=2.0,
            show_default=True,
            help="First retry delay in seconds (doubles, with jitter).",
        ),
        click.option(
            "--ca-bundle",
            envvar="REGARDS_CA_BUNDLE",
            help="PEM file of certificate authorities to trust.",
        ),
        click.option(
            "--insecure",
            is_flag=True,
            envvar="REGARDS_INSECURE",
            help="Do not verify the server's TLS certificate.",
        ),
        click.option(
            "--task-runner",
            envvar="REGARDS_TASK_RUNNER",
            type=click.Choice([kind.value for kind in TaskRunnerKind]),
            default=TaskRunnerKind.THREADS.value,
            show_default=True,
            help="Where transfers run: a thread pool here, or the workers of a Dask cluster.",
        ),
        click.option(
            "--dask-address",
            envvar="REGARDS_DASK_ADDRESS",
            help="Scheduler of an existing Dask cluster (default: start a local one).",
        ),
        click.option(
            "--dask-workers",
            envvar="REGARDS_DASK_WORKERS",
            type=int,
            default=2,
            show_default=True,
            help="Worker processes of the local Dask cluster.",
        ),
        click.option(
            "--user-transfer-limit",
            envvar="REGARDS_USER_TRANSFER_LIMIT",
            type=int,
            default=None,
            help="Cap the REGARDS user's transfers across all runs and workers (a Prefect "
            "global concurrency limit).",
        ),
        click.option(
            "--storage-option",
            "storage_option",
            multiple=True,
            metavar="KEY=VALUE",
            help="fsspec option for the target, repeatable (e.g. endpoint_url=https://...; "
            "client_kwargs.region_name=eu-west-3). Values are JSON where they parse as JSON.",
        ),
        click.option(
            "--storage-options",
            "storage_options_json",
            envvar="REGARDS_STORAGE_OPTIONS",
            metavar="JSON",
            help="fsspec options for the target as one JSON object.",
        ),
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            envvar="REGARDS_JSON",
            help="Print the final report as JSON on stdout.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.command()
@click.argument("order_id", type=click.IntRange(min=1))
@_download_options
def download(order_id: int, **values: Any) -> None:
    """Download every file of ORDER_ID to --target, verified."""
    connection, options, target = _settings(values)
    _preflight(order_id, target, connection, options)
    code = _run(order_id, target, connection, options, as_json=values["as_json"])
    raise SystemExit(code)


def _settings(values: dict[str, Any]) -> tuple[Connection, DownloadOptions, str]:
    missing = [name for name in ("host", "project", "target") if not values.get(name)]
    if missing:
        flags = ", ".join(f"--{name} (or REGARDS_{name.upper()})" for name in missing)
        _fail(f"missing {flags}", EXIT_USAGE)
    password = values.get("password")
    if not values.get("token"):
        if not values.get("username"):
            _fail("give --username (and a password) or --token", EXIT_USAGE)
        if password is None:
            if not sys.stdin.isatty():
                _fail("no password: set REGARDS_PASSWORD, give --password, or use --token", 2)
            password = click.prompt("REGARDS password", hide_input=True, err=True)
    try:
        connection = Connection(
            host=values["host"],
            project=values["project"],
            username=values.get("username"),
            password=SecretStr(password) if password is not None else None,
            token=SecretStr(values["token"]) if values.get("token") else None,
            client_id=values["client_id"],
            client_secret=values["client_secret"],
            verify_tls=not values["insecure"],
            ca_bundle=values.get("ca_bundle"),
        )
        options = DownloadOptions(
            concurrency=values["concurrency"],
            poll_interval=values["poll_interval"],
            max_poll_interval=values["max_poll_interval"],
            timeout=values["timeout"],
            page_size=values["page_size"],
            retries=values["retries"],
            retry_delay=values["retry_delay"],
            task_runner=TaskRunnerKind(values["task_runner"]),
            dask_address=values.get("dask_address"),
            dask_workers=values["dask_workers"],
            user_transfer_limit=values.get("user_transfer_limit"),
            storage_options=parse_storage_options(
                list(values["storage_option"]), values.get("storage_options_json")
            ),
        )
    except ValidationError as error:
        _fail(_validation_message(error), EXIT_USAGE)
    except ValueError as error:
        _fail(str(error), EXIT_USAGE)
    if connection.ca_bundle and not Path(connection.ca_bundle).is_file():
        _fail(f"--ca-bundle {connection.ca_bundle}: no such file", EXIT_USAGE)
    return connection, options, values["target"]


def _preflight(
    order_id: int, target: str, connection: Connection, options: DownloadOptions
) -> None:
    """Fail fast, before starting Prefect, on what cannot work: a bad target, credentials the
    server refuses, an order that is not the user's or no longer exists. Passing trouble (a
    server error) is left to the flow, which retries it."""
    from regards_order.client import shared_client
    from regards_order.transfer import open_target

    try:
        open_target(target, options.storage_options).check()
    except ConfigurationError as error:
        _fail(str(error), EXIT_USAGE)
    except RegardsOrderError as error:
        _fail(str(error), EXIT_FAILED)
    client = shared_client(connection)
    try:
        client.check_credentials()
        order = client.get_order(order_id)
    except AuthenticationError as error:
        _fail(f"authentication failed: {error}", EXIT_USAGE)
    except TransportError as error:
        # Refused, unknown host, bad certificate: at the very start, a wrong setting far more
        # often than a passing fault.
        _fail(str(error), EXIT_FAILED)
    except RegardsOrderError as error:
        if not error.retryable:
            _fail(str(error), EXIT_FAILED)
        return
    if order.status.files_gone:
        _fail(f"order {order_id} is {order.status}: its files are gone from the server", 1)


def _quiet_tracebacks() -> None:
    """Keep Prefect's log lines but drop the tracebacks it attaches to them.

    The command line reports every failure in one line of its own; a traceback on the console
    is noise to a user, and the Prefect API still records the whole story.
    """

    def drop_traceback(record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True

    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.addFilter(drop_traceback)


def _run(
    order_id: int, target: str, connection: Connection, options: DownloadOptions, *, as_json: bool
) -> int:
    from flows.download_order import download_order
    from regards_order.report import DeliveryIncomplete, OrderReport

    _quiet_tracebacks()
    stopped_by = _stop_on_signals()
    run: Coroutine[Any, Any, State[OrderReport]] = download_order(  # type: ignore[assignment]
        order_id=order_id,
        target=target,
        connection=connection,
        options=options,
        return_state=True,
    )
    state = _in_worker_thread(run)
    result = state.result(raise_on_failure=False)
    if stopped_by:
        if isinstance(result, DeliveryIncomplete):
            _emit(result.report, as_json)
            click.echo(f"{PROG}: {result.report.summary()}", err=True)
        return 128 + stopped_by[0]
    if isinstance(result, OrderReport):
        _emit(result, as_json)
        click.echo(result.summary(), err=True)
        return EXIT_OK
    if isinstance(result, DeliveryIncomplete):
        _emit(result.report, as_json)
        click.echo(f"{PROG}: {result.report.summary()}", err=True)
        return EXIT_FAILED
    if isinstance(result, ConfigurationError | AuthenticationError):
        _fail(str(result), EXIT_USAGE)
    if isinstance(result, RegardsOrderError):
        _fail(str(result), EXIT_FAILED)
    message = str(result) if isinstance(result, BaseException) else state.message
    _fail(f"the download flow failed: {message}", EXIT_FAILED)


def _in_worker_thread(run: Coroutine[Any, Any, State[OrderReport]]) -> State[OrderReport]:
    """Run the flow off the main thread, so that SIGTERM and Ctrl-C reach our handlers
    (Prefect takes over SIGTERM for flows run on the main thread and crashes the run)."""
    outcome: list[State[OrderReport] | BaseException] = []

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
            os._exit(128 + signum)
        received.append(signum)
        request_stop()
        name = signal.Signals(signum).name
        click.echo(f"{PROG}: {name}: stopping cleanly; send it again to quit at once", err=True)

    for each in (signal.SIGTERM, signal.SIGINT):
        signal.signal(each, on_signal)
    return received


def _emit(report: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.model_dump(mode="json", by_alias=True), indent=2))


@cli.command()
@click.option(
    "--scenario",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=DEMO_SCENARIO,
    help="Scenario JSON file (default: the bundled demo).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
def simulate(scenario: Path, port: int, bind: str) -> None:
    """Run the REGARDS simulator alone, until SIGTERM or Ctrl-C."""
    from regards_order.simulator import load_scenario
    from regards_order.simulator.server import serve

    try:
        loaded = load_scenario(scenario)
    except (ValueError, OSError) as error:
        _fail(f"scenario {scenario}: {error}", EXIT_USAGE)
    try:
        serve(loaded, bind, port)
    except OSError as error:
        _fail(f"cannot listen on {bind}:{port}: {error.strerror or error}", EXIT_USAGE)


@cli.command()
@click.option("--target", default="./regards-demo", show_default=True, help="Where the files go.")
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON on stdout.")
def demo(target: str, as_json: bool) -> None:
    """Run the real flow against the bundled simulator (order 1234) into --target."""
    from regards_order.simulator import Simulator, load_scenario

    scenario = load_scenario(DEMO_SCENARIO)
    with Simulator(scenario) as simulator:
        click.echo(f"REGARDS simulator at {simulator.url}, downloading order 1234", err=True)
        connection = Connection(
            host=simulator.url,
            project=scenario.project,
            username=scenario.users[0].username,
            password=SecretStr(scenario.users[0].password or ""),
        )
        options = DownloadOptions(poll_interval=0.2, max_poll_interval=2.0, retry_delay=0.2)
        code = _run(1234, target, connection, options, as_json=as_json)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command line and return its exit code."""
    try:
        cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        click.echo(f"{PROG}: error: {error.format_message()}", err=True)
        return EXIT_USAGE if isinstance(error, click.UsageError) else EXIT_FAILED
    except click.exceptions.Abort:
        click.echo(f"{PROG}: interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo(f"{PROG}: interrupted", err=True)
        return 130
    except SystemExit as leaving:
        return leaving.code if isinstance(leaving.code, int) else EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
