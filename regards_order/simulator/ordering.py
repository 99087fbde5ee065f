"""Ordering from the catalogue: search, basket, auto-order, and the user's order actions.

A part of ``SimState`` (a mixin sharing its lock and records), as rs-catalog and rs-order do it:

- The legacy search engine pages the products that ``q`` finds (400 for a query it refuses).
- ``POST /user/orders/apply`` adds each query to the user's basket, creating it if need be, and
  orders the whole basket, with the request's filters set on every dataset selection of it (the
  basket trap). A refusal (422) keeps the selections already added. A granted order takes the
  basket away (rs-order hands it to the order), so the user has none afterwards (204).
- A created order is labelled "Generated order <date>", one dataset task per selection with
  files, its files' ``productId`` the products' providerId (as OrderCreationService does), and
  it is restored in suborders like any other order. Reading it back never shows its
  correlationId.
- Actions refused in the order's state, or on another user's order, answer 401.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from regards_order.simulator.basket import Basket, SelectionRefused, add_query, file_filter
from regards_order.simulator.catalog import SimCatalog
from regards_order.simulator.errors import ApiError
from regards_order.simulator.lucene import QueryError
from regards_order.simulator.records import (
    DatasetTask,
    FaultQueue,
    Order,
    SimFile,
    SubOrder,
    iso,
    page,
    split,
)
from regards_order.simulator.scenario import ApplyFault, ResolvedFile, Scenario

JSON = dict[str, Any]
SEARCH_PATH = "/api/v1/rs-catalog/engines/legacy/dataobjects/search"
_DATA_TYPES = frozenset({"RAWDATA", "QUICKLOOK"})
_ALLOWED: dict[str, frozenset[str]] = {
    "pause": frozenset({"PENDING", "RUNNING"}),
    "resume": frozenset({"PAUSED"}),
    "delete": frozenset({"DONE", "DONE_WITH_WARNING", "PAUSED", "EXPIRED", "FAILED"}),
    "retry": frozenset({"DONE_WITH_WARNING", "FAILED"}),
}
_REFUSED = {
    "pause": "ORDER_MUST_BE_PENDING_OR_RUNNING",
    "resume": "ORDER_MUST_BE_PAUSED",
    "delete": "ORDER_MUST_BE_DONE_OR_DONE_WITH_WARNING_OR_PAUSED_OR_FAILED_OR_EXPIRED",
    "retry": "ORDER_MUST_BE_DONE_WITH_WARNING_OR_FAILED",
}


class Invalid(Exception):
    """An auto-order request that fails bean validation: 422 with these messages."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


class OrderingMixin:
    """Search, baskets, auto-orders and order actions of ``SimState``."""

    # Provided by SimState.
    scenario: Scenario
    catalog: SimCatalog
    _lock: threading.Lock
    _orders: dict[int, Order]
    _files: dict[int, SimFile]
    _suborders: list[SubOrder]
    _baskets: dict[str, Basket]
    _ids: Iterator[int]
    _task_ids: Iterator[int]
    _suborder_ids: Iterator[int]
    _next_file_id: int

    # SimState's own: run the time-driven rules; file a new order.
    def _tick(self) -> None: ...
    def _register(self, order: Order, tasks: list[tuple[DatasetTask, list[SimFile]]]) -> None: ...

    def _init_ordering(self) -> None:
        self._apply_faults: FaultQueue[ApplyFault] = FaultQueue(self.scenario.apply_faults)
        self._searches: list[JSON] = []
        self._applies: list[JSON] = []
        self._created: list[int] = []
        self._basket_calls: Counter[str] = Counter()

    def _catalog_stats(self) -> JSON:
        return {
            "searches": list(self._searches),
            "applies": list(self._applies),
            "orders_created": list(self._created),
            "basket_reads": self._basket_calls["read"],
            "basket_deletes": self._basket_calls["delete"],
        }

    # ---- search ------------------------------------------------------------------------

    def search(
        self,
        q: str | None,
        page_number: int,
        size: int,
        sort: list[str],
        base_url: str,
        user: str | None,
    ) -> JSON:
        """The legacy engine's faceted page of the products ``q`` finds."""
        if page_number < 0 or size < 1:
            raise ApiError(400, "page must be >= 0 and size >= 1")
        size = min(size, self.scenario.max_page_size)  # Spring's cap, as for rs-order
        with self._lock:
            self._searches.append({"q": q, "page": page_number, "size": size, "user": user})
        try:
            found = self.catalog.sorted(self.catalog.select(q), sort)
        except QueryError as exc:
            raise ApiError(400, str(exc)) from exc
        chunk, meta = page(found, page_number, size)
        content = [{"content": p.feature(base_url), "links": []} for p in chunk]
        # Spring's links keep the request's parameters.
        kept = urllib.parse.urlencode([("q", q or ""), *(("sort", v) for v in sort)])
        href = f"{base_url}{SEARCH_PATH}?{kept}&size={size}&page="
        links = [{"rel": "self", "href": f"{href}{page_number}"}]
        if page_number + 1 < meta["totalPages"]:
            links.append({"rel": "next", "href": f"{href}{page_number + 1}"})
        return {"content": content, "metadata": meta, "facets": [], "links": links}

    # ---- basket ------------------------------------------------------------------------

    def basket(self, user: str) -> JSON | None:
        """The user's basket, or None when there is none (204)."""
        with self._lock:
            self._basket_calls["read"] += 1
            basket = self._baskets.get(user)
            return None if basket is None else basket.view(self.catalog)

    def delete_basket(self, user: str) -> None:
        with self._lock:
            self._basket_calls["delete"] += 1
            self._baskets.pop(user, None)

    # ---- auto-order --------------------------------------------------------------------

    def apply(self, user: str, body: Any) -> tuple[int, JSON]:
        """``POST /user/orders/apply``: 200 GRANTED, or 422 (DENIED or FAILED, or invalid)."""
        asked = body if isinstance(body, dict) else {}
        record: JSON = {
            "user": user,
            "queries": asked.get("queries"),
            "filters": asked.get("filters"),
            "correlationId": asked.get("correlationId"),
        }
        with self._lock:
            self._applies.append(record)
        try:
            queries, filters, correlation_id = _validated(body)
        except Invalid:
            record["status"] = "INVALID"
            raise
        correlation_id = correlation_id or f"auto-correlation-id-{uuid.uuid4()}"
        record["correlationId"] = correlation_id
        with self._lock:
            self._tick()
            try:
                order = self._order_basket(user, queries, filters, correlation_id)
            except _Forced as exc:
                return self._refuse(record, exc.status, exc.error_type, exc.message)
            except SelectionRefused as exc:
                status = "DENIED" if exc.error_type == "ORDER_LIMIT_REACHED" else "FAILED"
                return self._refuse(record, status, exc.error_type, exc.message)
            record |= {"status": "GRANTED", "orderId": order.id}
            self._created.append(order.id)
            answer = {"status": "GRANTED", "orderId": order.id, "correlationId": correlation_id}
            return 200, {"content": answer, "links": []}

    def _refuse(self, record: JSON, status: str, error_type: str, message: str) -> tuple[int, JSON]:
        record |= {"status": status, "errorType": error_type}
        answer = {
            "status": status,
            "correlationId": record["correlationId"],
            "message": message,
            "errorType": error_type,
        }
        return 422, {"content": answer, "links": []}

    def _order_basket(
        self, user: str, queries: list[str], filters: JSON | None, correlation_id: str
    ) -> Order:
        forced = self._apply_faults.take()
        if forced is not None:
            raise _Forced(forced)
        limit = next((u.orders_limit for u in self.scenario.users if u.username == user), None)
        mine = sum(1 for o in self._orders.values() if o.owner == user and o.status != "DELETED")
        if limit is not None and mine >= limit:
            raise SelectionRefused(
                f"TooManyItemsSelectedInBasketException: user {user} may have at most "
                f"{limit} orders",
                "ORDER_LIMIT_REACHED",
            )
        basket = self._baskets.get(user)
        if basket is None:
            basket = self._baskets[user] = Basket(next(self._ids), user)
        now = datetime.now(UTC)
        for query in queries:
            add_query(basket, query, self.catalog, iso(now), self._ids)
        if filters is not None:
            for selection in basket.selections:
                selection.file_filter = filters
        label = f"Generated order {iso(now)}"
        if any(o.owner == user and o.label == label for o in self._orders.values()):
            raise SelectionRefused(
                "EntityInvalidException: LABEL_NOT_UNIQUE_FOR_OWNER", "INTERNAL_ERROR"
            )
        del self._baskets[user]
        return self._create_order(basket, label, correlation_id, now)

    def _create_order(
        self, basket: Basket, label: str, correlation_id: str, now: datetime
    ) -> Order:
        order_id = 1 + max(self._orders, default=0)
        expiration = iso(now + timedelta(days=7))
        order = Order(order_id, basket.owner, label, "current", expiration, iso(now))
        order.status_date, order.correlation_id = iso(now), correlation_id
        tasks: list[tuple[DatasetTask, list[SimFile]]] = []
        for selection in basket.selections:
            try:
                chosen = list(selection.files(self.catalog))
            except re.error:
                # The server fails while completing the order: it never gets any file.
                order.status, order.history = "FAILED", ["PENDING", "FAILED"]
                chosen = []
            files = []
            for product, f in chosen:
                resolved = ResolvedFile(
                    id=self._next_file_id,
                    order_id=order_id,
                    filename=f.filename,
                    size=f.size,
                    product_id=product.provider_id,
                    mime_type=f.mime_type,
                    in_error=f.in_error,
                    checksum=None,
                    faults=f.faults,
                    content=f.content,
                    ip_id=product.id,
                    data_type=f.data_type,
                )
                self._next_file_id += 1
                files.append(SimFile(resolved, order, FaultQueue(f.faults)))
            if files:
                products = len({p.id for p, _ in chosen})
                task = DatasetTask(
                    next(self._task_ids), selection.dataset.label, products, selection.file_filter
                )
                tasks.append((task, files))
        self._register(order, tasks)
        return order

    # ---- order actions -----------------------------------------------------------------

    def act(self, action: str, order_id: int, user: str) -> None:
        """pause, resume, delete or retry an order; 404 unknown, 401 not allowed."""
        with self._lock:
            self._tick()
            order = self._orders.get(order_id)
            if order is None:
                raise ApiError(404, f"Order {order_id} not found")
            if order.owner != user:
                raise ApiError(401, "USER_NOT_ALLOWED_TO_MANAGE_ORDER")
            if order.status not in _ALLOWED[action]:
                raise ApiError(401, _REFUSED[action])
            getattr(self, f"_{action}")(order)
            self._tick()

    def _pause(self, order: Order) -> None:
        # Restorations under way are stopped: their files stay PENDING, to start again later.
        for sub in order.suborders:
            if sub.state == "RESTORING":
                sub.state = "PENDING"
        order.set_status("PAUSED")

    def _resume(self, order: Order) -> None:
        order.set_status("RUNNING")

    def _delete(self, order: Order) -> None:
        for f in order.files:
            self._files.pop(f.spec.id, None)
        for sub in order.suborders:
            sub.state = "DONE"
        order.waiting = False
        order.set_status("DELETED")

    def _retry(self, order: Order) -> None:
        # Files in ERROR or DOWNLOAD_ERROR go back to PENDING, in new suborders of their task.
        for task in order.dataset_tasks:
            again = [f for f in task.files if f.state in ("ERROR", "DOWNLOAD_ERROR")]
            for f in again:
                f.suborder = None
                f.move("PENDING")
                f.download_error = None
            sc = self.scenario
            for group in split(again, sc.suborder_max_files, sc.suborder_max_bytes):
                sub = SubOrder(next(self._suborder_ids), order, group)
                for f in group:
                    f.suborder = sub
                order.suborders.append(sub)
                self._suborders.append(sub)
        order.set_status("RUNNING")


class _Forced(SelectionRefused):
    def __init__(self, fault: ApplyFault) -> None:
        super().__init__(fault.message, fault.error_type)
        self.status = fault.status


def _validated(body: Any) -> tuple[list[str], JSON | None, str | None]:
    """The request's queries, filters (as a fileSelectionDescription) and correlationId."""
    if not isinstance(body, dict):
        raise Invalid(["the body must be a JSON object"])
    messages: list[str] = []
    queries = body.get("queries")
    if not isinstance(queries, list) or not queries:
        messages.append("list of queries should not be empty")
    elif not all(isinstance(q, str) for q in queries):
        messages.append("queries must be strings")
    correlation_id = body.get("correlationId")
    if correlation_id is not None and (not isinstance(correlation_id, str)):
        messages.append("correlationId must be a string")
    elif correlation_id is not None and len(correlation_id) > 255:
        messages.append("provided correlationId must not exceed 255 characters.")
    filters = body.get("filters")
    described = None
    if filters is not None:
        types = filters.get("dataTypes") if isinstance(filters, dict) else None
        pattern = filters.get("filenameRegExp") if isinstance(filters, dict) else None
        if not isinstance(types, list) or not types:
            messages.append(
                "There should be at least one datatype to order. DataType can be RAWDATA or "
                "QUICKLOOK"
            )
        elif not set(types) <= _DATA_TYPES:
            messages.append(f"unknown data types: {sorted(set(map(str, types)) - _DATA_TYPES)}")
        elif pattern is not None and not isinstance(pattern, str):
            messages.append("filenameRegExp must be a string")
        else:
            described = file_filter(types, pattern)
    if messages:
        raise Invalid(messages)
    return [str(q) for q in queries or ()], described, correlation_id
