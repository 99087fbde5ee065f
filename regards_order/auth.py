"""Authentication to REGARDS as an httpx auth flow.

REGARDS gives no refresh token: a password login is simply done again shortly before the token
expires, and once more when any call answers 401. A user-supplied token is used as it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import httpx

from regards_order.errors import AuthenticationError


@dataclass(frozen=True)
class Token:
    """A bearer token and the monotonic time after which it should not be used."""

    value: str
    renew_at: float | None  # None: never renewed (a token given by the user)


#: How long before the announced expiry a token is replaced, at most.
RENEW_MARGIN_SECONDS = 60.0


def token_from_login_answer(body: object, *, now: float) -> Token:
    """Read the token endpoint's JSON answer."""
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise AuthenticationError("the token endpoint answered without an access_token")
    lifetime = body.get("expires_in")
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = 300.0
    # Renew a tenth of the lifetime early, at most a minute: short test tokens still get used.
    margin = min(RENEW_MARGIN_SECONDS, lifetime / 10)
    return Token(value=body["access_token"], renew_at=now + lifetime - margin)


class BearerAuth(httpx.Auth):
    """Adds `Authorization: Bearer`, logs in when needed, and retries once on 401.

    Thread-safe: one instance serves every thread of a process; only one of them logs in when
    the token has to be replaced.
    """

    def __init__(self, login: Callable[[], Token] | None, token: str | None = None) -> None:
        if login is None and token is None:
            raise ValueError("BearerAuth needs a login function or a token")
        self._login = login
        self._token = Token(token, None) if token is not None else None
        self._lock = threading.Lock()

    def current(self) -> str:
        """A token believed valid now, logging in if there is none or it is about to expire."""
        with self._lock:
            token = self._token
            if token is None or (token.renew_at is not None and time.monotonic() >= token.renew_at):
                token = self._replace()
            return token.value

    def _replace(self) -> Token:
        if self._login is None:
            raise AuthenticationError("the server rejected the token (expired or invalid)")
        self._token = self._login()
        return self._token

    def _renew_after_401(self, rejected: str) -> str:
        with self._lock:
            # Another thread may already have replaced the rejected token.
            if self._token is not None and self._token.value != rejected:
                return self._token.value
            return self._replace().value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        value = self.current()
        request.headers["Authorization"] = f"Bearer {value}"
        response = yield request
        if response.status_code == 401:
            if self._login is None:
                return
            request.headers["Authorization"] = f"Bearer {self._renew_after_401(value)}"
            yield request
