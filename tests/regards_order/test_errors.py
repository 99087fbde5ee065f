"""One place decides what is retried; Retry-After is understood in both forms."""

from __future__ import annotations

import pickle

import pytest

from regards_order import errors


@pytest.mark.parametrize(
    ("error_class", "retryable"),
    [
        (errors.AccessDenied, False),
        (errors.NotFound, False),
        (errors.FileInError, False),
        (errors.InvalidFileRecord, False),
        (errors.TargetError, False),
        (errors.NotReady, True),
        (errors.Gone, True),
        (errors.QuotaExceeded, True),
        (errors.ServerError, True),
        (errors.TransportError, True),
        (errors.TruncatedBody, True),
        (errors.ChecksumMismatch, True),
        (errors.SizeMismatch, True),
        (errors.TargetThrottled, True),
    ],
)
def test_retry_policy(error_class: type[errors.RegardsOrderError], retryable: bool) -> None:
    assert errors.is_retryable(error_class("x")) is retryable


def test_foreign_errors_are_not_retried() -> None:
    assert errors.is_retryable(ValueError("x")) is False


def test_retry_after_seconds_and_date() -> None:
    assert errors.parse_retry_after("7") == 7.0
    assert errors.parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert errors.parse_retry_after("soon") is None
    assert errors.parse_retry_after(None) is None


def test_errors_survive_pickling_with_their_state() -> None:
    error = errors.QuotaExceeded("slow down", retry_after=3.0)
    error.attempts = 4
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.retry_after, copy.attempts) == (
        errors.QuotaExceeded,
        "slow down",
        3.0,
        4,
    )
