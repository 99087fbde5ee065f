"""Running the download-order flow in the tests' own process, against the session's Prefect
API, and checking what it delivered."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from regards_order.flows.download_order import download_order
from regards_order.report import OrderReport, Outcome
from regards_order.settings import Connection, DownloadOptions
from tests.helpers.scenarios import FAST
from tests.helpers.targets import DeliveryTarget


def run(
    order_id: int,
    target: Path | DeliveryTarget,
    connection: Connection,
    options: DownloadOptions = FAST,
) -> tuple[Any, OrderReport]:
    """Run the flow; return its final state and its report (its data when it failed)."""
    state = run_state(order_id, target, connection, options)
    result = state.result(raise_on_failure=False)
    assert isinstance(result, OrderReport), result
    return state, result


def run_state(
    order_id: int,
    target: Path | DeliveryTarget,
    connection: Connection,
    options: DownloadOptions = FAST,
) -> Any:
    """Run the flow and return its final state."""
    if isinstance(target, DeliveryTarget):
        url = target.url
        options = options.model_copy(update={"storage_options": target.storage_options})
    else:
        url = str(target)
    return asyncio.run(
        download_order(
            order_id=order_id,
            target=url,
            connection=connection,
            options=options,
            return_state=True,
        )
    )


def assert_all_delivered(report: OrderReport, target: DeliveryTarget) -> None:
    """Every file of the report is at the target, with the MD5 the report claims."""
    for outcome in report.files:
        assert outcome.outcome in (Outcome.DOWNLOADED, Outcome.SKIPPED), outcome
        name = outcome.target.rsplit("/", 1)[1]
        assert outcome.target.endswith(f"{target.root}/{name}")
        assert hashlib.md5(target.read(name)).hexdigest() == outcome.md5
    assert len(target.names()) == len(report.files)
    assert target.leftovers() == [] and target.pending_uploads() == []
