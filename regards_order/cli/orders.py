"""`regards-order orders` and `regards-order status`: what the server says of the user's
orders, and of one order in detail (its files in every state, and what a target's delivery
record holds of it).

Both are reads: they never write anywhere, and they import nothing of Prefect, so they answer
in a fraction of a second. Exit codes are download's: 0 the read succeeded (an EXPIRED order
included), 1 the server refused or could not be reached, 2 a usage error (wrong credentials
among them). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

import click

from regards_order.cli.download import EXIT_FAILED, EXIT_OK, EXIT_USAGE, PROG, connection_from
from regards_order.cli.options import CONNECTION_MODELS, add_options, target_option
from regards_order.client import RegardsClient
from regards_order.errors import (
    AuthenticationError,
    ConfigurationError,
    EndpointAbsent,
    RegardsOrderError,
)
from regards_order.models import Order, OrderStatus, ServerFile, ServerFileState, printable
from regards_order.record import DeliveryRecord
from regards_order.report import Outcome
from regards_order.settings import check_no_credentials, parse_storage_options
from regards_order.transfer import is_verified, open_target

#: The states of a file the server will not deliver as it stands.
ERROR_STATES = frozenset(
    {ServerFileState.ERROR, ServerFileState.PROCESSING_ERROR, ServerFileState.DOWNLOAD_ERROR}
)

#: Files in error shown one per line by the table (the JSON document holds them all).
ERRORS_SHOWN = 20


class ReadFailed(Exception):
    """A read the server refused or did not answer: its one-line message and exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@contextmanager
def reading(values: dict[str, Any]) -> Iterator[RegardsClient]:
    """A client of the connection the options describe; the library's errors become
    ReadFailed with download's exit codes."""
    connection = connection_from(values)
    try:
        client = RegardsClient(connection)
    except ConfigurationError as error:
        raise ReadFailed(str(error), EXIT_USAGE) from None
    try:
        yield client
    except AuthenticationError as error:
        raise ReadFailed(f"authentication failed: {error}", EXIT_USAGE) from None
    except ConfigurationError as error:
        raise ReadFailed(str(error), EXIT_USAGE) from None
    except RegardsOrderError as error:
        raise ReadFailed(str(error), EXIT_FAILED) from None
    finally:
        client.close()


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"{PROG}: error: {printable(message)}", err=True)
    raise SystemExit(code)


# -- orders ---------------------------------------------------------------------------------


def order_fields(order: Order) -> dict[str, Any]:
    """The order as the JSON output gives it."""
    return {
        "id": order.id,
        "label": order.label,
        "status": order.status.value,
        "percent_completed": order.percent_completed,
        "available_files_count": order.available_files_count,
        "files_in_error_count": order.files_in_error_count,
        "expiration_date": _iso(order.expiration_date),
        "waiting_for_user": order.waiting_for_user,
    }


def list_orders(client: RegardsClient, statuses: Sequence[OrderStatus]) -> list[Order]:
    """The user's orders of `statuses` (all when none), newest first.

    The server pages them newest first already; sorting by id (REGARDS numbers orders as it
    creates them) keeps that true of a server that would not."""
    wanted = set(statuses)
    found = [order for order in client.iter_orders() if not wanted or order.status in wanted]
    return sorted(found, key=lambda order: order.id, reverse=True)


def orders_table(orders: Sequence[Order]) -> str:
    """The orders as a plain text table, one row each."""
    header = ("ID", "LABEL", "STATUS", "RESTORED", "AVAILABLE", "IN ERROR", "EXPIRES", "WAITING")
    rows = [
        (
            str(order.id),
            printable(order.label or ""),
            order.status.value,
            _percent(order.percent_completed),
            _count(order.available_files_count),
            str(order.files_in_error_count),
            _when(order.expiration_date),
            _yes_no(order.waiting_for_user),
        )
        for order in orders
    ]
    # Numbers read best right-aligned: id and the three counts.
    return _table(header, rows, right=(0, 3, 4, 5))


@click.command(name="orders")
@add_options(CONNECTION_MODELS)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in OrderStatus if s is not OrderStatus.UNKNOWN], False),
    help="Only the orders of this status (repeatable, any case).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the orders as a JSON list on stdout.")
def orders_command(statuses: tuple[str, ...], as_json: bool, **values: Any) -> None:
    """List the user's orders, newest first."""
    try:
        with reading(values) as client:
            found = list_orders(client, [OrderStatus(s.upper()) for s in statuses])
    except ReadFailed as failed:
        _fail(failed.message, failed.code)
    if as_json:
        click.echo(json.dumps([order_fields(order) for order in found], indent=2))
    elif found:
        click.echo(orders_table(found))
    else:
        click.echo("no orders" + (" of status " + ", ".join(statuses) if statuses else ""))
    raise SystemExit(EXIT_OK)


# -- status ---------------------------------------------------------------------------------


def server_files(client: RegardsClient, order: Order) -> list[ServerFile] | None:
    """Every file of the order in any state, or None where the server does not list them."""
    if not order.dataset_task_ids:
        return None
    try:
        return [
            file
            for task_id in order.dataset_task_ids
            for file in client.iter_order_files(order.id, task_id)
        ]
    except EndpointAbsent:
        return None


def files_part(files: list[ServerFile] | None) -> dict[str, Any]:
    """The document's account of the order's files on the server."""
    if files is None:
        return {"listed": False, "counts": None, "in_error": None}
    counts = Counter(file.state.value for file in files)
    in_error = [
        {
            "id": file.id,
            "filename": file.filename,
            "state": file.state.value,
            "download_error": file.download_error,
        }
        for file in sorted(files, key=lambda file: file.id)
        if file.state in ERROR_STATES
    ]
    return {"listed": True, "total": len(files), "counts": dict(sorted(counts.items())),
            "in_error": in_error}  # fmt: skip


def target_part(order_id: int, url: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """What the delivery record at `url` holds of the order, each file it recorded as
    delivered checked as download checks it (size, then MD5). Reads only."""
    try:
        target = open_target(url, storage_options)
    except ConfigurationError as error:
        raise ReadFailed(str(error), EXIT_USAGE) from None
    record = DeliveryRecord(target, order_id)
    try:
        states = record.load()
        verified = sum(
            1
            for state in states.values()
            if state.file.verification_problem() is None
            and state.file.checksum is not None
            and is_verified(target, target.path(state.name), state.file.checksum, state.file.size)
        )
    except RegardsOrderError as error:
        raise ReadFailed(str(error), EXIT_FAILED) from None
    except OSError as error:
        raise ReadFailed(f"target {url}: {error}", EXIT_FAILED) from None
    outcomes = Counter(state.outcome for state in states.values())
    return {
        "url": url,
        "record": target.url(record.path),
        "recorded": len(states),
        "verified": verified,
        "failed": outcomes[Outcome.FAILED],
    }


def status_document(
    client: RegardsClient, order_id: int, target: str | None, storage_options: dict[str, Any]
) -> dict[str, Any]:
    """Everything `status` says of one order."""
    order = client.get_order(order_id)
    document: dict[str, Any] = {"ok": True, "order": order_fields(order)}
    document["order"]["owner"] = order.owner
    document["order"]["creation_date"] = _iso(order.creation_date)
    document["files"] = files_part(server_files(client, order))
    if target:
        document["target"] = target_part(order_id, target, storage_options)
    return document


def status_text(document: dict[str, Any]) -> str:
    """The document as a person reads it."""
    order = document["order"]
    label = f' "{printable(order["label"])}"' if order["label"] else ""
    lines = [
        f"order {order['id']}{label}: {order['status']}",
        f"  restored         {_percent(order['percent_completed'])}",
        f"  files available  {_count(order['available_files_count'])}",
        f"  files in error   {order['files_in_error_count']}",
        f"  waiting for you  {_yes_no(order['waiting_for_user'])}",
        f"  expires          {_when(_parsed(order['expiration_date'])) or '-'}",
    ]
    files = document["files"]
    if not files["listed"]:
        lines.append("files: the server does not list every file of this order")
    else:
        counts = ", ".join(f"{count} {state}" for state, count in files["counts"].items())
        lines.append(f"files on the server: {files['total']}" + (f" ({counts})" if counts else ""))
        errors = files["in_error"]
        if errors:
            lines.append(f"files in an error state: {len(errors)}")
            rows = [
                (str(e["id"]), printable(e["filename"]), e["state"],
                 printable(" ".join((e["download_error"] or "").split())))
                for e in errors[:ERRORS_SHOWN]
            ]  # fmt: skip
            lines += ["  " + line for line in _table(None, rows, right=(0,)).splitlines()]
            if len(errors) > ERRORS_SHOWN:
                lines.append(f"  ... and {len(errors) - ERRORS_SHOWN} more (--json lists all)")
    target = document.get("target")
    if target is not None:
        lines.append(
            f"at {target['url']}: {target['verified']} verified of {target['recorded']} files "
            f"in its record" + (f", {target['failed']} failed" if target["failed"] else "")
        )
    return "\n".join(lines)


@click.command(name="status")
@click.argument("order_id", type=click.IntRange(min=1))
@add_options(CONNECTION_MODELS)
@target_option("Also count the files verified there, per its delivery record (read only).")
@click.option(
    "--storage-options",
    metavar="JSON",
    envvar="REGARDS_STORAGE_OPTIONS",
    show_envvar=True,
    help="Options passed to fsspec for the target, as download takes them.",
)
@click.option(
    "--storage-option", "storage_pairs", multiple=True, metavar="KEY=VALUE",
    help="One storage option, repeatable (values are JSON where they parse as JSON).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON on stdout.")
def status_command(
    order_id: int,
    target: str | None,
    storage_options: str | None,
    storage_pairs: tuple[str, ...],
    as_json: bool,
    **values: Any,
) -> None:
    """Show one order in detail: its files on the server and, with --target, at the target."""
    try:
        options = parse_storage_options(list(storage_pairs), storage_options)
        check_no_credentials(options)
    except ValueError as error:
        _fail(str(error), EXIT_USAGE)
    try:
        with reading(values) as client:
            document = status_document(client, order_id, target, options)
    except ReadFailed as failed:
        if as_json:
            problem = {"ok": False, "order_id": order_id, "problem": printable(failed.message)}
            click.echo(json.dumps(problem, indent=2))
        _fail(failed.message, failed.code)
    click.echo(json.dumps(document, indent=2) if as_json else status_text(document))
    raise SystemExit(EXIT_OK)


# -- formatting -----------------------------------------------------------------------------


def _table(
    header: Sequence[str] | None, rows: Sequence[Sequence[str]], right: Sequence[int] = ()
) -> str:
    """Columns padded to their widest cell, two spaces apart; no colour, no box drawing, so
    that it reads the same in a terminal, a file and a pipe."""
    every = ([header] if header else []) + [list(row) for row in rows]
    widths = [max(len(row[i]) for row in every) for i in range(len(every[0]))]
    lines = []
    for row in every:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _parsed(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is not None:
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M")


def _percent(value: int | None) -> str:
    return "" if value is None else f"{value}%"


def _count(value: int | None) -> str:
    return "" if value is None else str(value)


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")
