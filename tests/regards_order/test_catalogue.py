"""Ordering from the catalogue without Prefect: sizes, the request and its key, the window, the
plan against the simulator's catalogue, the target's record of requests, and recovering an
order whose auto-order got no answer."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fsspec.implementations.memory import MemoryFileSystem
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from regards_order.catalogue import (
    REQUESTS_PATH,
    Intent,
    OrderRequest,
    find,
    forget_intent,
    human_size,
    note_intent,
    parse_size,
    pending_intent,
    plan,
    recover,
    remember,
    remembered,
)
from regards_order.client import RegardsClient
from regards_order.errors import (
    AmbiguousOrder,
    ConfigurationError,
    InvalidQuery,
    TargetError,
)
from regards_order.models import DataType, OrderGrant
from regards_order.simulator import Scenario, Simulator
from regards_order.transfer import Target, open_target
from tests.helpers.scenarios import USER, connection_for, scenario
from tests.helpers.targets import DeliveryTarget
from tests.helpers.waiting import wait_until

RAW, QUICKLOOK = DataType.RAWDATA, DataType.QUICKLOOK

# ---- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("12345", 12345),
        ("0", 0),
        ("12345B", 12345),
        ("50GB", 50 * 10**9),
        ("50 gb", 50 * 10**9),
        ("1.5TB", 1_500_000_000_000),
        ("200 MiB", 200 * 2**20),
        ("2GiB", 2 * 2**30),
        ("1kB", 1000),
        ("1.5KiB", 1536),
        (" 7 MB ", 7 * 10**6),
        ("0.0000000001 GB", 0),  # rounded down, never up
    ],
)
def test_sizes_as_a_person_writes_them(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("50G", "say GB or GiB"),
        ("1.5", "not a whole number of bytes"),
        ("-3GB", "not a size"),
        ("lots", "not a size"),
        ("", "not a size"),
        ("5 XB", "not a size"),
        ("GB", "not a size"),
    ],
)
def test_sizes_that_mean_nothing_are_refused(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_size(text)


_FACTORS = {"": 1, "B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_FACTORS |= {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


@given(
    st.integers(min_value=0, max_value=10**7),
    st.sampled_from(sorted(_FACTORS)),
    st.sampled_from(["", " "]),
)
def test_whole_numbers_of_any_unit(number: int, unit: str, space: str) -> None:
    assert parse_size(f"{number}{space}{unit}") == number * _FACTORS[unit]
    assert parse_size(f"{number}{space}{unit.upper()}") == number * _FACTORS[unit]


def test_human_sizes() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 1_500_000_000, 3 * 10**15)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "1.5 GB",
        "3.0 PB",
    ]


# ---- the request ----------------------------------------------------------------------------


def test_a_request_is_validated() -> None:
    request = OrderRequest(
        queries=[" providerId:S2A_* "],
        data_types=[QUICKLOOK, RAW, QUICKLOOK],
        filename_regexp="",
        max_size="50GB",
    )
    assert request.queries == ("providerId:S2A_*",)
    assert request.data_types == (QUICKLOOK, RAW)
    assert request.filename_regexp is None  # the server reads a blank pattern as none
    assert request.max_size == 50 * 10**9
    assert OrderRequest(queries=["q"]).data_types == (RAW,)
    for bad in (
        {"queries": []},
        {"queries": ["  "]},
        {"queries": ["q"], "data_types": []},
        {"queries": ["q"], "data_types": ["THUMBNAIL"]},
        {"queries": ["q"], "filename_regexp": "(unclosed"},
        {"queries": ["q"], "max_size": "50G"},
        {"queries": ["q"], "max_size": -1},
    ):
        with pytest.raises(ValidationError):
            OrderRequest(**bad)
    with pytest.raises(ValidationError):
        request.label = "frozen"  # type: ignore[misc]


BASE: dict[str, Any] = {
    "queries": ["providerId:S2A_*", 'tags:"tile T31TCJ"'],
    "data_types": [RAW],
    "filename_regexp": r".*\.zip",
    "label": "nightly-T31TCJ",
}


def test_the_key_names_the_queries_filters_and_label() -> None:
    key = OrderRequest(**BASE).key
    assert OrderRequest(**BASE).key == key and len(key) == 32
    # The order of the queries does not change what is ordered, nor does the size limit.
    assert OrderRequest(**BASE | {"queries": BASE["queries"][::-1]}).key == key
    assert OrderRequest(**BASE | {"max_size": 10}).key == key
    changed = [
        {"queries": ["providerId:S2B_*", 'tags:"tile T31TCJ"']},
        {"queries": ["providerId:S2A_*"]},
        {"data_types": [RAW, QUICKLOOK]},
        {"filename_regexp": r".*\.tif"},
        {"filename_regexp": None},
        {"label": "nightly-T31TCK"},
        {"label": None},
    ]
    keys = {OrderRequest(**BASE | change).key for change in changed}
    assert len(keys) == len(changed) and key not in keys


@given(st.lists(st.text(min_size=1).filter(str.strip), min_size=1, max_size=5), st.randoms())
def test_any_order_of_the_same_queries_is_the_same_request(queries: list[str], rnd: Any) -> None:
    shuffled = list(queries)
    rnd.shuffle(shuffled)
    assert OrderRequest(queries=queries).key == OrderRequest(queries=shuffled).key


def test_the_correlation_id_comes_from_the_key_and_the_label() -> None:
    request = OrderRequest(**BASE)
    assert request.correlation_id == f"regards-order:{request.key[:16]}:nightly-T31TCJ"
    long = OrderRequest(**BASE | {"label": "x" * 1000})
    assert len(long.correlation_id) == 255 and long.key[:16] in long.correlation_id
    assert OrderRequest(queries=["q"]).correlation_id == (
        f"regards-order:{OrderRequest(queries=['q']).key[:16]}"
    )


def test_the_window_fills_every_query() -> None:
    template = OrderRequest(
        queries=["start:[{since} TO {until}]", "cloud:{5 TO 40] AND stop:[* TO {until}]"],
        label="nightly",
    )
    assert template.unfilled
    paris = timezone(timedelta(hours=2))
    since = datetime(2024, 5, 1, 2, 0, tzinfo=paris)  # midnight UTC
    until = datetime(2024, 5, 2, tzinfo=UTC)
    filled = template.with_window(since, until)
    assert filled.queries == (
        "start:[2024-05-01T00:00:00Z TO 2024-05-02T00:00:00Z]",
        "cloud:{5 TO 40] AND stop:[* TO 2024-05-02T00:00:00Z]",  # Lucene's braces stay
    )
    assert not filled.unfilled and filled.label == "nightly"
    # Each window is a request of its own; the same window again is the same request.
    assert filled.key != template.key
    assert filled.key == template.with_window(since, until).key
    assert filled.key != template.with_window(until, until + timedelta(days=1)).key
    precise = template.with_window(since, until + timedelta(microseconds=1500))
    assert precise.queries[0].endswith("TO 2024-05-02T00:00:00.001Z]")


def test_a_window_needs_time_zones_and_the_right_order() -> None:
    template = OrderRequest(queries=["start:[{since} TO {until}]"])
    start = datetime(2024, 5, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="time zone"):
        template.with_window(start.replace(tzinfo=None), start)
    with pytest.raises(ValueError, match="before it starts"):
        template.with_window(start, start - timedelta(seconds=1))


# ---- the plan -------------------------------------------------------------------------------


def product(provider_id: str, tile: str, dataset: str = "S2", **sizes: int) -> dict[str, Any]:
    return {
        "provider_id": provider_id,
        "dataset": dataset,
        "properties": {"tile": tile},
        "files": {
            "RAWDATA": [{"filename": f"{provider_id}.zip", "size": sizes.get("raw", 1000)}],
            "QUICKLOOK_SD": [{"filename": f"{provider_id}_sd.png", "size": 10}],
            "QUICKLOOK_HD": [{"filename": f"{provider_id}_hd.jpg", "size": 30}],
            "THUMBNAIL": [{"filename": f"{provider_id}_th.png", "size": 5}],
        },
    }


CATALOG = {
    "datasets": [{"label": "S2"}, {"label": "S1"}],
    "products": [
        product("S2A_1", "31TCJ", raw=1001),
        product("S2A_2", "31TCK", raw=1002),
        product("S2B_3", "31TCJ", raw=1003),
        product("S1A_4", "31TCJ", dataset="S1", raw=1004),
        product("S2A_5", "31TDJ", raw=1005),
    ],
}


@pytest.fixture
def connect(
    start_simulator: Callable[[Scenario], Simulator],
) -> Iterator[Callable[..., tuple[Simulator, RegardsClient]]]:
    clients: list[RegardsClient] = []

    def connect(**settings: Any) -> tuple[Simulator, RegardsClient]:
        settings.setdefault("catalog", CATALOG)
        sim = start_simulator(scenario(settings.pop("orders", []), **settings))
        clients.append(RegardsClient(connection_for(sim)))
        return sim, clients[-1]

    yield connect
    for client in clients:
        client.close()


@pytest.mark.parametrize(
    ("change", "products", "files", "size"),
    [
        # S2A_1, S2A_2, S2A_5 and S2B_3, S1A_4 (S2A_1 and S2B_3 found twice: counted once)
        ({}, 5, 5, 1001 + 1002 + 1003 + 1004 + 1005),
        ({"data_types": [QUICKLOOK]}, 5, 10, 5 * 40),  # both quicklook sizes, no thumbnail
        ({"data_types": [RAW, QUICKLOOK]}, 5, 15, 5015 + 200),
        ({"filename_regexp": r"S2._\d"}, 5, 0, 0),  # must match the whole name
        ({"filename_regexp": r"S2._\d\.zip", "data_types": [RAW, QUICKLOOK]}, 5, 4, 4011),
        ({"queries": ["tile:31TCJ"]}, 3, 3, 1001 + 1003 + 1004),
        ({"queries": ['providerId:"NOTHING"']}, 0, 0, 0),
    ],
)
def test_the_plan_counts_what_the_server_then_orders(
    connect: Any, change: dict[str, Any], products: int, files: int, size: int
) -> None:
    _, client = connect()
    request = OrderRequest(**{"queries": ["providerId:S2A*", "tile:31TCJ"]} | change)
    selection = plan(client, request, page_size=2)
    assert (selection.products, selection.files, selection.size) == (products, files, size)
    assert selection.unsized_files == 0
    if products == 0:
        return
    # What the server orders for the same request is what the plan said.
    grant = client.apply(request.queries, request.data_types, request.filename_regexp, "c")
    order = client.get_order(grant.order_id)
    assert sum(t.files_count or 0 for t in order.dataset_tasks) == files
    assert sum(t.files_size or 0 for t in order.dataset_tasks) == size


def test_the_plan_walks_every_page_of_every_query(connect: Any) -> None:
    sim, client = connect()
    request = OrderRequest(queries=["providerId:S2A*", "tile:31TCJ"])
    selection = plan(client, request, page_size=2)
    assert selection.found_per_query == (3, 3)
    searched = [(s["q"], s["page"]) for s in sim.stats()["catalog"]["searches"]]
    assert searched == [(q, n) for q in request.queries for n in (0, 1)]


def test_over_the_size_limit(connect: Any) -> None:
    _, client = connect()
    request = OrderRequest(queries=["tile:31TCJ"], max_size="3kB")
    selection = plan(client, request)
    assert selection.size == 3008 and selection.exceeds(request.max_size)
    assert not selection.exceeds(None) and not selection.exceeds(3008)


def test_the_plan_refuses_a_bad_query_and_an_unfilled_window(connect: Any) -> None:
    sim, client = connect()
    with pytest.raises(InvalidQuery, match="Indeterminate relationship"):
        plan(client, OrderRequest(queries=["tile:31TCJ tile:31TCK"]))
    with pytest.raises(ConfigurationError, match="window"):
        plan(client, OrderRequest(queries=["start:[{since} TO {until}]"]))
    assert len(sim.stats()["catalog"]["searches"]) == 1  # the window was never sent


# ---- the record of requests -----------------------------------------------------------------


def memory_target() -> Target:
    return open_target(f"memory://requests-{uuid.uuid4().hex}")


def stored(target: Target) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(target.fs.cat_file(target.path(REQUESTS_PATH)))
    return document


def test_a_remembered_request_is_found_at_every_kind_of_target(target: DeliveryTarget) -> None:
    place = open_target(target.url, target.storage_options)
    request = OrderRequest(**BASE)
    assert find(place, request) is None
    remember(place, request, OrderGrant(order_id=41, correlation_id=request.correlation_id))
    assert find(place, request) == 41
    assert find(place, OrderRequest(**BASE | {"label": "other"})) is None
    entry = json.loads(target.read(REQUESTS_PATH))["requests"][request.key]
    created = datetime.fromisoformat(entry.pop("created"))
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)
    assert entry == {
        "order_id": 41,
        "correlation_id": request.correlation_id,
        "queries": list(request.queries),
        "data_types": ["RAWDATA"],
        "filename_regexp": r".*\.zip",
        "label": "nightly-T31TCJ",
    }
    assert target.leftovers() == []


def test_requests_are_remembered_beside_each_other() -> None:
    place = memory_target()
    first, second = OrderRequest(**BASE), OrderRequest(**BASE | {"label": "other"})
    remember(place, first, OrderGrant(order_id=1))
    remember(place, second, OrderGrant(order_id=2))
    assert (find(place, first), find(place, second)) == (1, 2)
    assert stored(place)["requests"][first.key]["correlation_id"] == first.correlation_id


class OtherRunWritesAfterUs(MemoryFileSystem):
    """Memory, where another run's write of the record lands just after ours: that run had
    read the record before we wrote, so what it writes holds its request and not ours."""

    cachable = False
    theirs: bytes | None = None

    def cat_file(self, path: str, *args: Any, **kwargs: Any) -> Any:
        if self.theirs is not None and path.endswith(REQUESTS_PATH) and self.exists(path):
            theirs, self.theirs = self.theirs, None
            self.pipe_file(path, theirs)
        return super().cat_file(path, *args, **kwargs)


def test_a_write_undone_by_another_run_is_merged_again() -> None:
    place = Target(fs=OtherRunWritesAfterUs(), root=f"/late-{uuid.uuid4().hex}")
    ours, theirs = OrderRequest(**BASE), OrderRequest(**BASE | {"label": "theirs"})
    # What the other run built from the record it read while the record was still empty.
    scratch = memory_target()
    remember(scratch, theirs, OrderGrant(order_id=2))
    place.fs.theirs = scratch.fs.cat_file(scratch.path(REQUESTS_PATH))
    remember(place, ours, OrderGrant(order_id=1))
    assert place.fs.theirs is None  # their write did land after ours
    assert (find(place, ours), find(place, theirs)) == (1, 2)


def test_an_unreadable_record_is_a_target_error() -> None:
    place = memory_target()
    place.fs.pipe_file(place.path(REQUESTS_PATH), b"{not json")
    with pytest.raises(TargetError, match=r"requests\.json is unreadable"):
        find(place, OrderRequest(**BASE))


def test_an_intent_until_the_order_is_remembered_or_refused() -> None:
    place = memory_target()
    request, other = OrderRequest(**BASE), OrderRequest(**BASE | {"label": "other"})
    assert pending_intent(place, request) is None
    at = datetime(2024, 5, 1, 12, tzinfo=UTC)
    intent = note_intent(place, request, now=at)
    assert (intent.correlation_id, intent.at) == (request.correlation_id, at)
    note_intent(place, other)
    assert pending_intent(place, request) == intent
    assert stored(place)["intents"][request.key]["at"] == "2024-05-01T12:00:00Z"
    remember(place, request, OrderGrant(order_id=5))
    assert pending_intent(place, request) is None and find(place, request) == 5
    forget_intent(place, other)
    assert pending_intent(place, other) is None and find(place, other) is None
    assert remembered(place).intents == {}


# ---- recovering an unanswered auto-order ----------------------------------------------------


def next_millisecond() -> None:
    """Generated orders are labelled to the millisecond, and a user's labels are unique."""
    start = time.time_ns() // 1_000_000
    wait_until(lambda: time.time_ns() // 1_000_000 != start, "the next millisecond", every=0.001)


def auto_order(client: RegardsClient, request: OrderRequest) -> int:
    next_millisecond()
    return client.apply(
        request.queries, request.data_types, request.filename_regexp, request.correlation_id
    ).order_id


def test_the_order_of_an_unanswered_auto_order_is_found(connect: Any) -> None:
    _, client = connect(orders=[{"id": 1, "owner": USER, "label": "by hand"}])
    place = memory_target()
    request = OrderRequest(queries=["tile:31TCJ"], filename_regexp=r".*\.zip")
    intent = note_intent(place, request)
    created = auto_order(client, request)  # its answer is lost: nothing remembered
    assert find(place, request) is None
    pending = pending_intent(place, request)
    assert pending is not None
    assert recover(client, request, pending) == created
    remember(place, request, OrderGrant(order_id=created, correlation_id=intent.correlation_id))
    assert find(place, request) == created and pending_intent(place, request) is None


def test_no_generated_order_nothing_to_recover(connect: Any) -> None:
    _, client = connect(orders=[{"id": 1, "owner": USER, "label": "by hand"}])
    request = OrderRequest(queries=["tile:31TCJ"])
    assert recover(client, request, Intent(correlation_id="c", at=datetime.now(UTC))) is None


def test_orders_generated_outside_the_window_are_not_the_intents(connect: Any) -> None:
    _, client = connect()
    request = OrderRequest(queries=["tile:31TCJ"])
    auto_order(client, request)
    now = datetime.now(UTC)
    later = Intent(correlation_id="c", at=now + timedelta(hours=2))
    earlier = Intent(correlation_id="c", at=now - timedelta(hours=3))
    assert recover(client, request, later) is None
    assert recover(client, request, earlier) is None
    assert recover(client, request, earlier, window=timedelta(hours=4)) is not None


def test_orders_filtered_otherwise_are_not_the_intents(connect: Any) -> None:
    _, client = connect()
    request = OrderRequest(queries=["tile:31TCJ"], filename_regexp=r".*\.zip")
    intent = Intent(correlation_id="c", at=datetime.now(UTC))
    auto_order(client, OrderRequest(queries=["tile:31TCJ"], data_types=[RAW, QUICKLOOK]))
    auto_order(client, OrderRequest(queries=["tile:31TCJ"], filename_regexp=r".*\.png|.*zip"))
    assert recover(client, request, intent) is None


def test_two_orders_that_fit_are_ambiguous_unless_one_is_known(connect: Any) -> None:
    _, client = connect()
    request = OrderRequest(queries=["tile:31TCJ"])
    intent = Intent(correlation_id="c", at=datetime.now(UTC))
    first, second = auto_order(client, request), auto_order(client, request)
    with pytest.raises(AmbiguousOrder) as caught:
        recover(client, request, intent)
    assert caught.value.candidates == (second, first)  # newest first
    assert f"orders {second}, {first} were all generated" in str(caught.value)
    assert recover(client, request, intent, exclude={first}) == second
