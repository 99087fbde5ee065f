"""`regards-order order` as a user runs it: a subprocess against the simulator's catalogue over
HTTP, its exit code, stdout and stderr, what the simulator recorded and what the target holds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from regards_order.simulator import Scenario, Simulator
from tests.helpers.cli import assert_no_secret_and_no_traceback, cli, last_line
from tests.helpers.scenarios import PASSWORD, USER
from tests.helpers.targets import DeliveryTarget
from tests.helpers.waiting import md5

Start = Callable[[Scenario], Simulator]

RAW_SIZE, QUICKLOOK_SIZE = 30_000, 2_000


def product(provider_id: str, tile: str) -> dict[str, Any]:
    return {
        "provider_id": provider_id,
        "dataset": "Optical",
        "tags": [f"tile {tile}"],
        "properties": {"tile": tile},
        "files": {
            "RAWDATA": [{"filename": f"{provider_id}.zip", "size": RAW_SIZE}],
            "QUICKLOOK_SD": [{"filename": f"{provider_id}_sd.png", "size": QUICKLOOK_SIZE}],
        },
    }


def catalogue(basket: list[str] | None = None, **settings: Any) -> Scenario:
    """Four products on two tiles; the user's basket as given."""
    document: dict[str, Any] = {
        "project": "test",
        "users": [{"username": USER, "password": PASSWORD, "basket": basket}],
        "catalog": {
            "datasets": [{"label": "Optical"}],
            "products": [
                product("S2A_0001", "T31TCJ"),
                product("S2A_0002", "T31TCJ"),
                product("S2B_0003", "T31TCJ"),
                product("S2A_0004", "T30TYP"),
            ],
        },
        "restore_seconds": 0.05,
        **settings,
    }
    return Scenario.model_validate(document)


def order_args(sim: Simulator, *queries_and_options: str) -> list[str]:
    return [
        "order",
        *queries_and_options,
        "--host",
        sim.url,
        "--project",
        "test",
        "--username",
        USER,
        "--poll-interval",
        "0.05",
        "--max-poll-interval",
        "0.2",
        "--retry-delay",
        "0",
    ]


ENV = {"REGARDS_PASSWORD": PASSWORD}


def created(sim: Simulator) -> list[int]:
    orders: list[int] = sim.stats()["catalog"]["orders_created"]
    return orders


def test_a_dry_run_counts_and_sizes_and_orders_nothing(start_simulator: Start) -> None:
    sim = start_simulator(catalogue())
    result = cli(*order_args(sim, "providerId:S2A_*", "--dry-run", "--json"), env=ENV)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["ordered"] is False
    assert (document["products"], document["files"], document["size"]) == (3, 3, 3 * RAW_SIZE)
    assert created(sim) == []
    both = cli(
        *order_args(sim, "providerId:S2A_*", "tags:\"tile T31TCJ\"", "--data-type", "RAWDATA",
                    "--data-type", "QUICKLOOK", "--dry-run", "--json"),
        env=ENV,
    )  # fmt: skip
    document = json.loads(both.stdout)
    # Four distinct products (S2A_0001 and _0002 are found by both queries), two files each.
    assert (document["products"], document["files"]) == (4, 8)
    assert document["size"] == 4 * (RAW_SIZE + QUICKLOOK_SIZE)
    assert document["found_per_query"] == [3, 3]
    assert "would order 8 files" in last_line(both.stderr)
    assert created(sim) == []


def test_without_a_target_the_order_is_created_and_its_id_printed(start_simulator: Start) -> None:
    sim = start_simulator(catalogue())
    result = cli(*order_args(sim, "tile:T31TCJ", "--data-type", "QUICKLOOK"), env=ENV)
    assert result.returncode == 0, result.stderr
    (order_id,) = created(sim)
    assert result.stdout.strip() == str(order_id)
    names = sorted(sim.state.file_names(order_id))
    assert names == ["S2A_0001_sd.png", "S2A_0002_sd.png", "S2B_0003_sd.png"]  # quicklooks only

    as_json = cli(*order_args(sim, "tile:T30TYP", "--json", "--label", "west"), env=ENV)
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["ordered"] is True and document["order_id"] == created(sim)[-1]
    assert (document["status"], document["products"], document["size"]) == ("GRANTED", 1, RAW_SIZE)
    assert document["label"] == "west"


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_with_a_target_it_delivers_and_a_rerun_orders_and_fetches_nothing(
    start_simulator: Start, kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from tests.helpers.targets import make_target

    endpoint = request.getfixturevalue("s3_endpoint") if kind == "s3" else None
    target: DeliveryTarget = make_target(kind, str(tmp_path), endpoint)
    prefect_api = request.getfixturevalue("prefect_api")
    sim = start_simulator(catalogue())
    args = order_args(
        sim, "tags:\"tile T31TCJ\"", "--label", "nightly", "--max-size", "1MB",
        "--target", target.url, "--json",
    )  # fmt: skip
    for name, value in target.storage_options.items():
        args += ["--storage-option", f"{name}={json.dumps(value)}"]
    first = cli(*args, env=ENV, api=prefect_api)
    assert first.returncode == 0, first.stderr
    assert_no_secret_and_no_traceback(first)
    report = json.loads(first.stdout)
    (order_id,) = created(sim)
    assert report["ok"] and report["order"]["order_id"] == order_id == report["order_id"]
    assert report["order"]["status"] == "GRANTED" and report["order"]["products"] == 3
    assert report["counts"] == {"downloaded": 3, "skipped": 0, "failed": 0}
    for outcome in report["files"]:
        assert md5(target.read(outcome["filename"])) == outcome["md5"]
    assert target.names() >= {"S2A_0001.zip", "S2A_0002.zip", "S2B_0003.zip"}
    downloads = sim.stats()["downloads_completed"]

    again = cli(*args, env=ENV, api=prefect_api)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert created(sim) == [order_id]  # no second order
    assert report["order"] == report["order"] | {"order_id": order_id, "status": "RECORDED"}
    assert report["counts"] == {"downloaded": 0, "skipped": 3, "failed": 0}
    assert sim.stats()["downloads_completed"] == downloads  # nothing fetched again

    # Another query is another request: a new order, delivered beside the first.
    changed = cli(*[a.replace("T31TCJ", "T30TYP") for a in args], env=ENV, api=prefect_api)
    assert changed.returncode == 0, changed.stderr
    assert len(created(sim)) == 2 and json.loads(changed.stdout)["counts"]["downloaded"] == 1
    assert "S2A_0004.zip" in target.names()


def test_nothing_matching_and_over_the_size_limit_order_nothing(start_simulator: Start) -> None:
    sim = start_simulator(catalogue())
    nothing = cli(*order_args(sim, "providerId:L8_*"), env=ENV)
    assert nothing.returncode == 1
    assert (
        nothing.stderr.strip()
        == "regards-order: error: the queries match no file to order: nothing ordered"
    )
    over = cli(*order_args(sim, "providerId:S2*", "--max-size", "50kB", "--json"), env=ENV)
    assert over.returncode == 1
    (line,) = over.stderr.strip().splitlines()
    assert "over --max-size 50.0 kB" in line and "4 files of 4 products" in line
    assert json.loads(over.stdout)["ordered"] is False
    # A dry run tells the same: it exits as the order would, with its document.
    for args, problem in [
        (["providerId:L8_*"], "match no file"),
        (["providerId:S2*", "--max-size", "50kB"], "over --max-size 50.0 kB"),
    ]:
        dry = cli(*order_args(sim, *args, "--dry-run", "--json"), env=ENV)
        assert dry.returncode == 1
        (line,) = dry.stderr.strip().splitlines()
        assert problem in line and line.endswith("nothing ordered (dry run)")
        document = json.loads(dry.stdout)
        assert document["ok"] is False and document["ordered"] is False
        assert [p for p in document["problems"] if problem in p]
    assert document["over_max_size"] is True and document["files"] == 4
    assert created(sim) == []


def test_a_basket_in_use_is_refused_unless_it_may_be_emptied(start_simulator: Start) -> None:
    sim = start_simulator(catalogue(basket=["providerId:S2A_0004"]))
    refused = cli(*order_args(sim, "providerId:S2A_0001"), env=ENV)
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert "basket is not empty" in line and "--empty-basket" in line
    assert created(sim) == []
    emptied = cli(*order_args(sim, "providerId:S2A_0001", "--empty-basket", "--json"), env=ENV)
    assert emptied.returncode == 0, emptied.stderr
    (order_id,) = created(sim)
    # The order holds the query alone: the basket's product was not ordered with it.
    assert sorted(sim.state.file_names(order_id)) == ["S2A_0001.zip"]


def test_a_refused_order_says_the_servers_reason_in_one_line(start_simulator: Start) -> None:
    fault = {"status": "DENIED", "error_type": "ORDER_LIMIT_REACHED", "message": "too many orders"}
    sim = start_simulator(catalogue(apply_faults=[fault]))
    result = cli(*order_args(sim, "providerId:S2A_0001"), env=ENV)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "regards-order: error: the server refused the order (DENIED ORDER_LIMIT_REACHED): "
        "too many orders"
    )
    assert created(sim) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["providerId:("], "refused the query"),
        (["providerId:S2*", "--max-size", "12 parsecs"], "--max-size"),
        (["providerId:S2*", "--filename-regexp", "(unclosed"], "--filename-regexp"),
        (["start_date:[{since} TO *]"], "{since}"),
    ],
)
def test_bad_requests_are_usage_errors(
    start_simulator: Start, args: list[str], message: str
) -> None:
    sim = start_simulator(catalogue())
    result = cli(*order_args(sim, *args), env=ENV)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("regards-order: error: ") and message in line
    assert created(sim) == []
