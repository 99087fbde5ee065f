"""`regards-order order`: order what catalogue queries find, and with a target deliver it.

Everything before the order exists is read and decided here, without Prefect (the search, the
size, the basket); the order is created once per request and target (the target's record of
requests); the delivery is `download`'s, by the download-order flow, and its report gains the
`order` it delivered. Exit codes are `download`'s: 0 done (or, with --dry-run, searched), 1
nothing to order, over the size limit, the basket in the way, refused by the server, or a file
not delivered; 2 a usage or configuration error.
"""

from __future__ import annotations

import json
import os
from typing import Any, NoReturn

import click
from pydantic import ValidationError

from regards_order import catalogue
from regards_order.catalogue import OrderRequest, Selection, human_size
from regards_order.cli.download import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    connection_from,
    download_options_from,
    fail,
    open_checked_target,
    run_flow,
)
from regards_order.cli.server import TemporaryServer
from regards_order.client import RegardsClient, shared_client
from regards_order.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidQuery,
    OrderRefused,
    RegardsOrderError,
    TransportError,
)
from regards_order.report import OrderCreated
from regards_order.transfer import Target


def request_from(
    queries: tuple[str, ...],
    data_types: tuple[str, ...],
    filename_regexp: str | None,
    label: str | None,
    max_size: str | None,
) -> OrderRequest:
    """The request the arguments describe (exit 2 when they do not describe one)."""
    try:
        request = OrderRequest.model_validate(
            {
                "queries": queries,
                "data_types": data_types or ("RAWDATA",),
                "filename_regexp": filename_regexp,
                "label": label,
                "max_size": max_size,
            }
        )
    except ValidationError as error:
        first = error.errors()[0]
        where = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "the request"
        fail(f"{where}: {str(first['msg']).removeprefix('Value error, ')}", EXIT_USAGE)
    except ValueError as error:  # a size spelled wrong
        fail(f"--max-size: {error}", EXIT_USAGE)
    if request.unfilled:
        fail(
            "a query holds {since} or {until}: only a subscription (the order-and-download "
            "deployment) fills them",
            EXIT_USAGE,
        )
    return request


def order(
    request: OrderRequest,
    target: str | None,
    values: dict[str, Any],
    *,
    empty_basket: bool,
    dry_run: bool,
    as_json: bool,
    quiet: bool,
) -> int:
    """The whole command; returns its exit code."""
    connection = connection_from(values)
    options = download_options_from(values)
    delivering = bool(target) and not dry_run
    # First of all, when files are to be delivered: the temporary Prefect server starts while
    # the catalogue is searched.
    server = (
        TemporaryServer.start() if delivering and not os.environ.get("PREFECT_API_URL") else None
    )
    try:
        destination = open_checked_target(target, options) if target else None
        client = shared_client(connection)
        _check_credentials(client)
        created = _recorded(destination, request) if destination and not dry_run else None
        if created is None:
            selection = _plan(client, request)
            if dry_run:
                return _dry_run_done(request, selection, as_json)
            created = _placed(client, request, selection, destination, empty_basket, as_json)
        click.echo(f"order {created.order_id}: {created.status}", err=True)
        if target is None:
            if as_json:
                click.echo(json.dumps(created.model_dump(mode="json"), indent=2))
            else:
                click.echo(str(created.order_id))
            return EXIT_OK
        return run_flow(
            created.order_id,
            target,
            connection,
            options,
            as_json,
            server,
            quiet=quiet,
            order=created,
        )
    finally:
        if server is not None:
            server.stop()


def _recorded(destination: Target, request: OrderRequest) -> OrderCreated | None:
    """The order an earlier run created for this very request, at this target."""
    try:
        return catalogue.recorded(destination, request)
    except RegardsOrderError as error:
        fail(str(error), EXIT_FAILED)


def _placed(
    client: RegardsClient,
    request: OrderRequest,
    selection: Selection,
    destination: Target | None,
    empty_basket: bool,
    as_json: bool,
) -> OrderCreated:
    """Check the size and the basket, then create the order (once per request and target)."""
    problem = _unorderable(request, selection)
    if problem:
        _refuse(problem, selection, as_json)
    try:
        catalogue.check_basket(client, empty_basket)
        return catalogue.place(client, request, selection, destination)
    except OrderRefused as error:
        refusal = " ".join(filter(None, (error.status, error.error_type))) or "invalid"
        said = error.server_message or str(error)
        _refuse(f"the server refused the order ({refusal}): {said}", selection, as_json)
    except RegardsOrderError as error:
        _refuse(str(error), selection, as_json)


def _unorderable(request: OrderRequest, selection: Selection) -> str | None:
    """Why the selection is not to be ordered, if it is not: nothing in it, or too much."""
    if not selection.files:
        return "the queries match no file to order: nothing ordered"
    if selection.exceeds(request.max_size):
        return (
            f"the queries would order {human_size(selection.size)} ({selection.files} files "
            f"of {selection.products} products), over --max-size "
            f"{human_size(request.max_size or 0)}: nothing ordered"
        )
    return None


def _refuse(message: str, selection: Selection, as_json: bool) -> NoReturn:
    """Nothing ordered: with --json a document that says why, and exit 1 with one line."""
    if as_json:
        document = {"ordered": False, "ok": False, "problems": [message], **_counts(selection)}
        click.echo(json.dumps(document, indent=2))
    fail(message, EXIT_FAILED)


def _counts(selection: Selection) -> dict[str, Any]:
    return {
        "products": selection.products,
        "files": selection.files,
        "size": selection.size,
        "unsized_files": selection.unsized_files,
        "found_per_query": list(selection.found_per_query),
    }


def _check_credentials(client: RegardsClient) -> None:
    try:
        client.check_credentials()
    except AuthenticationError as error:
        fail(f"authentication failed: {error}", EXIT_USAGE)
    except RegardsOrderError as error:
        fail(str(error), EXIT_FAILED)


def _plan(client: RegardsClient, request: OrderRequest) -> Selection:
    """What the request selects: a query the catalogue refuses is a usage error."""
    try:
        return catalogue.plan(client, request)
    except (InvalidQuery, ConfigurationError) as error:
        fail(str(error), EXIT_USAGE)
    except TransportError as error:
        fail(str(error), EXIT_FAILED)
    except RegardsOrderError as error:
        fail(f"the catalogue could not be searched: {error}", EXIT_FAILED)


def _dry_run_done(request: OrderRequest, selection: Selection, as_json: bool) -> int:
    """What the request would order, printed; nothing created. Exit 0 if the same command
    without --dry-run would order it, 1 (nothing matches, over --max-size) if it would not."""
    problem = _unorderable(request, selection)
    if as_json:
        document = {
            "ordered": False,
            "ok": problem is None,
            "problems": [problem] if problem else [],
            **_counts(selection),
            "max_size": request.max_size,
            "over_max_size": selection.exceeds(request.max_size),
            "queries": list(request.queries),
        }
        click.echo(json.dumps(document, indent=2))
    if problem:
        fail(f"{problem} (dry run)", EXIT_FAILED)
    unsized = f", {selection.unsized_files} of unknown size" if selection.unsized_files else ""
    line = (
        f"would order {selection.files} files ({human_size(selection.size)}{unsized}) of "
        f"{selection.products} products; dry run: nothing ordered"
    )
    click.echo(f"{PROG}: {line}", err=True)
    return EXIT_OK
