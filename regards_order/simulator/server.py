"""HTTP layer of the REGARDS simulator: a stdlib threading HTTP/1.1 server.

Routes (under ``/api/v1``): the OAuth token; rs-order's order, user orders, apply, retry,
pause, resume and delete, available files, every file of a dataset task, file downloads and the
basket; rs-catalog's legacy search and the docs' download path; rs-storage's current quota;
and ``/sim/stats`` (the simulator's own counters).

The stdlib server (rather than an ASGI stack) keeps downloads fast, written straight from a
precomputed chunk with ``sendall``, and gives byte-level control to inject faults such as a
connection closed in the middle of a body.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from regards_order.simulator.content import iter_content
from regards_order.simulator.ordering import Invalid
from regards_order.simulator.scenario import (
    CorruptFault,
    Endpoint,
    GlobalFault,
    Scenario,
    SlowFault,
    StallFault,
    TruncateFault,
)
from regards_order.simulator.state import ApiError, DownloadPlan, SimState

_HTML_REJECT = b"<html><body>Request Rejected</body></html>"
# Global fault kind -> (default status, content type, body); "status" builds a JSON error.
_GLOBAL_FAULTS: dict[str, tuple[int, str, bytes]] = {
    "malformed_json": (200, "application/json", b'{"content": ['),
    "html": (200, "text/html", _HTML_REJECT),
    "empty": (200, "application/json", b""),
    # A listing whose metadata contradicts its content: page 7 of nothing, yet one file.
    "bad_metadata": (
        200,
        "application/json",
        json.dumps(
            {
                "metadata": {"number": 7, "size": 10, "totalElements": 0, "totalPages": 0},
                "content": [
                    {
                        "content": {
                            "id": 999999,
                            "downloadUrl": "http://127.0.0.1:9/api/v1/rs-order/orders/files/999999",
                            "filename": "phantom.bin",
                            "checksum": "0" * 32,
                            "filesize": 1,
                        }
                    }
                ],
            }
        ).encode(),
    ),
}
_DISCONNECTED = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], state: SimState, tls: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self.tls = tls
        scheme = "https" if tls else "http"
        self.base_url = f"{scheme}://{address[0]}:{self.server_address[1]}"
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def server_bind(self) -> None:
        """Bind without HTTPServer's FQDN lookup, which can stall on a slow resolver."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept; with TLS, the handshake happens later in the handler's own thread."""
        connection, address = super().get_request()
        if self.tls is not None:
            connection = self.tls.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that vanish between requests; report anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        # Kept-alive client connections would otherwise outlive a stopped simulator.
        with self.connections_lock:
            for sock in self.connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: with Nagle, each small answer would wait for
    # the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: _Server
    _ROUTES: list[tuple[str, re.Pattern[str], Endpoint | None, str]] = [
        ("POST", re.compile(r"/api/v1/rs-authentication/oauth/token"), "token", "_login"),
        ("GET", re.compile(r"/api/v1/rs-order/user/orders/(\d+)"), "order", "_order"),
        ("DELETE", re.compile(r"/api/v1/rs-order/user/orders/(\d+)"), "order", "_delete"),
        ("GET", re.compile(r"/api/v1/rs-order/user/orders"), "order", "_orders"),
        ("POST", re.compile(r"/api/v1/rs-order/user/orders/apply"), "apply", "_apply"),
        ("PUT", re.compile(r"/api/v1/rs-order/user/orders/(\d+)/retry"), "order", "_retry"),
        ("PUT", re.compile(r"/api/v1/rs-order/user/orders/pause/(\d+)"), "order", "_pause"),
        ("PUT", re.compile(r"/api/v1/rs-order/user/orders/resume/(\d+)"), "order", "_resume"),
        ("GET", re.compile(r"/api/v1/rs-order/orders/(\d+)/files/available"), "files", "_files"),
        (
            "GET",
            re.compile(r"/api/v1/rs-order/orders/(\d+)/dataset/(\d+)/files"),
            "dataset_files",
            "_dataset_files",
        ),
        ("GET", re.compile(r"/api/v1/rs-order/orders/files/(\d+)"), "download", "_download"),
        ("GET", re.compile(r"/api/v1/rs-order/order/basket"), "basket", "_basket"),
        ("DELETE", re.compile(r"/api/v1/rs-order/order/basket"), "basket", "_empty_basket"),
        (
            "GET",
            re.compile(r"/api/v1/rs-catalog/engines/legacy/dataobjects/search"),
            "search",
            "_search",
        ),
        ("GET", re.compile(r"/api/v1/rs-storage/quota/current"), "quota", "_quota"),
        ("GET", re.compile(r"/api/v1/rs-catalog/([^/]+)/files/([^/]+)"), "download", "_download"),
        ("GET", re.compile(r"/sim/stats"), None, "_stats"),
    ]

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: one stderr line per request would swamp benchmarks and test output."""

    def do_GET(self) -> None:
        """Route a GET request."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Route a POST request."""
        self._dispatch("POST")

    def do_PUT(self) -> None:
        """Route a PUT request."""
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        """Route a DELETE request."""
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        """Not part of the API: 405 (without a body, as for any HEAD)."""
        self._dispatch("HEAD")

    do_PATCH = do_OPTIONS = do_HEAD

    # ---- plumbing ----------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            # Chunked request bodies are not supported; closing keeps the stream in sync.
            self.close_connection = True
            return b""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            self.close_connection = True
            raise ApiError(400, "Invalid Content-Length") from exc
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        if status != 204:  # a 204 carries neither a body nor its framing headers
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body and status != 204 and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _error(
        self, status: int, message: str, retry_after: int | None = None, allow: str = ""
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if allow:
            headers["Allow"] = allow
        # REGARDS answers 202 "not restored yet" with an empty body.
        phrase = self.responses.get(status, ("Error",))[0]
        # "messages" as REGARDS' ServerErrorResponse; the rest as Spring's default error body.
        error = {"status": status, "error": phrase, "message": message, "messages": [message]}
        body = b"" if status == 202 else json.dumps(error).encode()
        self._send(status, body, "application/json", headers)

    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body()
            if method not in ("GET", "POST", "PUT", "DELETE"):
                return self._error(405, f"{method} is not supported", allow="GET, POST")
            url = urlsplit(self.path)
            self.pairs = parse_qsl(url.query)
            self.query = dict(self.pairs)
            verbs = []
            for verb, pattern, endpoint, handler in self._ROUTES:
                match = pattern.fullmatch(url.path)
                if match is None:
                    continue
                if verb != method:
                    verbs.append(verb)
                    continue
                fault = self.server.state.enter(endpoint) if endpoint else None
                if fault is not None:
                    return self._global_fault(fault)
                call: Callable[..., None] = getattr(self, handler)
                return call(body, *(unquote(g) for g in match.groups()))
            if verbs:
                return self._error(405, f"{method} not allowed here", allow=", ".join(verbs))
            return self._error(404, f"No route for {url.path}")
        except ApiError as exc:
            return self._error(exc.status, exc.message, exc.retry_after)
        except Invalid as exc:  # bean validation: REGARDS answers 422 with every message
            return self._json(422, {"messages": exc.messages})
        except _DISCONNECTED:
            self.close_connection = True
        except Exception as exc:  # a bad request must never kill the serving thread
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._error(500, f"Simulator error: {exc!r}")
        return None

    def _global_fault(self, fault: GlobalFault) -> None:
        if fault.kind == "status":
            assert fault.status is not None
            return self._error(fault.status, "Simulated fault", fault.retry_after)
        status, ctype, body = _GLOBAL_FAULTS[fault.kind]
        return self._send(fault.status or status, body, ctype)

    def _user(self) -> str:
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else self.query.get("token")
        return self.server.state.user_for_token(token)

    def _basic(self) -> tuple[str, str] | None:
        auth = self.headers.get("Authorization", "")
        if auth[:6].lower() != "basic ":
            return None
        try:
            client, _, secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return client, secret

    # ---- endpoints ---------------------------------------------------------------------------

    def _login(self, body: bytes) -> None:
        params = dict(self.query)
        ctype = self.headers.get("Content-Type", "")
        if body and "json" in ctype:
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise ApiError(400, f"Invalid JSON body: {exc}") from exc
            if not isinstance(data, dict):
                raise ApiError(400, "JSON body must be an object")
            params |= {k: str(v) for k, v in data.items()}
        elif body:
            params |= dict(parse_qsl(body.decode("utf-8", "replace")))
        self._json(200, self.server.state.login(self._basic(), params.get("scope"), params))

    def _order(self, _body: bytes, order_id: str) -> None:
        view = self.server.state.order_view(int(order_id), self._user())
        self._json(200, {"content": view, "links": []})

    def _orders(self, _body: bytes) -> None:
        page, size = _int_param(self.query.get("page"), 0), _int_param(self.query.get("size"), 10)
        self._json(200, self.server.state.orders_page(self._user(), page, size))

    def _files(self, _body: bytes, order_id: str) -> None:
        user = self._user()
        page, size = self._paging()
        state, base = self.server.state, self.server.base_url
        status, payload = state.available(int(order_id), user, page, size, base)
        if payload is None:
            return self._send(status, b"", "application/json")
        return self._json(status, payload)

    def _paging(self, default_size: int | None = None) -> tuple[int, int | None]:
        try:
            number = int(self.query.get("page", "0"))
            size = int(self.query["size"]) if "size" in self.query else default_size
        except ValueError as exc:
            raise ApiError(400, f"Invalid paging parameter: {exc}") from exc
        return number, size

    def _dataset_files(self, _body: bytes, order_id: str, task_id: str) -> None:
        self._user()
        number, size = self._paging()
        state, base = self.server.state, self.server.base_url
        self._json(200, state.dataset_files(int(task_id), number, size, base, int(order_id)))

    def _search(self, _body: bytes) -> None:
        # The catalogue is public: a token is only checked when one is sent.
        sent = self.headers.get("Authorization") or self.query.get("token")
        user = self._user() if sent else None
        number, size = self._paging(20)
        sort = [value for name, value in self.pairs if name == "sort"]
        state, base = self.server.state, self.server.base_url
        self._json(200, state.search(self.query.get("q"), number, size or 20, sort, base, user))

    def _basket(self, _body: bytes) -> None:
        basket = self.server.state.basket(self._user())
        if basket is None:
            return self._send(204, b"", "application/json")
        return self._json(200, {"content": basket, "links": []})

    def _empty_basket(self, _body: bytes) -> None:
        self.server.state.delete_basket(self._user())
        self._send(204, b"", "application/json")

    def _apply(self, body: bytes) -> None:
        user = self._user()
        try:
            request = json.loads(body)
        except ValueError as exc:
            raise ApiError(400, f"Invalid JSON body: {exc}") from exc
        status, answer = self.server.state.apply(user, request)
        self._json(status, answer)

    def _act(self, action: str, order_id: str) -> None:
        self.server.state.act(action, int(order_id), self._user())
        self._send(200, b"", "application/json")

    def _delete(self, _body: bytes, order_id: str) -> None:
        self._act("delete", order_id)

    def _retry(self, _body: bytes, order_id: str) -> None:
        self._act("retry", order_id)

    def _pause(self, _body: bytes, order_id: str) -> None:
        self._act("pause", order_id)

    def _resume(self, _body: bytes, order_id: str) -> None:
        self._act("resume", order_id)

    def _quota(self, _body: bytes) -> None:
        self._json(200, self.server.state.quota(self._user()))

    def _stats(self, _body: bytes) -> None:
        self._json(200, self.server.state.stats())

    def _download(self, _body: bytes, *key: str) -> None:
        file_key = int(key[0]) if len(key) == 1 else (key[0], key[1])
        plan = self.server.state.begin_download(self._user(), file_key)
        self.server.state.note_client(plan, self.headers.get("User-Agent", ""))
        self._sent, self._recorded = 0, False
        try:
            self.send_response(200)
            self.send_header("Content-Type", plan.mime_type)
            self.send_header("Content-Length", str(plan.size))
            self.send_header("Content-Disposition", _disposition(plan.filename, plan.size))
            self.end_headers()
            self._write_body(plan)
        except _DISCONNECTED:
            self.close_connection = True
        finally:
            self._record(plan, self._sent, complete=False)

    def _record(self, plan: DownloadPlan, sent: int, complete: bool) -> None:
        if not self._recorded:
            self._recorded = True
            self.server.state.end_download(plan, sent, complete)

    def _write_body(self, plan: DownloadPlan) -> None:
        fault, size = plan.fault, plan.size
        truncated = isinstance(fault, TruncateFault) and fault.at_byte < size
        stop = fault.at_byte if isinstance(fault, TruncateFault) and truncated else size
        # Byte ranges written back to back; a stall sleeps between its two ranges.
        cut = min(fault.at_byte, size) if isinstance(fault, StallFault) else size
        rate = fault.bytes_per_second if isinstance(fault, SlowFault) else 0
        piece = max(1, min(rate // 20, 1 << 20)) if rate else 1 << 20
        ids, corrupt = (*plan.content, size), isinstance(fault, CorruptFault)
        began = time.monotonic()
        for n, (start, end) in enumerate(((0, min(cut, stop)), (cut, stop))):
            if n and isinstance(fault, StallFault):
                time.sleep(fault.seconds)
            for view in iter_content(*ids, start=start, stop=end, piece=piece, corrupt=corrupt):
                if not truncated and self._sent + len(view) == size:
                    # Record success before the last piece leaves: a client holding the whole
                    # body must find the file DOWNLOADED (a disconnect now would be hidden by
                    # socket buffers on a real server anyway).
                    self._record(plan, size, complete=True)
                self.wfile.write(view)
                self._sent += len(view)
                self.server.state.written(plan, len(view))
                if rate and (delay := began + self._sent / rate - time.monotonic()) > 0:
                    time.sleep(delay)
        # Likewise, record the abort before the client can see the connection close.
        self._record(plan, self._sent, complete=not truncated)
        if truncated:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)


def _int_param(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"not a number: {value!r}") from None


def _disposition(filename: str, size: int) -> str:
    """A Content-Disposition a client can parse whatever the name holds (RFC 6266/5987):
    an ASCII fallback without quotes or control characters, and the exact name encoded."""
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in filename)
    exact = urllib.parse.quote(filename, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}; size={size}"


class Simulator:
    """A simulated REGARDS server on a background thread; a context manager."""

    def __init__(
        self,
        scenario: Scenario,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.scenario = scenario
        self.host = host
        self.tls = tls
        self.state = SimState(scenario)
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _live(self) -> _Server:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server

    @property
    def port(self) -> int:
        """The bound port (once started)."""
        return int(self._live().server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``; clients append ``/api/v1/...``."""
        return self._live().base_url

    def start(self) -> Simulator:
        """Hash every file, bind the port and serve on a daemon thread."""
        if self._server is not None:
            return self
        self.state.prepare()
        self._server = _Server((self.host, self._requested_port), self.state, self.tls)
        # A short poll interval makes stop() (and so every test) return quickly.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="regards-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and join the server thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def stats(self) -> dict[str, Any]:
        """The statistics also served at ``/sim/stats``."""
        return self.state.stats()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve(scenario: Scenario, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run a simulator in the foreground until SIGTERM or SIGINT, then shut down cleanly."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with Simulator(scenario, host=host, port=port) as sim:
            print(f"REGARDS simulator listening on {sim.url}", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass  # the normal way out: the with block has already stopped the server
    finally:
        signal.signal(signal.SIGTERM, previous)
