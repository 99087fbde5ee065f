"""Errors of regards-order: one root, one class per meaningful answer, one retry policy.

Callers catch classes, never parse messages. Whether an error is worth retrying is decided here
and nowhere else (`is_retryable`).
"""

from __future__ import annotations

import email.utils
import time


class RegardsOrderError(Exception):
    """Root of every error this package raises on purpose."""

    #: Whether trying the same operation again may succeed.
    retryable: bool = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Seconds the server asked us to wait before trying again (Retry-After), if it did.
        self.retry_after = retry_after
        #: How many attempts were made before giving up, when a retrying caller says so.
        self.attempts: int | None = None

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        # Keep keyword-only state across pickling (Prefect and process pools pickle errors).
        return (_rebuild, (type(self), self.message, self.retry_after, self.attempts))


def _rebuild(
    cls: type[RegardsOrderError], message: str, retry_after: float | None, attempts: int | None
) -> RegardsOrderError:
    error = cls.__new__(cls)
    RegardsOrderError.__init__(error, message, retry_after=retry_after)
    error.attempts = attempts
    return error


class ConfigurationError(RegardsOrderError):
    """The user's settings are incomplete or invalid (a usage error, exit code 2)."""


class AuthenticationError(RegardsOrderError):
    """The server refused the credentials: wrong user, password, client or token."""


class AccessDenied(RegardsOrderError):
    """403: the order or file belongs to another user."""


class NotFound(RegardsOrderError):
    """404: unknown order or file, or the order has expired and its files are gone."""


class NotReady(RegardsOrderError):
    """202: the file is not restored from storage yet."""

    retryable = True


class FileInError(RegardsOrderError):
    """422: the file ended in error on the server side."""


class Gone(RegardsOrderError):
    """410: the nearline cache copy expired; asking again makes storage restore it."""

    retryable = True


class QuotaExceeded(RegardsOrderError):
    """429: the user's download quota is exhausted for now (see `retry_after`)."""

    retryable = True


class ServerError(RegardsOrderError):
    """5xx, or any other answer the protocol does not explain."""

    retryable = True


class TransportError(RegardsOrderError):
    """The connection failed: refused, reset, timed out, TLS or DNS failure."""

    retryable = True


class MalformedResponse(RegardsOrderError):
    """The server answered something that is not the JSON the protocol describes.

    Retried, because a proxy or firewall in the way often answers so for a moment.
    """

    retryable = True


class TruncatedBody(RegardsOrderError):
    """The body ended before the announced size (no Range support: start again from 0)."""

    retryable = True


class SizeMismatch(RegardsOrderError):
    """The bytes received are not as many as the server's file record says."""

    retryable = True


class ChecksumMismatch(RegardsOrderError):
    """The MD5 of the bytes received differs from the server's checksum.

    Retried: the server serves the file again by id, and corruption in transit is transient.
    """

    retryable = True


class InvalidFileRecord(RegardsOrderError):
    """The server's record of a file cannot be verified against (bad checksum, bad size)."""


class TargetError(RegardsOrderError):
    """Writing to the target failed: permission denied, no space, missing bucket..."""


class TargetThrottled(TargetError):
    """The target storage asked us to slow down or failed on its side (5xx)."""

    retryable = True


class SlotUnavailable(RegardsOrderError):
    """A slot of a limit shared between runs could not be had (its keeper did not answer)."""

    retryable = True


class Interrupted(RegardsOrderError):
    """The user asked the process to stop (SIGTERM, Ctrl-C)."""


#: HTTP status -> error class, for every answer the REGARDS API gives a meaning to.
#: 5xx and anything unlisted fall back to ServerError.
STATUS_ERRORS: dict[int, type[RegardsOrderError]] = {
    202: NotReady,
    401: AuthenticationError,
    403: AccessDenied,
    404: NotFound,
    410: Gone,
    422: FileInError,
    429: QuotaExceeded,
}


def is_retryable(error: BaseException) -> bool:
    """The single place that decides whether an operation that raised `error` may be retried."""
    return isinstance(error, RegardsOrderError) and error.retryable


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


# -- ordering from the catalogue ------------------------------------------------------------
# Not mapped in STATUS_ERRORS: a 400 is a ServerError (retried) for every other call, and a
# 422 a FileInError; the calls that give these answers a meaning of their own raise these.


class InvalidQuery(RegardsOrderError):
    """400 from the catalogue: the search query is malformed (the server's message says how)."""


class OrderRefused(RegardsOrderError):
    """422 from an auto-order: refused, with the server's status and error type.

    Never retried: a refused auto-order leaves its queries in the user's basket, and an
    auto-order orders the whole basket.
    """

    def __init__(
        self,
        message: str,
        *,
        status: str | None = None,
        error_type: str | None = None,
        server_message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        #: DENIED or FAILED; None when the server refused the request as invalid (its bean
        #: validation answers messages only).
        self.status = status
        #: INVALID_CONTENT, FORBIDDEN, ORDER_LIMIT_REACHED, EMPTY_ORDER or INTERNAL_ERROR.
        self.error_type = error_type
        #: The server's own words.
        self.server_message = server_message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message,), dict(self.__dict__))


class EndpointAbsent(NotFound):
    """404 from an endpoint that older servers do not have: do without it."""


class AmbiguousOrder(RegardsOrderError):
    """More than one of the user's orders may be the one an unanswered auto-order created."""

    def __init__(
        self,
        message: str,
        *,
        candidates: tuple[int, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        #: The ids of the orders that fit.
        self.candidates = candidates

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message,), dict(self.__dict__))


class NothingToOrder(RegardsOrderError):
    """The catalogue queries found no product, or no file of the data types asked for."""


class OverSizeLimit(RegardsOrderError):
    """What the queries would order is larger than the user's limit (the server ignores its
    own limit on the auto-order path: the client checks)."""


class BasketNotEmpty(RegardsOrderError):
    """The user's basket holds selections, which an auto-order would order too."""
