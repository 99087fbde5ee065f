"""State machine of the REGARDS simulator: tokens, orders, suborders, files and statistics.

Everything lives behind one lock. Time is evaluated lazily: every entry point first calls
``_tick()``, which finishes due restorations, retires drained suborders, starts pending ones
within each user's limit of active (RESTORING or WAITING) suborders, then runs what the real
server's order maintenance runs every second (``_maintain``).

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
"""

from __future__ import annotations

import http
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from regards_order.simulator.content import content_md5
from regards_order.simulator.scenario import (
    AnyFileFault,
    Endpoint,
    FaultBase,
    GlobalFault,
    OrderSpec,
    ResolvedFile,
    Scenario,
    StatusFault,
)

JSON = dict[str, Any]
ENDPOINTS: tuple[Endpoint, ...] = ("token", "order", "files", "download")
FINAL_STATUSES = frozenset({"DONE", "DONE_WITH_WARNING", "FAILED"})
# Orders whose completion the maintenance recomputes, and those it only tidies up.
_COMPUTED = frozenset({"RUNNING", "PAUSED"})
_FINISHED = frozenset({"DONE", "DONE_WITH_WARNING", "FAILED", "EXPIRED"})
_ACTIVE = frozenset({"RESTORING", "WAITING"})
_SERVABLE = frozenset({"AVAILABLE", "DOWNLOADED", "DOWNLOAD_ERROR"})
_GONE = frozenset({"expired", "deleted"})

F = TypeVar("F", bound=FaultBase)


class ApiError(Exception):
    """An error answer: HTTP status, message, optional ``Retry-After`` seconds."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def iso(moment: datetime) -> str:
    """ISO-8601 UTC timestamp with milliseconds and a ``Z``, as REGARDS writes dates."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _FaultQueue(Generic[F]):
    """Faults consumed in list order, each answering its first ``times`` matching requests."""

    def __init__(self, faults: Iterable[F]) -> None:
        self._faults = list(faults)
        self._left = [f.times for f in self._faults]

    def take(self) -> F | None:
        for i, left in enumerate(self._left):
            if left is None:
                return self._faults[i]
            if left > 0:
                self._left[i] = left - 1
                return self._faults[i]
        return None


@dataclass(eq=False)
class _File:
    spec: ResolvedFile
    order: _Order
    faults: _FaultQueue[AnyFileFault]
    suborder: _SubOrder | None = None
    checksum: str = ""
    state: str = "PENDING"
    download_error: str | None = None  # the server's ``downloadError``
    counts: Counter[str] = field(default_factory=Counter)  # requests, bytes_sent, completed...


@dataclass(eq=False)
class _SubOrder:
    order: _Order
    index: int
    files: list[_File]
    state: str = "PENDING"
    started: float = 0.0
    available: int = 0


@dataclass(eq=False)
class _Order:
    spec: OrderSpec
    expiration: str
    created: str
    files: list[_File] = field(default_factory=list)
    suborders: list[_SubOrder] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    status: str = "PENDING"
    status_date: str = ""
    history: list[str] = field(default_factory=lambda: ["PENDING"])
    # What the server stores and the maintenance updates (see the module docstring).
    percent: int = 0
    in_error: int = 0
    available_count: int = 0
    waiting: bool = False
    total_bytes: int = 0
    pending_bytes: int = 0


@dataclass(frozen=True)
class DownloadPlan:
    """What the HTTP layer needs to serve one download; hand it back to ``end_download``."""

    file_id: int
    order_id: int
    user: str
    filename: str
    size: int
    mime_type: str
    fault: AnyFileFault | None  # never a StatusFault: begin_download answers those itself


def _split(files: list[_File], max_files: int, max_bytes: int) -> list[list[_File]]:
    groups: list[list[_File]] = []
    current: list[_File] = []
    current_bytes = 0
    for f in files:
        if current and (len(current) >= max_files or current_bytes + f.spec.size > max_bytes):
            groups.append(current)
            current, current_bytes = [], 0
        current.append(f)
        current_bytes += f.spec.size
    if current:
        groups.append(current)
    return groups


class SimState:
    """Thread-safe state of a simulated REGARDS server built from a ``Scenario``."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._lock = threading.Lock()
        now = datetime.now(UTC)
        default_expiry = iso(now + timedelta(days=7))
        self._orders: dict[int, _Order] = {}
        self._files: dict[int, _File] = {}
        self._suborders: list[_SubOrder] = []
        resolved = scenario.resolve()
        for spec in sorted(scenario.orders, key=lambda o: o.id):
            order = _Order(
                spec, spec.expiration_date or default_expiry, iso(now), status_date=iso(now)
            )
            if spec.state != "normal":
                order.status = spec.state.upper()
                order.history = [order.status]
            order.files = [_File(r, order, _FaultQueue(r.faults)) for r in resolved[spec.id]]
            groups = _split(order.files, scenario.suborder_max_files, scenario.suborder_max_bytes)
            order.suborders = [_SubOrder(order, i, g) for i, g in enumerate(groups)]
            for sub in order.suborders:
                for f in sub.files:
                    f.suborder = sub
            order.counts["PENDING"] = len(order.files)
            order.total_bytes = order.pending_bytes = sum(f.spec.size for f in order.files)
            self._orders[spec.id] = order
            self._files.update((f.spec.id, f) for f in order.files)
            self._suborders += order.suborders
        self._by_uri: dict[tuple[str, str], _File] = {}
        self._passwords = {u.username: u.password for u in scenario.users}
        # token -> (username, monotonic expiry or None for long-lived tokens)
        self._clients: dict[int, set[str]] = {}
        self._request_times: dict[int, list[float]] = {}
        self._tokens: dict[str, tuple[str, float | None]] = {
            t: (u.username, None) for u in scenario.users for t in u.tokens
        }
        self._global = {
            ep: _FaultQueue(f for f in scenario.faults if f.endpoint == ep) for ep in ENDPOINTS
        }
        users = [u.username for u in scenario.users] + [o.owner for o in scenario.orders]
        # logins, unauthorized, bytes_sent, downloads_completed, downloads_aborted
        self._counts: Counter[str] = Counter()
        self._requests = dict.fromkeys(ENDPOINTS, 0)
        self._in_flight: Counter[str] = Counter()
        self._max_in_flight = dict.fromkeys(users, 0)
        self._max_active = dict.fromkeys(users, 0)
        self._ready = False

    # ---- lifecycle -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Compute every checksum now (MD5 of the content unless the scenario imposes one)."""
        with self._lock:
            self._prepare()

    def _prepare(self) -> None:
        if self._ready:
            return
        for f in self._files.values():
            r = f.spec
            f.checksum = r.checksum or content_md5(r.order_id, r.id, r.size)
            self._by_uri[(r.product_id, f.checksum)] = f
        self._ready = True

    def _set(self, f: _File, state: str) -> None:
        # Keep per-order counts and per-suborder AVAILABLE counts incremental: ticks stay cheap.
        order = f.order
        order.counts[f.state] -= 1
        order.counts[state] += 1
        order.pending_bytes += f.spec.size * ((state == "PENDING") - (f.state == "PENDING"))
        if f.suborder is not None:
            f.suborder.available += (state == "AVAILABLE") - (f.state == "AVAILABLE")
        f.state = state

    def _download_error(self, f: _File, message: str) -> None:
        """A download that did not end with the whole body read: what rs-order records."""
        self._set(f, "DOWNLOAD_ERROR")
        f.download_error = message
        f.counts["download_errors"] += 1

    def _advance(self, sub: _SubOrder, now: float) -> None:
        if sub.state == "RESTORING" and now - sub.started >= self.scenario.restore_seconds:
            sub.state = "WAITING"
            for f in sub.files:
                self._set(f, "ERROR" if f.spec.in_error else "AVAILABLE")
        if sub.state == "WAITING" and sub.available == 0:
            sub.state = "DONE"

    def _tick(self) -> None:
        self._prepare()
        now = time.monotonic()
        active: Counter[str] = Counter()
        for sub in self._suborders:
            self._advance(sub, now)
            active[sub.order.spec.owner] += sub.state in _ACTIVE
        # Pending suborders start first-in first-out (order id, then index) as slots free.
        for sub in self._suborders:
            owner = sub.order.spec.owner
            if sub.state != "PENDING" or sub.order.spec.state != "normal":
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
            self._maintain(order)

    def _maintain(self, order: _Order) -> None:
        """What ``OrderMaintenanceService.updateTenantOrdersComputations`` does to one order."""
        counts = order.counts
        if order.status == "PENDING":  # the creation completes: an order with no file is empty
            self._set_status(order, "RUNNING" if order.files else "DONE_WITH_WARNING")
        if order.files and order.status in _COMPUTED:
            total = order.total_bytes
            order.percent = (total - order.pending_bytes) * 100 // total if total else 100
            order.in_error = counts["ERROR"]
            order.available_count = counts["AVAILABLE"]
            if order.percent == 100:
                errors = order.in_error
                if errors == 0:
                    self._set_status(order, "DONE")
                elif errors == len(order.files):
                    self._set_status(order, "FAILED")
                else:
                    self._set_status(order, "DONE_WITH_WARNING")
        elif order.status in _FINISHED and not order.waiting and order.available_count > 0:
            if order.status == "DONE" and counts["DOWNLOAD_ERROR"] > 0:
                self._set_status(order, "DONE_WITH_WARNING")
            if counts["AVAILABLE"] == 0:
                order.available_count = 0

    def _set_status(self, order: _Order, status: str) -> None:
        if status != order.status:
            order.status, order.status_date = status, iso(datetime.now(UTC))
            order.history.append(status)

    # ---- authentication --------------------------------------------------------------------

    def enter(self, endpoint: Endpoint) -> GlobalFault | None:
        """Count a request to ``endpoint`` and return the global fault it must answer, if any."""
        with self._lock:
            self._requests[endpoint] += 1
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

    def _owned(self, order_id: int, user: str) -> _Order:
        order = self._orders.get(order_id)
        if order is None:
            raise ApiError(404, f"Order {order_id} not found")
        if order.spec.owner != user:
            raise ApiError(403, f"Order {order_id} belongs to another user")
        return order

    def order_view(self, order_id: int, user: str) -> JSON:
        """The ``content`` of ``GET /rs-order/user/orders/{id}``."""
        with self._lock:
            self._tick()
            order = self._owned(order_id, user)
            return {
                "id": order.spec.id,
                "owner": order.spec.owner,
                "label": order.spec.label,
                "status": order.status,
                "percentCompleted": order.percent,
                "availableFilesCount": order.available_count,
                "filesInErrorCount": order.in_error,
                "waitingForUser": order.waiting,
                "expirationDate": order.expiration,
                "statusDate": order.status_date,
                "creationDate": order.created,
            }

    def orders_page(self, user: str, page: int, size: int) -> JSON:
        """``GET /rs-order/user/orders``: a page of the user's orders, newest first."""
        if page < 0 or size < 1:
            raise ApiError(400, "page must be >= 0 and size >= 1")
        with self._lock:
            mine = sorted(
                (i for i, o in self._orders.items() if o.spec.owner == user), reverse=True
            )
        views = [{"content": self.order_view(i, user), "links": []} for i in mine]
        chunk = views[page * size : (page + 1) * size]
        meta = {"size": size, "totalElements": len(views), "number": page}
        meta["totalPages"] = math.ceil(len(views) / size)
        return {"metadata": meta, "content": chunk, "links": []}

    def note_client(self, plan: DownloadPlan, user_agent: str) -> None:
        """Remember which client fetched a file (tests tell processes apart by it)."""
        with self._lock:
            self._clients.setdefault(plan.file_id, set()).add(user_agent)

    def available(
        self, order_id: int, user: str, page: int, size: int | None, base_url: str
    ) -> tuple[int, JSON | None]:
        """HTTP status and body of the available-files listing, in the order's dialect."""
        sc = self.scenario
        if page < 0 or (size is not None and size < 1):
            raise ApiError(400, "page must be >= 0 and size >= 1")
        size = min(size or sc.default_page_size, sc.max_page_size)
        with self._lock:
            self._tick()
            order = self._owned(order_id, user)
            if order.spec.state in _GONE:
                raise ApiError(404, f"Order {order_id} is {order.status}")
            files = [
                f
                for s in order.suborders
                if s.state == "WAITING"
                for f in s.files
                if f.state == "AVAILABLE"
            ]
            final = order.status in FINAL_STATUSES
        total, dialect = len(files), order.spec.dialect
        items = [self._item(f, dialect, base_url) for f in files[page * size : (page + 1) * size]]
        meta = {"number": page, "size": size, "totalElements": total}
        meta["totalPages"] = math.ceil(total / size)
        if dialect == "docs":
            meta["size:"] = meta.pop("size")
            status = 200 if final else 206 if total else 204
            return status, ({"metadata": meta, "content": items} if status != 204 else None)
        href = f"{base_url}/api/v1/rs-order/orders/{order_id}/files/available?size={size}&page="
        links = [{"rel": "self", "href": f"{href}{page}"}]
        if page + 1 < meta["totalPages"]:
            links.append({"rel": "next", "href": f"{href}{page + 1}"})
        return 200, {"metadata": meta, "content": items, "links": links}

    def _item(self, f: _File, dialect: str, base_url: str) -> JSON:
        r = f.spec
        listed = r.size if r.listed_size is None else r.listed_size
        size = None if listed == "absent" else listed
        if dialect == "docs":
            uri = f"{base_url}/api/v1/rs-catalog/{r.product_id}/files/{f.checksum}"
            item = {"productId": r.product_id, "checksum": f.checksum, "fileSize": size}
            item |= {"filename": r.filename, "mimeType": r.mime_type, "uri": uri}
            return {k: v for k, v in item.items() if v is not None}
        url = f"{base_url}/api/v1/rs-order/orders/files/{r.id}"
        item = {"id": r.id, "productId": r.product_id}
        item |= {"version": 1, "downloadUrl": url} if dialect == "current" else {"uri": url}
        item |= {"mimeType": r.mime_type, "checksum": f.checksum, "filesize": size}
        item["filename"] = r.filename
        return {"content": {k: v for k, v in item.items() if v is not None}, "links": []}

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
            if order.spec.owner != user:
                raise ApiError(403, "File belongs to another user's order")
            if order.spec.state in _GONE:
                raise ApiError(404, f"Order {order.spec.id} is {order.status}")
            if f.state == "ERROR":
                raise ApiError(422, "File is in error")
            if f.state not in _SERVABLE:
                raise ApiError(202, "File is not restored yet")
            fault = f.faults.take()
            if isinstance(fault, StatusFault):
                # rs-order passes storage's answer through and records its reason phrase.
                phrase = _phrase(fault.status)
                self._download_error(f, phrase)
                raise ApiError(
                    fault.status, f"Simulated storage answer: {phrase}", fault.retry_after
                )
            self._in_flight[user] += 1
            self._max_in_flight[user] = max(self._max_in_flight.get(user, 0), self._in_flight[user])
            r = f.spec
            return DownloadPlan(r.id, r.order_id, user, r.filename, r.size, r.mime_type, fault)

    def written(self, plan: DownloadPlan, count: int) -> None:
        """Count bytes as they leave, so a test can act while a body is midway."""
        with self._lock:
            self._files[plan.file_id].counts["bytes_written"] += count

    def end_download(self, plan: DownloadPlan, sent: int, complete: bool) -> None:
        """Record the outcome of a served download: DOWNLOADED if complete, else DOWNLOAD_ERROR."""
        with self._lock:
            f = self._files[plan.file_id]
            self._in_flight[plan.user] -= 1
            outcome = "completed" if complete else "aborted"
            f.counts.update({"bytes_sent": sent, outcome: 1})
            self._counts.update({"bytes_sent": sent, f"downloads_{outcome}": 1})
            if complete:
                self._set(f, "DOWNLOADED")
            else:
                self._download_error(
                    f,
                    "Cannot completely retrieve data file from storage, "
                    f"only {sent}/{plan.size} bytes",
                )
            self._tick()

    # ---- introspection ---------------------------------------------------------------------

    def file_ids(self, order_id: int) -> list[int]:
        """Test helper: ids of an order's files, sorted."""
        return [f.spec.id for f in self._orders[order_id].files]

    def file_state(self, file_id: int) -> str:
        """Test helper: PENDING, AVAILABLE, DOWNLOADED, DOWNLOAD_ERROR or ERROR."""
        with self._lock:
            self._tick()
            return self._files[file_id].state

    def stats(self) -> JSON:
        """JSON-serialisable counters (see the simulator's documentation)."""
        with self._lock:
            self._tick()
            zero = dict.fromkeys(
                (
                    "requests",
                    "bytes_sent",
                    "bytes_written",
                    "completed",
                    "aborted",
                    "download_errors",
                ),
                0,
            )
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
                "downloads_in_flight": sum(self._in_flight.values()),
                "files": files,
                "orders": orders,
                "max_concurrent_downloads": dict(self._max_in_flight),
                "max_active_suborders": dict(self._max_active),
            }
