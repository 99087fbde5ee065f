"""One body into one fsspec path: MD5 in the same pass, committed only once verified.

This module is the only one that writes to targets. A file is written under a temporary name
beside its final one and renamed only after its size and MD5 match the server's record; on any
failure the partial file is removed before the error propagates. Memory stays flat: one chunk
at a time.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.spec import AbstractFileSystem

from regards_order.errors import (
    ChecksumMismatch,
    ConfigurationError,
    SizeMismatch,
    TargetError,
    TargetThrottled,
)

#: Bytes read at a time when hashing a file already at the target.
READ_CHUNK = 1024 * 1024

#: Marks temporary files, so that they are recognisable (and ignorable) by anyone.
PARTIAL_SUFFIX = ".regards-partial"


@dataclass(frozen=True)
class Target:
    """A folder (or prefix) on some fsspec filesystem."""

    fs: AbstractFileSystem
    root: str

    def path(self, name: str) -> str:
        """The path of a single-component `name` under the root."""
        return f"{self.root.rstrip('/')}/{name}"

    def url(self, path: str) -> str:
        """The full, user-facing location of `path` (with its protocol, except for local)."""
        unstripped: str = self.fs.unstrip_protocol(path)
        return unstripped.removeprefix("file://")


@dataclass(frozen=True)
class Written:
    """What was verified and committed at a path."""

    path: str
    size: int
    md5: str


def open_target(url: str, storage_options: dict[str, Any] | None = None) -> Target:
    """The target for `url` (a local path or any fsspec URL); filesystems are cached by fsspec."""
    if not url or not url.strip():
        raise ConfigurationError("the target is empty: give a folder or an fsspec URL")
    try:
        fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    except (ImportError, ValueError, TypeError) as error:
        raise ConfigurationError(f"cannot use target {url!r}: {error}") from None
    return Target(fs=fs, root=root.rstrip("/") or root)


def md5_of(target: Target, path: str) -> str | None:
    """The MD5 of the file at `path`, or None when there is none."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with target.fs.open(path, "rb") as source:
            while chunk := source.read(READ_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def is_verified(target: Target, path: str, md5: str, size: int | None) -> bool:
    """Whether `path` already holds exactly the expected bytes (size first: it is cheap)."""
    try:
        info = target.fs.info(path)
    except FileNotFoundError:
        return False
    if info.get("type") != "file":
        return False
    if size is not None and info.get("size") != size:
        return False
    return md5_of(target, path) == md5


def write_verified(
    target: Target,
    path: str,
    chunks: Iterable[bytes],
    *,
    md5: str,
    size: int | None,
) -> Written:
    """Write `chunks` to `path`, hashing as they go; commit only if size and MD5 match."""
    parent, _, name = path.rpartition("/")
    partial = f"{parent}/.{name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
    digest = hashlib.md5(usedforsecurity=False)
    written = 0
    try:
        with _target_errors(path):
            target.fs.makedirs(parent, exist_ok=True)
            with target.fs.open(partial, "wb") as sink:
                for chunk in chunks:
                    digest.update(chunk)
                    sink.write(chunk)
                    written += len(chunk)
        if size is not None and written != size:
            raise SizeMismatch(f"received {written} bytes, the server's record says {size}")
        received = digest.hexdigest()
        if received != md5:
            raise ChecksumMismatch(f"MD5 of the received bytes is {received}, expected {md5}")
        with _target_errors(path):
            target.fs.mv(partial, path)
    except BaseException:
        _discard(target, partial)
        raise
    return Written(path=path, size=written, md5=received)


def _discard(target: Target, path: str) -> None:
    try:
        target.fs.rm(path)
    except FileNotFoundError:
        pass
    except OSError:
        # The original error matters more than a failed clean-up; the name marks it partial.
        pass


#: errno values of a target that will not get better by trying again.
_PERMANENT_ERRNOS = {
    errno.ENOSPC,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EDQUOT,
    errno.ENOTDIR,
}


@contextlib.contextmanager
def _target_errors(path: str) -> Iterator[None]:
    """Turn OSError from the target into TargetError (permanent) or TargetThrottled."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        if isinstance(error, PermissionError) or error.errno in _PERMANENT_ERRNOS:
            raise TargetError(f"cannot write {path}: {reason}") from None
        raise TargetThrottled(f"writing {path} failed: {reason}") from None
