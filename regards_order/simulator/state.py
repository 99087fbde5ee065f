"""State machine of the REGARDS simulator: tokens, orders, suborders, files, quotas, statistics.

Everything lives behind one lock. Time is evaluated lazily: every entry point first calls
``_tick()``, which finishes due restorations, retires drained suborders, starts pending ones
within each user's limit of active (RESTORING or WAITING) suborders, then runs what the real
server's order maintenance runs every second (``records.Order.maintain``).

The rules modelled on rs-order:

- A file becomes DOWNLOADED only once its whole body has been read. Any other end of a served
  download (a body cut short, a client gone) and every non-200 answer passed through from storage
  (a per-file ``status`` fault, a download quota exceeded) makes it DOWNLOAD_ERROR, with the
  message the server records in ``downloadError``. The order service's own refusals (403 not
  yours, 422 file in ERROR, 202 file still PENDING) leave the file as it is.
- A suborder waits for the user while it holds an AVAILABLE file: a DOWNLOAD_ERROR file does not
  hold it, so the next suborder may start.
- While an order is RUNNING (or PAUSED): ``percentCompleted`` is the share of its bytes restored
  (any state but PENDING), ``filesInErrorCount`` its ERROR files, ``availableFilesCount`` its
  AVAILABLE files; at 100 % it becomes DONE, FAILED (every file in ERROR) or DONE_WITH_WARNING.
  Those values then freeze, except that once no suborder waits for the user, a DONE order with a
  DOWNLOAD_ERROR file turns DONE_WITH_WARNING (for good), and ``availableFilesCount`` drops to 0
  when nothing is AVAILABLE any more.
- An order without any file has no dataset task: DONE_WITH_WARNING from the start.
- rs-storage's download quota: beyond ``rate_limit`` simultaneous downloads or ``max_quota``
  downloads of a user, storage answers 429, which rs-order passes through (DOWNLOAD_ERROR).

Baskets, auto-orders and order actions are in ``ordering`` (a part of ``SimState``).
"""

from __future__ import annotations

import http
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from regards_order.simulator.basket import Basket, SelectionRefused, add_query
from regards_order.simulator.catalog import SimCatalog
from regards_order.simulator.content import content_md5
from regards_order.simulator.errors import ApiError
from regards_order.simulator.ordering import OrderingMixin
from regards_order.simulator.records import (
    GONE,
    DatasetTask,
    DownloadPlan,
    FaultQueue,
    Order,
    SimFile,
    SubOrder,
    iso,
    page,
    split,
)
from regards_order.simulator.scenario import (
    Endpoint,
    GlobalFault,
    Scenario,
    StatusFault,
)

JSON = dict[str, Any]
ENDPOINTS: tuple[Endpoint, ...] = (
    "token",
    "order",
    "files",
    "download",
    "dataset_files",
    "search",
    "basket",
    "apply",
    "quota",
)
FINAL_STATUSES = frozenset({"DONE", "DONE_WITH_WARNING", "FAILED"})
_ACTIVE = frozenset({"RESTORING", "WAITING"})
_SERVABLE = frozenset({"AVAILABLE", "DOWNLOADED", "DOWNLOAD_ERROR"})
_HELD = frozenset({"PAUSED", "EXPIRED", "DELETED"})  # orders whose suborders never start

__all__ = ["FINAL_STATUSES", "ApiError", "DownloadPlan", "SimState", "iso"]


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _scrambled(files: list[SimFile]) -> list[SimFile]:
    # rs-order pages a dataset task's files in the order of a hash set: stable, not by id.
    return sorted(files, key=lambda f: (f.spec.id * 2654435761) % 2**32)


class SimState(OrderingMixin):
    """Thread-safe state of a simulated REGARDS server built from a ``Scenario``."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._lock = threading.Lock()
        self.catalog = SimCatalog(scenario.catalog, scenario.project)
        self._orders: dict[int, Order] = {}
        self._files: dict[int, SimFile] = {}
        self._suborders: list[SubOrder] = []
        self._tasks: dict[int, DatasetTask] = {}
        self._by_uri: dict[tuple[str, str], SimFile] = {}
        self._suborder_ids: Iterator[int] = count(1)
        self._task_ids: Iterator[int] = count(1)
        self._ids: Iterator[int] = count(1)  # baskets and dataset selections
        self._ready = False
        now = datetime.now(UTC)
        resolved = scenario.resolve()
        self._next_file_id = 1 + max((f.id for fs in resolved.values() for f in fs), default=0)
        for spec in sorted(scenario.orders, key=lambda o: o.id):
            order = Order(
                spec.id,
                spec.owner,
                spec.label,
                spec.dialect,
                spec.expiration_date or iso(now + timedelta(days=7)),
                iso(now),
                status_date=iso(now),
            )
            if spec.state != "normal":
                order.status = spec.state.upper()
                order.history = [order.status]
            files = [SimFile(r, order, FaultQueue(r.faults)) for r in resolved[spec.id]]
            products = len({r.product_id for r in resolved[spec.id]})
            task = DatasetTask(next(self._task_ids), spec.dataset_label, products)
            self._register(order, [(task, files)] if files else [])
        self._passwords = {u.username: u.password for u in scenario.users}
        self._clients: dict[int, set[str]] = {}
        self._request_times: dict[int, list[float]] = {}
        # token -> (username, monotonic expiry or None for long-lived tokens)
        self._tokens: dict[str, tuple[str, float | None]] = {
            t: (u.username, None) for u in scenario.users for t in u.tokens
        }
        self._global = {
            ep: FaultQueue(f for f in scenario.faults if f.endpoint == ep) for ep in ENDPOINTS
        }
        users = [u.username for u in scenario.users] + [o.owner for o in scenario.orders]
        # logins, unauthorized, bytes_sent, downloads_completed, downloads_aborted, ...
        self._counts: Counter[str] = Counter()
        self._look_times: dict[str, list[float]] = {"order": [], "files": []}
        self._requests = dict.fromkeys(ENDPOINTS, 0)
        self._in_flight: Counter[str] = Counter()
        self._max_in_flight = dict.fromkeys(users, 0)
        self._max_active = dict.fromkeys(users, 0)
        self._limits = {u.username: (u.rate_limit, u.max_quota) for u in scenario.users}
        self._quota_used: Counter[str] = Counter()
        self._init_ordering()
        self._baskets: dict[str, Basket] = {}
        for user in scenario.users:
            if user.basket is not None:
                self._baskets[user.username] = self._initial_basket(user.username, user.basket)

    def _initial_basket(self, owner: str, queries: list[str]) -> Basket:
        basket = Basket(next(self._ids), owner)
        for query in queries:
            try:
                add_query(basket, query, self.catalog, iso(datetime.now(UTC)), self._ids)
            except SelectionRefused as exc:
                raise ValueError(f"basket of {owner}: {query!r}: {exc.message}") from exc
        return basket

    def _register(self, order: Order, tasks: list[tuple[DatasetTask, list[SimFile]]]) -> None:
        """File an order with its dataset tasks: suborders cut per task, counters started."""
        sc = self.scenario
        for task, files in tasks:
            groups = split(files, sc.suborder_max_files, sc.suborder_max_bytes)
            subs = [SubOrder(next(self._suborder_ids), order, group) for group in groups]
            for sub in subs:
                for f in sub.files:
                    f.suborder, f.dataset_task = sub, task
                task.files += _scrambled(sub.files)
            task.files_size += sum(f.spec.size for f in files)
            order.dataset_tasks.append(task)
            order.suborders += subs
            order.add_files(files)
            self._tasks[task.id] = task
            self._suborders += subs
            self._files.update((f.spec.id, f) for f in files)
        self._orders[order.id] = order
        if self._ready:
            self._checksum(order.files)

    # ---- lifecycle -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Compute every checksum now (MD5 of the content unless the scenario imposes one)."""
        with self._lock:
            self._prepare()

    def _prepare(self) -> None:
        if self._ready:
            return
        self._checksum(self._files.values())
        self._ready = True

    def _checksum(self, files: Any) -> None:
        for f in files:
            r = f.spec
            f.checksum = r.checksum or content_md5(*f.content, r.size)
            self._by_uri[(r.product_id, f.checksum)] = f

    def _advance(self, sub: SubOrder, now: float) -> None:
        if sub.state == "RESTORING" and now - sub.started >= self.scenario.restore_seconds:
            sub.state = "WAITING"
            for f in sub.files:
                f.move("ERROR" if f.spec.in_error else "AVAILABLE")
        if sub.state == "WAITING" and sub.available == 0:
            sub.state = "DONE"

    def _tick(self) -> None:
        self._prepare()
        now = time.monotonic()
        active: Counter[str] = Counter()
        for sub in self._suborders:
            self._advance(sub, now)
            active[sub.order.owner] += sub.state in _ACTIVE
        # Pending suborders start first-in first-out (order id, then index) as slots free.
        for sub in self._suborders:
            owner = sub.order.owner
            if sub.state != "PENDING" or sub.order.status in _HELD:
                continue
            if active[owner] >= self.scenario.max_active_suborders:
                continue
            sub.state, sub.started = "RESTORING", now
            self._advance(sub, now)
            active[owner] += sub.state in _ACTIVE
        for owner, n in active.items():
            self._max_active[owner] = max(self._max_active.get(owner, 0), n)
        waiting = {id(sub.order) for sub in self._suborders if sub.state == "WAITING"}
        for order in self._orders.values():
            order.waiting = id(order) in waiting
            order.maintain()

    # ---- authentication --------------------------------------------------------------------

    def enter(self, endpoint: Endpoint) -> GlobalFault | None:
        """Count a request to ``endpoint`` and return the global fault it must answer, if any."""
        with self._lock:
            self._requests[endpoint] += 1
            if endpoint in ("order", "files"):  # the looks at an order, when they came
                self._look_times[endpoint].append(time.time())
            return self._global[endpoint].take()

    def _deny(self, message: str) -> ApiError:
        self._counts["unauthorized"] += 1
        return ApiError(401, message)

    def login(
        self, basic: tuple[str, str] | None, scope: str | None, params: dict[str, str]
    ) -> JSON:
        """OAuth password grant: Basic client credentials plus username/password/grant_type."""
        sc = self.scenario
        with self._lock:
            if basic != (sc.client_id, sc.client_secret):
                raise self._deny("Bad client credentials")
            if scope != sc.project:
                raise ApiError(400, f"Invalid scope {scope!r}")
            if params.get("grant_type") != "password":
                raise ApiError(400, "Unsupported grant_type")
            user, password = params.get("username", ""), params.get("password")
            expected = self._passwords.get(user)
            if expected is None or password != expected:
                raise ApiError(400, "Bad credentials")
            token = secrets.token_urlsafe(32)
            self._tokens[token] = (user, time.monotonic() + sc.token_lifetime)
            self._counts["logins"] += 1
        lifetime = float(sc.token_lifetime)
        return {
            "access_token": token,
            "expires_in": int(lifetime) if lifetime.is_integer() else lifetime,
            "token_type": "bearer",
            "tenant": sc.project,
            "scope": sc.project,
            "role": "REGISTERED_USER",
            "sub": user,
            "email": user,
        }

    def user_for_token(self, token: str | None) -> str:
        """The username behind a bearer token; ``ApiError(401)`` if missing, unknown or expired."""
        with self._lock:
            entry = self._tokens.get(token) if token else None
            if entry is None:
                raise self._deny("Missing or unknown token")
            user, expiry = entry
            if expiry is not None and time.monotonic() >= expiry:
                raise self._deny("Token expired")
            return user

    def issued_tokens(self) -> list[str]:
        """Test helper: every token handed out by a login, so tests can grep output for them."""
        with self._lock:
            return [token for token, (_, expiry) in self._tokens.items() if expiry is not None]

    def expire_tokens(self) -> None:
        """Test helper: every login-issued token expires now (long-lived ones stay valid)."""
        with self._lock:
            now = time.monotonic()
            for token, (user, expiry) in self._tokens.items():
                if expiry is not None:
                    self._tokens[token] = (user, now)

    # ---- orders ----------------------------------------------------------------------------

    def _owned(self, order_id: int, user: str) -> Order:
        order = self._orders.get(order_id)
        if order is None:
            raise ApiError(404, f"Order {order_id} not found")
        if order.owner != user:
            raise ApiError(403, f"Order {order_id} belongs to another user")
        return order

    def order_view(self, order_id: int, user: str) -> JSON:
        """The ``content`` of ``GET /rs-order/user/orders/{id}``."""
        with self._lock:
            self._tick()
            return self._owned(order_id, user).view()

    def orders_page(self, user: str, page_number: int, size: int) -> JSON:
        """``GET /rs-order/user/orders``: a page of the user's orders but DELETED, newest first."""
        if page_number < 0 or size < 1:
            raise ApiError(400, "page must be >= 0 and size >= 1")
        with self._lock:
            self._tick()
            mine = sorted(
                (o for o in self._orders.values() if o.owner == user and o.status != "DELETED"),
                key=lambda o: o.id,
                reverse=True,
            )
            chunk, meta = page(mine, page_number, size)
            content = [{"content": o.view(), "links": []} for o in chunk]
        return {"metadata": meta, "content": content, "links": []}

    def note_client(self, plan: DownloadPlan, user_agent: str) -> None:
        """Remember which client fetched a file (tests tell processes apart by it)."""
        with self._lock:
            self._clients.setdefault(plan.file_id, set()).add(user_agent)

    def _page_size(self, page_number: int, size: int | None) -> int:
        sc = self.scenario
        if page_number < 0 or (size is not None and size < 1):
            raise ApiError(400, "page must be >= 0 and size >= 1")
        return min(size or sc.default_page_size, sc.max_page_size)

    def available(
        self, order_id: int, user: str, page_number: int, size: int | None, base_url: str
    ) -> tuple[int, JSON | None]:
        """HTTP status and body of the available-files listing, in the order's dialect."""
        size = self._page_size(page_number, size)
        with self._lock:
            self._tick()
            order = self._owned(order_id, user)
            if order.status in GONE:
                raise ApiError(404, f"Order {order_id} is {order.status}")
            files = [
                f
                for s in order.suborders
                if s.state == "WAITING"
                for f in s.files
                if f.state == "AVAILABLE"
            ]
            final = order.status in FINAL_STATUSES
            chunk, meta = page(files, page_number, size)
            items = [f.available_item(order.dialect, base_url) for f in chunk]
        total, dialect = len(files), order.dialect
        if dialect == "docs":
            meta["size:"] = meta.pop("size")
            status = 200 if final else 206 if total else 204
            return status, ({"metadata": meta, "content": items} if status != 204 else None)
        href = f"{base_url}/api/v1/rs-order/orders/{order_id}/files/available?size={size}&page="
        return 200, {"metadata": meta, "content": items, "links": _links(href, meta)}

    def dataset_files(
        self, task_id: int, page_number: int, size: int | None, base_url: str, order_id: int
    ) -> JSON:
        """``/orders/{o}/dataset/{task}/files``: every file of a dataset task, in any state.

        As ``OrderDataFileController.findFiles``: the order id of the path is not looked at,
        nor who owns the order, and an unknown task fails inside the server (500).
        """
        if not self.scenario.dataset_files_endpoint:
            raise ApiError(404, "No route for this path")
        size = self._page_size(page_number, size)
        with self._lock:
            self._tick()
            task = self._tasks.get(task_id)
            if task is None:
                raise ApiError(500, "java.lang.NullPointerException")
            chunk, meta = page(task.files, page_number, size)
            items = [{"content": f.entity(), "links": []} for f in chunk]
        href = f"{base_url}/api/v1/rs-order/orders/{order_id}/dataset/{task_id}/files?size={size}"
        return {"metadata": meta, "content": items, "links": _links(href + "&page=", meta)}

    # ---- downloads -------------------------------------------------------------------------

    def begin_download(self, user: str, key: int | tuple[str, str]) -> DownloadPlan:
        """Check a download by file id or (productId, checksum); raise the error to answer.

        File faults only apply to requests that would otherwise be served, so a client polling
        a not-yet-restored file does not use them up.
        """
        with self._lock:
            self._tick()
            f = self._files.get(key) if isinstance(key, int) else self._by_uri.get(key)
            if f is None:
                raise ApiError(404, "File not found")
            f.counts["requests"] += 1
            self._request_times.setdefault(f.spec.id, []).append(time.time())
            order = f.order
            if order.owner != user:
                raise ApiError(403, "File belongs to another user's order")
            if order.status in GONE:
                raise ApiError(404, f"Order {order.id} is {order.status}")
            if f.state == "ERROR":
                raise ApiError(422, "File is in error")
            if f.state not in _SERVABLE:
                raise ApiError(202, "File is not restored yet")
            refusal = self._quota_refusal(user)
            if refusal is not None:
                f.fail_download(_phrase(429))
                raise ApiError(429, refusal, self.scenario.quota_retry_after)
            fault = f.faults.take()
            if isinstance(fault, StatusFault):
                # rs-order passes storage's answer through and records its reason phrase.
                phrase = _phrase(fault.status)
                f.fail_download(phrase)
                raise ApiError(
                    fault.status, f"Simulated storage answer: {phrase}", fault.retry_after
                )
            self._quota_used[user] += 1
            self._in_flight[user] += 1
            self._max_in_flight[user] = max(self._max_in_flight.get(user, 0), self._in_flight[user])
            r = f.spec
            return DownloadPlan(r.id, f.content, user, r.filename, r.size, r.mime_type, fault)

    def _quota_refusal(self, user: str) -> str | None:
        """rs-storage's message when the user's quota or rate is exceeded, else None."""
        rate_limit, max_quota = self._limits.get(user, (-1, -1))
        used, rate = self._quota_used[user], self._in_flight[user]
        if max_quota >= 0 and used >= max_quota:
            return (
                f"Download quota of {max_quota} exceeded (by {used - max_quota}) for user {user}."
            )
        if rate_limit >= 0 and rate >= rate_limit:
            return (
                f"Download rate of {rate_limit} exceeded (by {rate - rate_limit}) for user {user}."
            )
        return None

    def quota(self, user: str) -> JSON:
        """``GET /rs-storage/quota/current``: the user's limits (-1: none) and current values."""
        endpoint = self.scenario.quota_endpoint
        if endpoint != "present":
            raise ApiError(404 if endpoint == "absent" else 403, f"quota endpoint is {endpoint}")
        with self._lock:
            rate_limit, max_quota = self._limits.get(user, (-1, -1))
            return {
                "email": user,
                "maxQuota": max_quota,
                "rateLimit": rate_limit,
                "currentQuota": self._quota_used[user],
                "currentRate": self._in_flight[user],
            }

    def written(self, plan: DownloadPlan, n: int) -> None:
        """Count bytes as they leave, so a test can act while a body is midway."""
        with self._lock:
            self._files[plan.file_id].counts["bytes_written"] += n

    def end_download(self, plan: DownloadPlan, sent: int, complete: bool) -> None:
        """Record the outcome of a served download: DOWNLOADED if complete, else DOWNLOAD_ERROR."""
        with self._lock:
            f = self._files.get(plan.file_id)
            self._in_flight[plan.user] -= 1
            outcome = "completed" if complete else "aborted"
            self._counts.update({"bytes_sent": sent, f"downloads_{outcome}": 1})
            if f is None:  # its order was deleted meanwhile
                return
            f.counts.update({"bytes_sent": sent, outcome: 1})
            if complete:
                f.move("DOWNLOADED")
            else:
                f.fail_download(
                    "Cannot completely retrieve data file from storage, "
                    f"only {sent}/{plan.size} bytes"
                )
            self._tick()

    # ---- introspection ---------------------------------------------------------------------

    def file_ids(self, order_id: int) -> list[int]:
        """Test helper: ids of an order's files, sorted."""
        return sorted(f.spec.id for f in self._orders[order_id].files)

    def file_names(self, order_id: int) -> list[str]:
        """Test helper: names of an order's files, sorted."""
        return sorted(f.spec.filename for f in self._orders[order_id].files)

    def file_state(self, file_id: int) -> str:
        """Test helper: PENDING, AVAILABLE, DOWNLOADED, DOWNLOAD_ERROR or ERROR."""
        with self._lock:
            self._tick()
            return self._files[file_id].state

    def stats(self) -> JSON:
        """JSON-serialisable counters (see the simulator's documentation)."""
        with self._lock:
            self._tick()
            keys = ("requests", "bytes_sent", "bytes_written", "completed", "aborted")
            zero = dict.fromkeys((*keys, "download_errors"), 0)
            files = {
                str(i): zero
                | f.counts
                | {
                    "state": f.state,
                    "download_error": f.download_error,
                    "clients": sorted(self._clients.get(i, ())),
                    "requested_at": self._request_times.get(i, []),
                }
                for i, f in self._files.items()
            }
            orders = {
                str(i): {
                    "status": o.status,
                    "history": list(o.history),
                    "suborders": [s.state for s in o.suborders],
                }
                for i, o in self._orders.items()
            }
            totals = (
                "logins",
                "unauthorized",
                "bytes_sent",
                "downloads_completed",
                "downloads_aborted",
            )
            return {
                **{key: self._counts[key] for key in totals},
                "requests": dict(self._requests),
                "look_times": {name: list(times) for name, times in self._look_times.items()},
                "downloads_in_flight": sum(self._in_flight.values()),
                "files": files,
                "orders": orders,
                "max_concurrent_downloads": dict(self._max_in_flight),
                "max_active_suborders": dict(self._max_active),
                "quota_used": dict(self._quota_used),
                "catalog": self._catalog_stats(),
            }


def _links(href: str, meta: JSON) -> list[JSON]:
    """Spring's self and next links of a page (``href`` ends with ``page=``)."""
    links = [{"rel": "self", "href": f"{href}{meta['number']}"}]
    if meta["number"] + 1 < meta["totalPages"]:
        links.append({"rel": "next", "href": f"{href}{meta['number'] + 1}"})
    return links
