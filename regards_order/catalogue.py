"""Ordering from the catalogue, without Prefect: the request, what it selects, and the target's
record of the orders it created.

- `OrderRequest`: the queries and filters of an auto-order, its idempotency `key` and the
  correlation id sent with it; `with_window` fills `{since}` and `{until}` in the queries.
- `plan`: what the request would order, counted from the catalogue before ordering (the
  server ignores its own size limit on the auto-order path, so the client checks sizes).
- `check_basket` and `place`: the basket trap avoided, and the auto-order sent once.
- The record, `<target>/.regards-order/requests.json`: request key -> the order it created,
  plus an *intent* noted before each auto-order, so that a run whose auto-order got no answer
  looks for the order among the user's orders (`recover`) instead of ordering twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from regards_order.client import RegardsClient
from regards_order.errors import (
    AmbiguousOrder,
    BasketNotEmpty,
    ConfigurationError,
    OrderRefused,
    TargetError,
)
from regards_order.models import DataType, Order, OrderGrant
from regards_order.record import RECORD_FOLDER
from regards_order.report import OrderCreated
from regards_order.transfer import Target, write_small

#: Where the record of created orders lives, under the target.
REQUESTS_PATH = f"{RECORD_FOLDER}/requests.json"

#: The longest correlation id the server takes.
MAX_CORRELATION_ID = 255

#: The label the server gives the orders it creates from an auto-order.
GENERATED_LABEL = re.compile(r"Generated order (\S+)")

WINDOW_PLACEHOLDERS = ("{since}", "{until}")

_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)")
_UNITS = {"": 1, "b": 1} | {
    unit: factor
    for n, letter in enumerate("kmgtpe", start=1)
    for unit, factor in ((f"{letter}b", 1000**n), (f"{letter}ib", 1024**n))
}


# -- sizes ------------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """Bytes from "12345", "50GB", "1.5 TB" or "200 MiB" (GB = 10**9 bytes, GiB = 2**30).

    A bare "G" is refused: it means GB to some tools and GiB to others.
    """
    match = _SIZE.fullmatch(text.strip())
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        hint = f" (say {unit.upper()}B or {unit.upper()}iB)" if unit in tuple("kmgtpe") else ""
        raise ValueError(
            f"not a size: {text!r}{hint}; give bytes, or a number with B, kB, MB, "
            "GB, TB, KiB, MiB, GiB or TiB"
        )
    try:
        value = Decimal(match.group(1)) * _UNITS[unit]
    except InvalidOperation:
        raise ValueError(f"not a size: {text!r}") from None
    if _UNITS[unit] == 1 and value != value.to_integral_value():
        raise ValueError(f"not a whole number of bytes: {text!r}")
    return int(value)  # rounded down: a limit is never raised by its spelling


def human_size(size: int) -> str:
    """`size` bytes for a person, in decimal units: "1.5 GB"."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    power = 0
    while power < len(units) - 1 and size >= 1000 ** (power + 1):
        power += 1
    return f"{size} B" if power == 0 else f"{size / 1000**power:.1f} {units[power]}"


# -- the request ------------------------------------------------------------------------------


class OrderRequest(BaseModel):
    """An auto-order as the user asks for it."""

    model_config = ConfigDict(frozen=True)

    queries: tuple[str, ...] = Field(min_length=1, description="Lucene queries of the catalogue.")
    data_types: tuple[DataType, ...] = Field(
        default=(DataType.RAWDATA,),
        min_length=1,
        description="What to order of each product: raw data and/or every size of quicklook.",
    )
    filename_regexp: str | None = Field(
        default=None,
        description="Only files whose whole name matches this regular expression.",
    )
    label: str | None = Field(default=None, description="The user's name for this request.")
    max_size: int | None = Field(
        default=None, ge=0, description="Refuse to order more than this many bytes."
    )

    @field_validator("queries")
    @classmethod
    def _queries_given(cls, queries: tuple[str, ...]) -> tuple[str, ...]:
        stripped = tuple(query.strip() for query in queries)
        if not all(stripped):
            raise ValueError("a query is empty")
        return stripped

    @field_validator("data_types")
    @classmethod
    def _data_types_once(cls, data_types: tuple[DataType, ...]) -> tuple[DataType, ...]:
        return tuple(sorted(set(data_types)))

    @field_validator("filename_regexp")
    @classmethod
    def _regexp_compiles(cls, pattern: str | None) -> str | None:
        # The server reads a blank pattern as no filter at all.
        if pattern is None or not pattern.strip():
            return None
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        return pattern

    @field_validator("max_size", mode="before")
    @classmethod
    def _size_spelled(cls, value: object) -> object:
        return parse_size(value) if isinstance(value, str) else value

    @property
    def key(self) -> str:
        """The idempotency key: the same queries (in any order), filters and label give the
        same key; any other query, filter or label another. The size limit is not part of it:
        it changes what is allowed, not what is ordered."""
        identity = {
            "queries": sorted(set(self.queries)),
            "data_types": [t.value for t in self.data_types],
            "filename_regexp": self.filename_regexp,
            "label": self.label,
        }
        canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    @property
    def correlation_id(self) -> str:
        """What the auto-order is sent with: the key first (it survives any label length)."""
        name = f"regards-order:{self.key[:16]}" + (f":{self.label}" if self.label else "")
        return name[:MAX_CORRELATION_ID]

    @property
    def unfilled(self) -> bool:
        """Some query still holds `{since}` or `{until}`: `with_window` must fill it first."""
        return any(mark in query for query in self.queries for mark in WINDOW_PLACEHOLDERS)

    def with_window(self, since: datetime, until: datetime) -> OrderRequest:
        """This request with `{since}` and `{until}` replaced, in every query, by the window's
        ends in ISO 8601 UTC ("2024-05-01T00:00:00Z"). Other braces (Lucene's exclusive
        ranges) are left alone."""
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("the window's ends need a time zone")
        if since > until:
            raise ValueError(f"the window ends ({until}) before it starts ({since})")
        start, end = _iso_z(since), _iso_z(until)
        queries = tuple(q.replace("{since}", start).replace("{until}", end) for q in self.queries)
        return self.model_copy(update={"queries": queries})


def _iso_z(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


# -- the selection ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """What a request would order, as the catalogue tells it."""

    products: int  # distinct products found by the queries
    files: int  # their files of the chosen data types, through the name filter
    size: int  # the bytes of those files (those whose size the catalogue gives)
    unsized_files: int = 0  # files the catalogue gives no size for
    found_per_query: tuple[int, ...] = ()  # products each query found, duplicates included

    def exceeds(self, max_size: int | None) -> bool:
        """More bytes than `max_size` (None: no limit)."""
        return max_size is not None and self.size > max_size


def plan(client: RegardsClient, request: OrderRequest, page_size: int = 500) -> Selection:
    """Search every query (every page), count the distinct products and the files the
    auto-order would hold: of the request's data types, whose whole name matches its regexp.
    InvalidQuery where the server refuses a query."""
    if request.unfilled:
        raise ConfigurationError("a query holds {since} or {until}: give the window first")
    pattern = re.compile(request.filename_regexp) if request.filename_regexp else None
    seen: set[str] = set()
    per_query: list[int] = []
    files = size = unsized = 0
    for query in request.queries:
        found = 0
        for product in client.iter_products(query, page_size):
            found += 1
            if product.id in seen:
                continue
            seen.add(product.id)
            for file in product.files_of(request.data_types):
                if pattern is not None and pattern.fullmatch(file.filename) is None:
                    continue
                files += 1
                if file.size is None:
                    unsized += 1
                else:
                    size += file.size
        per_query.append(found)
    return Selection(len(seen), files, size, unsized, tuple(per_query))


# -- the target's record of created orders ----------------------------------------------------


class RememberedRequest(BaseModel):
    """An order created for a request, as the record keeps it."""

    order_id: int
    correlation_id: str | None = None
    created: datetime
    queries: tuple[str, ...]
    data_types: tuple[DataType, ...]
    filename_regexp: str | None = None
    label: str | None = None


class Intent(BaseModel):
    """An auto-order about to be sent: when, and with which correlation id."""

    correlation_id: str
    at: datetime


class RequestsDocument(BaseModel):
    """The whole record: request key -> created order, and the intents not settled yet."""

    version: int = 1
    requests: dict[str, RememberedRequest] = {}
    intents: dict[str, Intent] = {}


#: Rewrites of the record that another run's rewrite may undo before we give up.
_WRITE_ATTEMPTS = 5


def remembered(target: Target) -> RequestsDocument:
    """The record as stored (an empty one when there is none yet)."""
    path = target.path(REQUESTS_PATH)
    try:
        raw = target.fs.cat_file(path)
    except FileNotFoundError:
        return RequestsDocument()
    try:
        return RequestsDocument.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as error:
        raise TargetError(
            f"the record of requests {target.url(path)} is unreadable "
            f"({error.__class__.__name__}); move it away to start afresh"
        ) from None


def find(target: Target, request: OrderRequest) -> int | None:
    """The order created for this request at this target, if one was."""
    found = remembered(target).requests.get(request.key)
    return None if found is None else found.order_id


def recorded(target: Target, request: OrderRequest) -> OrderCreated | None:
    """The order an earlier run created for this very request at this target, as created."""
    order_id = find(target, request)
    if order_id is None:
        return None
    return OrderCreated(
        order_id=order_id, status="RECORDED", queries=request.queries, label=request.label
    )


def remember(target: Target, request: OrderRequest, grant: OrderGrant, owner: str = "") -> None:
    """Record the order created for this request (its intent is settled)."""
    entry = RememberedRequest(
        order_id=grant.order_id,
        correlation_id=grant.correlation_id or request.correlation_id,
        created=datetime.now(UTC),
        queries=request.queries,
        data_types=request.data_types,
        filename_regexp=request.filename_regexp,
        label=request.label,
    )

    def change(document: RequestsDocument) -> None:
        document.requests[request.key] = entry
        document.intents.pop(request.key, None)

    _update(target, change, owner)


def note_intent(
    target: Target, request: OrderRequest, now: datetime | None = None, owner: str = ""
) -> Intent:
    """Record, before sending the auto-order, that it is about to be sent."""
    intent = Intent(correlation_id=request.correlation_id, at=_utc(now or datetime.now(UTC)))

    def change(document: RequestsDocument) -> None:
        document.intents[request.key] = intent

    _update(target, change, owner)
    return intent


def pending_intent(target: Target, request: OrderRequest) -> Intent | None:
    """An auto-order of this request that was sent without its answer being recorded."""
    return remembered(target).intents.get(request.key)


def forget_intent(target: Target, request: OrderRequest, owner: str = "") -> None:
    """The auto-order was refused: it created nothing, no order is to be looked for."""

    def change(document: RequestsDocument) -> None:
        document.intents.pop(request.key, None)

    _update(target, change, owner)


def _update(target: Target, change: Callable[[RequestsDocument], None], owner: str) -> None:
    """Read, change, write; then read back, and do it again if another run's write undid our
    change meanwhile (each run rewrites the whole file)."""
    path = target.path(REQUESTS_PATH)
    for _ in range(_WRITE_ATTEMPTS):
        document = remembered(target)
        change(document)
        write_small(target, path, document.model_dump_json(indent=1).encode(), owner)
        stored = remembered(target)
        expected = stored.model_copy(deep=True)
        change(expected)
        if expected == stored:
            return
    raise TargetError(f"the record of requests {target.url(path)} kept changing under us")


# -- recovering an order whose auto-order got no answer ---------------------------------------


def recover(
    client: RegardsClient,
    request: OrderRequest,
    intent: Intent,
    *,
    exclude: Collection[int] = (),
    clock_slack: timedelta = timedelta(minutes=5),
    window: timedelta = timedelta(hours=1),
) -> int | None:
    """The order that the auto-order noted in `intent` created, if it did.

    Looks through the user's orders (newest first) for those the server labelled "Generated
    order <date>", created from `clock_slack` before the intent (the server's clock is not
    ours) to `window` after it, whose dataset tasks were filtered as the request says where
    the server shows it, and which are not in `exclude` (orders known to be other requests').
    One such order: its id. None: the auto-order created nothing. More than one:
    AmbiguousOrder, since ordering again might order twice and taking one might be wrong.
    """
    at = _utc(intent.at)
    earliest, latest = at - clock_slack, at + window
    candidates: list[int] = []
    for order in client.iter_orders():
        created = _created(order)
        if order.creation_date is not None and _utc(order.creation_date) < earliest:
            break  # listed newest first: every later one is older still
        if created is None or not earliest <= created <= latest or order.id in exclude:
            continue
        if _filtered_as(order, request) and order.id not in candidates:
            candidates.append(order.id)
    if len(candidates) > 1:
        listed = ", ".join(str(c) for c in candidates)
        raise AmbiguousOrder(
            f"orders {listed} were all generated around {_iso_z(at)}: which of them the "
            f"unanswered auto-order created is unknown; record the right one, or delete the "
            f"others, before running again",
            candidates=tuple(candidates),
        )
    return candidates[0] if candidates else None


def _created(order: Order) -> datetime | None:
    """When the server created a generated order (None: not a generated order)."""
    match = GENERATED_LABEL.fullmatch(order.label or "")
    if match is None:
        return None
    if order.creation_date is not None:
        return _utc(order.creation_date)
    try:
        return _utc(datetime.fromisoformat(match.group(1).replace("Z", "+00:00")))
    except ValueError:
        return None


def _utc(moment: datetime) -> datetime:
    """An aware time; the server writes UTC, and reads a time without an offset as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _filtered_as(order: Order, request: OrderRequest) -> bool:
    """Whether the order's file filters, where the server shows them, are the request's."""
    wanted = {t.value for t in request.data_types}
    for task in order.dataset_tasks:
        if task.file_types is not None and set(task.file_types) != wanted:
            return False
        if task.file_types is not None and task.filename_pattern != request.filename_regexp:
            return False
    return True


# -- ordering ---------------------------------------------------------------------------------


def check_basket(client: RegardsClient, empty_it: bool) -> None:
    """Make sure the order will hold the request alone: an auto-order orders the user's whole
    basket. BasketNotEmpty unless `empty_it`, which empties it."""
    basket = client.basket()
    if basket is None or basket.is_empty:
        return
    if not empty_it:
        raise BasketNotEmpty(
            f"the user's basket is not empty ({basket.selections} selections), and an "
            "auto-order would order it too: empty it in REGARDS, or give --empty-basket "
            "(empty_basket) to empty it first"
        )
    client.empty_basket()


def place(
    client: RegardsClient, request: OrderRequest, selection: Selection, target: Target | None
) -> OrderCreated:
    """Create the order by auto-order. With a target, the creation is recorded there, and an
    attempt whose answer never came is looked for among the user's orders before anything is
    sent again, so that a request is never ordered twice."""
    grant: OrderGrant | None = None
    if target is not None:
        intent = pending_intent(target, request)
        if intent is not None:
            known = {entry.order_id for entry in remembered(target).requests.values()}
            found = recover(client, request, intent, exclude=known)
            if found is not None:
                grant = OrderGrant(order_id=found, correlation_id=intent.correlation_id)
        if grant is None:
            note_intent(target, request)
    if grant is None:
        try:
            grant = client.apply(
                request.queries, request.data_types, request.filename_regexp, request.correlation_id
            )
        except OrderRefused:
            if target is not None:  # refused: it created nothing, there is nothing to look for
                forget_intent(target, request)
            raise
    if target is not None:
        remember(target, request, grant)
    return OrderCreated(
        order_id=grant.order_id,
        status="GRANTED",
        products=selection.products,
        files=selection.files,
        size=selection.size,
        queries=request.queries,
        label=request.label,
        correlation_id=grant.correlation_id or request.correlation_id,
    )
