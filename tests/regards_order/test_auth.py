"""Logging in and renewing, through httpx's MockTransport (a real transport, in memory)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from regards_order.auth import BearerAuth, Token, token_from_login_answer


class Server:
    """Accepts only the latest token it issued; counts logins."""

    def __init__(self, hold: int = 1) -> None:
        self.logins = 0
        self.valid = ""
        self.rejected = 0
        self._lock = threading.Lock()
        #: Refusals wait for one another: every caller holds the old token when refused.
        self._hold = threading.Barrier(hold)

    def login(self) -> Token:
        with self._lock:
            self.logins += 1
            self.valid = f"token-{self.logins}"
            return Token(self.valid, renew_at=None)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") == f"Bearer {self.valid}":
            return httpx.Response(200, json={"ok": True})
        with self._lock:
            self.rejected += 1
        self._hold.wait(timeout=30)
        return httpx.Response(401)


def test_concurrent_401s_renew_the_token_once() -> None:
    server = Server(hold=8)
    auth = BearerAuth(login=server.login)
    with httpx.Client(transport=httpx.MockTransport(server.handle), auth=auth) as client:
        assert client.get("https://h/a").status_code == 200
        server.valid = "revoked-by-the-server"  # every thread's next call gets a 401

        def call(_: int) -> int:
            return client.get("https://h/b").status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(call, range(8)))
    assert statuses == [200] * 8
    assert server.logins == 2  # the first login, and one renewal for all eight threads
    assert server.rejected == 8


def test_a_token_is_renewed_before_it_expires() -> None:
    token = token_from_login_answer({"access_token": "t", "expires_in": 100}, now=50.0)
    assert token.renew_at == 140.0  # a tenth of the lifetime early
    long_lived = token_from_login_answer({"access_token": "t", "expires_in": 7200}, now=0.0)
    assert long_lived.renew_at == 7140.0  # at most a minute early


def test_a_given_token_is_never_replaced() -> None:
    server = Server()
    auth = BearerAuth(login=None, token="given")
    with httpx.Client(transport=httpx.MockTransport(server.handle), auth=auth) as client:
        assert client.get("https://h/a").status_code == 401  # nothing to log in with
    assert server.logins == 0
