"""The error answer every part of the simulator raises and the HTTP layer sends."""

from __future__ import annotations


class ApiError(Exception):
    """An error answer: HTTP status, message, optional ``Retry-After`` seconds."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
