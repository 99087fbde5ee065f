"""Waiting for a condition with a deadline (never sleep-and-hope), and other small needs."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], what: str, *, timeout: float = 120.0, every: float = 0.05
) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail the test
    after `timeout` seconds (generous: a busy machine is slow, never wrong)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def md5(data: bytes | Path) -> str:
    """The MD5 of some bytes, or of a file's."""
    return hashlib.md5(data.read_bytes() if isinstance(data, Path) else data).hexdigest()


def first(items: list[Any]) -> Any:
    """The only item of a list of one."""
    (item,) = items
    return item
