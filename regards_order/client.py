"""The REGARDS HTTP client: log in, read an order, list its available files, stream a file;
search the catalogue, read and empty the basket, auto-order, read the download quota, list
every file of an order.

This module is the only one that speaks HTTP to REGARDS. It knows nothing of files on disk.
One client serves every thread of a process (`shared_client`): httpx pools the connections.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from regards_order import __version__
from regards_order.auth import BearerAuth, Token, token_from_login_answer
from regards_order.errors import (
    STATUS_ERRORS,
    AuthenticationError,
    ConfigurationError,
    EndpointAbsent,
    InvalidQuery,
    MalformedResponse,
    OrderRefused,
    RegardsOrderError,
    ServerError,
    TransportError,
    TruncatedBody,
    parse_retry_after,
)
from regards_order.models import (
    Basket,
    DataType,
    FilePage,
    Order,
    OrderFile,
    OrderGrant,
    Product,
    ProductPage,
    Quota,
    ServerFile,
    ServerFilePage,
    parse_apply_answer,
    parse_basket,
    parse_order,
    parse_order_page,
    parse_page,
    parse_product_page,
    parse_quota,
    parse_server_file_page,
    printable,
)
from regards_order.settings import Connection

_MARKUP = re.compile(r"<[^>]*>")

#: Connections for the calls about orders (logins, looks, listings) and how long one may wait
#: for a connection of that pool.
API_CONNECTIONS = 8
API_POOL_TIMEOUT = 60.0

#: Idle connections kept for file bodies (more transfers than that open new ones).
KEPT_ALIVE = 64


@dataclass
class Download:
    """An open file body: its announced size and an iterator over its chunks."""

    response: httpx.Response
    size: int | None

    def chunks(self) -> Iterator[bytes]:
        """The body in chunks; a broken or short body raises TruncatedBody or TransportError."""
        received = 0
        try:
            # httpx's own pieces as they come: asking for bigger chunks makes it copy them
            # together, which cost a third of the CPU of a large file.
            for chunk in self.response.iter_bytes():
                received += len(chunk)
                yield chunk
        except httpx.RemoteProtocolError as error:
            raise TruncatedBody(
                f"the connection closed after {received} bytes"
                + (f" of {self.size}" if self.size is not None else "")
                + f" ({error})"
            ) from None
        except httpx.TransportError as error:
            raise TransportError(f"the download broke after {received} bytes: {error!r}") from None
        if self.size is not None and received < self.size:
            raise TruncatedBody(f"the body ended after {received} of {self.size} bytes")


class RegardsClient:
    """Calls to one REGARDS server on behalf of one user."""

    def __init__(self, connection: Connection) -> None:
        problem = connection.credentials_problem()
        if problem is not None:
            raise ConfigurationError(problem)
        self.connection = connection
        verify: ssl.SSLContext | bool = connection.verify_tls
        if connection.ca_bundle:
            verify = ssl.create_default_context(cafile=connection.ca_bundle)
        token = connection.token.get_secret_value() if connection.token is not None else None
        self._auth = BearerAuth(login=None if token else self._login, token=token)
        settings = {
            "auth": self._auth,
            "verify": verify,
            "follow_redirects": True,
            # The pid tells a server's logs (and the tests) which process fetched what.
            "headers": {"User-Agent": f"regards-order/{__version__} (pid {os.getpid()})"},
        }
        read = connection.read_timeout
        # Looks at the order have a pool of their own: they never wait behind file bodies.
        self._api = httpx.Client(
            timeout=httpx.Timeout(connect=15.0, read=read, write=60.0, pool=API_POOL_TIMEOUT),
            limits=httpx.Limits(max_connections=API_CONNECTIONS),
            **settings,  # type: ignore[arg-type]
        )
        # Bodies: as many connections as transfers in flight (their number is bounded by the
        # transfer pool), so a transfer never waits for a connection.
        self._files = httpx.Client(
            timeout=httpx.Timeout(connect=15.0, read=read, write=60.0, pool=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=KEPT_ALIVE),
            **settings,  # type: ignore[arg-type]
        )
        self._origin = _origin(connection.host)

    def close(self) -> None:
        """Close the pooled connections."""
        self._api.close()
        self._files.close()

    # -- authentication -------------------------------------------------------------------

    def _login(self) -> Token:
        connection = self.connection
        assert connection.username is not None and connection.password is not None
        credentials = {
            "username": connection.username,
            "password": connection.password.get_secret_value(),
            "grant_type": "password",
        }
        response = self._send(
            "POST",
            f"{connection.api_url}/rs-authentication/oauth/token",
            what="login",
            params={"scope": connection.project},
            json=credentials,
            auth=httpx.BasicAuth(connection.client_id, connection.client_secret_value),
        )
        if response.status_code == 400:
            raise AuthenticationError(
                f"login refused for user {connection.username!r} on project "
                f"{connection.project!r}: wrong username, password or project"
            )
        if response.status_code == 401:
            raise AuthenticationError(
                f"the token endpoint refused the client credentials (client id "
                f"{connection.client_id!r}): check --client-id and --client-secret"
            )
        _raise_for_status(response, "login")
        return token_from_login_answer(_json(response, "login"), now=time.monotonic())

    def check_credentials(self) -> None:
        """Log in now (or accept the given token) so that bad credentials fail early."""
        self._auth.current()

    # -- orders ---------------------------------------------------------------------------

    def get_order(self, order_id: int) -> Order:
        """The order's current status and counts."""
        what = f"order {order_id}"
        response = self._send(
            "GET", f"{self.connection.api_url}/rs-order/user/orders/{order_id}", what=what
        )
        _raise_for_status(response, what)
        return parse_order(_json(response, what))

    def iter_orders(self, page_size: int = 100) -> Iterator[Order]:
        """Every order of the user, page after page (the server lists the newest first)."""
        what = "the user's orders"
        page = 0
        while True:
            response = self._send(
                "GET",
                f"{self.connection.api_url}/rs-order/user/orders",
                what=what,
                params={"page": page, "size": page_size},
            )
            _raise_for_status(response, what)
            current = parse_order_page(_json(response, what), requested_page=page)
            yield from current.orders
            if not current.has_next:
                return
            page += 1

    def available_page(self, order_id: int, page: int, size: int) -> FilePage:
        """One page of the files of the order that are available now."""
        what = f"the available files of order {order_id}"
        response = self._send(
            "GET",
            f"{self.connection.api_url}/rs-order/orders/{order_id}/files/available",
            what=what,
            params={"page": page, "size": size},
        )
        _raise_for_status(response, what)
        if response.status_code == 204 or not response.content.strip():
            if response.status_code == 204:
                return parse_page(None, requested_page=page)
            raise MalformedResponse(f"{what}: the server answered an empty body")
        return parse_page(_json(response, what), requested_page=page)

    def iter_available(self, order_id: int, page_size: int) -> Iterator[OrderFile]:
        """Every available file, page after page.

        The list shrinks while files are downloaded, so a walk over it may miss some: callers
        track files by key and list again later.
        """
        page = 0
        while True:
            current = self.available_page(order_id, page, page_size)
            yield from current.files
            if not current.has_next:
                return
            page += 1

    def order_files_page(
        self, order_id: int, dataset_task_id: int, page: int, size: int
    ) -> ServerFilePage:
        """One page of every file of one dataset task of the order, in any state.

        EndpointAbsent (a NotFound) on 404: older servers do not have this endpoint; then only
        the available list and the delivery record know the order's files.
        """
        what = f"the files of dataset task {dataset_task_id} of order {order_id}"
        response = self._send(
            "GET",
            f"{self.connection.api_url}/rs-order/orders/{order_id}/dataset/{dataset_task_id}/files",
            what=what,
            params={"page": page, "size": size},
        )
        if response.status_code == 404:
            raise EndpointAbsent(
                f"{what}: HTTP 404: this server does not list every file of an order"
            )
        _raise_for_status(response, what, ok=(200,))
        return parse_server_file_page(_json(response, what), requested_page=page)

    def iter_order_files(
        self, order_id: int, dataset_task_id: int, page_size: int = 500
    ) -> Iterator[ServerFile]:
        """Every file of one dataset task of the order, page after page (this list does not
        shrink). EndpointAbsent from the first page where the server lacks the endpoint."""
        page = 0
        while True:
            current = self.order_files_page(order_id, dataset_task_id, page, page_size)
            yield from current.files
            if not current.has_next:
                return
            page += 1

    # -- ordering from the catalogue ------------------------------------------------------

    def search(self, query: str, page: int, size: int) -> ProductPage:
        """One page of the catalogue products `query` (Lucene) finds; InvalidQuery on 400."""
        what = f"the catalogue search {query!r}"
        response = self._send(
            "GET",
            f"{self.connection.api_url}/rs-catalog/engines/legacy/dataobjects/search",
            what=what,
            params={"q": query, "page": page, "size": size},
        )
        if response.status_code == 400:
            detail = _server_message(response)
            raise InvalidQuery(
                f"{what}: the server refused the query" + (f": {detail}" if detail else "")
            )
        _raise_for_status(response, what, ok=(200,))
        return parse_product_page(_json(response, what), requested_page=page)

    def iter_products(self, query: str, page_size: int = 500) -> Iterator[Product]:
        """Every product `query` finds, page after page (the server's order is stable: it
        sorts by URN when asked for no other order)."""
        page = 0
        while True:
            current = self.search(query, page, page_size)
            yield from current.products
            if not current.has_next:
                return
            page += 1

    def basket(self) -> Basket | None:
        """The user's basket, or None when the user has none (204)."""
        what = "the user's basket"
        response = self._send("GET", f"{self.connection.api_url}/rs-order/order/basket", what=what)
        _raise_for_status(response, what, ok=(200, 204))
        if response.status_code == 204 or not response.content.strip():
            return None
        return parse_basket(_json(response, what))

    def empty_basket(self) -> None:
        """Remove everything from the user's basket (nothing happens when there is none)."""
        what = "emptying the user's basket"
        response = self._send(
            "DELETE", f"{self.connection.api_url}/rs-order/order/basket", what=what
        )
        _raise_for_status(response, what, ok=(200, 204))

    def apply(
        self,
        queries: Iterable[str],
        data_types: Iterable[DataType],
        filename_regexp: str | None,
        correlation_id: str,
    ) -> OrderGrant:
        """Auto-order: order what `queries` find, of `data_types`, named as `filename_regexp`
        says (whole names), and everything already in the user's basket.

        OrderRefused on 422. Never call it again after an error without checking the user's
        orders first: the server may have created the order and lost only its answer.
        """
        what = "the auto-order"
        filters: dict[str, object] = {"dataTypes": sorted({t.value for t in data_types})}
        if filename_regexp:
            filters["filenameRegExp"] = filename_regexp
        body = {"queries": list(queries), "filters": filters, "correlationId": correlation_id}
        response = self._send(
            "POST", f"{self.connection.api_url}/rs-order/user/orders/apply", what=what, json=body
        )
        if response.status_code == 422:
            raise _refusal(response, what)
        _raise_for_status(response, what, ok=(200, 201))
        answer = parse_apply_answer(_json(response, what))
        if answer.status is not None and answer.status.upper() != "GRANTED":
            raise _refusal(response, what)
        if answer.order_id is None:
            raise MalformedResponse(f"{what}: the server granted it but gave no order id")
        return OrderGrant(order_id=answer.order_id, correlation_id=answer.correlation_id)

    def quota(self) -> Quota | None:
        """The user's download quota, or None where the server does not tell (404, 403)."""
        what = "the user's download quota"
        response = self._send(
            "GET", f"{self.connection.api_url}/rs-storage/quota/current", what=what
        )
        if response.status_code in (403, 404):
            return None
        _raise_for_status(response, what, ok=(200,))
        return parse_quota(_json(response, what))

    # -- files ----------------------------------------------------------------------------

    def download_url(self, file: OrderFile) -> tuple[str, bool]:
        """The URL to fetch a file from, and whether our credentials may be sent there.

        The server's URL is used when it is on the configured host. Behind proxies a server
        often names another host: a file with an id is then fetched from the documented
        endpoint of the configured host, and the token is never sent to a foreign host.
        """
        if _origin(file.url) == self._origin:
            return file.url, True
        if file.id is not None:
            return f"{self.connection.api_url}/rs-order/orders/files/{file.id}", True
        return file.url, False

    @contextlib.contextmanager
    def open_file(self, file: OrderFile) -> Iterator[Download]:
        """Open a file's body as a stream; the answer's status is checked first."""
        url, authenticated = self.download_url(file)
        what = f"file {file.key} ({file.filename!r})"
        request = self._files.build_request("GET", url)
        try:
            response = self._files.send(
                request, stream=True, auth=self._auth if authenticated else None
            )
        except httpx.TransportError as error:
            raise _transport_error(what, url, error) from None
        try:
            if response.status_code != 200:
                response.read()
                _raise_for_status(response, what, ok=())
            length = response.headers.get("Content-Length")
            size = int(length) if length and length.isdigit() else None
            yield Download(response=response, size=size)
        except httpx.TransportError as error:
            raise _transport_error(what, url, error) from None
        finally:
            response.close()

    # -- plumbing -------------------------------------------------------------------------

    def _send(self, method: str, url: str, *, what: str, **kwargs: object) -> httpx.Response:
        try:
            return self._api.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as error:
            raise _transport_error(what, url, error) from None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _transport_error(what: str, url: str, error: httpx.TransportError) -> TransportError:
    parts = urlsplit(url)
    # Only scheme and host: a URL may carry a token in its query string.
    where = f"{parts.scheme}://{parts.netloc}"
    reason = printable(str(error) or type(error).__name__)
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return TransportError(f"{what}: cannot reach {where}: {reason}")
    if isinstance(error, httpx.TimeoutException):
        return TransportError(f"{what}: {where} stopped answering ({type(error).__name__})")
    return TransportError(f"{what}: the exchange with {where} broke: {reason}")


def _raise_for_status(
    response: httpx.Response, what: str, ok: tuple[int, ...] = (200, 204, 206)
) -> None:
    status = response.status_code
    if status in ok:
        return
    error_class: type[RegardsOrderError] = STATUS_ERRORS.get(status, ServerError)
    detail = _server_message(response)
    message = f"{what}: HTTP {status} {_meaning(status)}" + (f" ({detail})" if detail else "")
    raise error_class(message, retry_after=parse_retry_after(response.headers.get("Retry-After")))


def _refusal(response: httpx.Response, what: str) -> OrderRefused:
    """The error of a refused auto-order: the server's status, error type and message."""
    try:
        body = json.loads(response.content)
        answer = parse_apply_answer(body)
    except (ValueError, MalformedResponse):
        body, answer = None, None
    if answer is None or answer.status is None:
        # Bean validation answers a list of messages and no status.
        messages = body.get("messages") if isinstance(body, dict) else None
        if isinstance(messages, list) and messages:
            detail = "; ".join(" ".join(str(m).split()) for m in messages)[:300]
        else:
            detail = _server_message(response) or f"HTTP {response.status_code}"
        return OrderRefused(f"{what}: the server found the request invalid: {printable(detail)}")
    message = printable(" ".join((answer.message or "").split()))
    kind = f"{answer.status} {answer.error_type}" if answer.error_type else answer.status
    return OrderRefused(
        f"{what}: {kind}" + (f": {message}" if message else ""),
        status=answer.status,
        error_type=answer.error_type,
        server_message=answer.message,
    )


def _meaning(status: int) -> str:
    meanings = {
        202: "not restored from storage yet",
        401: "authentication rejected",
        403: "access denied (not your order?)",
        404: "not found (unknown, or the order expired)",
        410: "gone from the cache",
        422: "in error on the server",
        429: "download quota exceeded",
    }
    if status in meanings:
        return meanings[status]
    return "server error" if status >= 500 else "unexpected answer"


def _server_message(response: httpx.Response) -> str:
    """A short, one-line excerpt of what the server said, if anything useful."""
    try:
        body = response.json()
    except ValueError:
        text = response.text if response.content else ""
        # A firewall's or proxy's HTML page: its words, not its markup.
        return " ".join(_MARKUP.sub(" ", text).split())[:120]
    if isinstance(body, dict):
        for key in ("message", "messages", "error_description", "error"):
            if body.get(key):
                return " ".join(str(body[key]).split())[:200]
    return ""


def _json(response: httpx.Response, what: str) -> object:
    try:
        return json.loads(response.content)
    except ValueError:
        kind = response.headers.get("Content-Type", "no content type").split(";")[0]
        excerpt = " ".join(response.text.split())[:80]
        raise MalformedResponse(
            f"{what}: the server answered {kind}, not JSON: {excerpt!r}"
        ) from None


_shared: dict[Connection, RegardsClient] = {}
_holders: Counter[Connection] = Counter()
_shared_lock = threading.Lock()


def shared_client(connection: Connection) -> RegardsClient:
    """The process-wide client of one connection, created on first use."""
    with _shared_lock:
        client = _shared.get(connection)
        if client is None:
            client = _shared[connection] = RegardsClient(connection)
        return client


@contextlib.contextmanager
def client_held(connection: Connection) -> Iterator[RegardsClient]:
    """The shared client of `connection` for the length of a run: closed once no run holds it
    any more (a long-lived worker sees many connections come and go)."""
    with _shared_lock:
        _holders[connection] += 1
    try:
        yield shared_client(connection)
    finally:
        with _shared_lock:
            _holders[connection] -= 1
            if _holders[connection] <= 0:
                del _holders[connection]
                client = _shared.pop(connection, None)
                if client is not None:
                    client.close()


@atexit.register
def _close_shared() -> None:
    with _shared_lock:
        for client in _shared.values():
            client.close()
        _shared.clear()
