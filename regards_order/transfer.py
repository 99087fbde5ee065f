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
import queue
import secrets
import threading
import time
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
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
from regards_order.stopping import check_stop

#: Bytes read at a time when hashing a file already at the target.
READ_CHUNK = 1024 * 1024

#: Files at least this large are hashed on a helper thread, beside the receiving and the
#: writing of the next bytes: MD5 (~680 MB/s on one core here) is the slowest step of a large
#: transfer, and hashlib lets other threads run while it hashes.
BACKGROUND_HASH_BYTES = 32 * 1024 * 1024

#: Chunks the helper thread may lag behind the writer (64 KiB each from httpx).
BACKGROUND_HASH_QUEUE = 16

#: Marks temporary files, so that they are recognisable (and ignorable) by anyone.
PARTIAL_SUFFIX = ".regards-partial"

#: Object metadata key holding the MD5 an S3 object was verified against when committed.
MD5_METADATA_KEY = "regards-md5"

S3_PROTOCOLS = frozenset({"s3", "s3a"})

#: Largest S3 multipart part we buffer (s3fs holds one part in memory; its default is 50 MiB).
UPLOAD_PART_BYTES = 8 * 1024 * 1024

#: A partial file whose name carries no run id, untouched this long, belongs to a run that died.
STALE_PARTIAL_SECONDS = 15 * 60.0

#: Where runs claim the S3 keys whose multipart uploads they have pending.
CLAIMS_FOLDER = ".regards-order/uploads"

#: Before the run id in a partial file's name.
_OWNER_MARK = "run-"

#: The MD5 of zero bytes.
EMPTY_MD5 = hashlib.md5(b"", usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Target:
    """A folder (or prefix) on some fsspec filesystem."""

    fs: AbstractFileSystem
    root: str

    @property
    def writes_objects(self) -> bool:
        """An S3 store: objects appear whole when an upload completes; no rename, no folders."""
        protocols = self.fs.protocol
        names = protocols if isinstance(protocols, tuple | list) else (protocols,)
        return bool(S3_PROTOCOLS.intersection(names))

    def check(self) -> None:
        """Fail now, with one clear error, if the target cannot take files."""
        with _target_errors(self.root):
            if self.writes_objects:
                bucket = self.root.split("/", 1)[0]
                if not self.fs.exists(bucket):
                    raise TargetError(
                        f"bucket {bucket!r} does not exist or is not visible with these credentials"
                    )
            else:
                self.fs.makedirs(self.root, exist_ok=True)

    def remove_leftovers(self, folder: str, live_runs: Container[str]) -> int:
        """Remove what runs that died left in `folder`; return how many things went.

        A partial file names the run writing it: it goes unless that run is in `live_runs`
        (one whose name carries no run id goes once untouched for STALE_PARTIAL_SECONDS). On
        S3, a pending multipart upload under the prefix goes unless a live run claimed its
        key (see write_verified)."""
        if self.writes_objects:
            return _abort_unclaimed_uploads(self, folder, live_runs)
        try:
            entries = self.fs.ls(folder, detail=True)
        except FileNotFoundError:
            return 0
        removed = 0
        for entry in entries:
            name = str(entry["name"])
            if not name.endswith(PARTIAL_SUFFIX):
                continue
            owner = partial_owner(name)
            if owner is None:
                modified = _timestamp(entry.get("mtime") or entry.get("created"))
                dead = modified is not None and time.time() - modified > STALE_PARTIAL_SECONDS
            else:
                dead = owner not in live_runs
            if dead:
                with contextlib.suppress(OSError):
                    self.fs.rm(name)
                    removed += 1
        return removed

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
    """Whether `path` already holds exactly the expected bytes (size first: it is cheap).

    On S3 the MD5 recorded in the object's metadata when it was committed is trusted (an ETag
    is not an MD5), so nothing is downloaded; elsewhere the file is hashed.
    """
    try:
        info = target.fs.info(path)
    except FileNotFoundError:
        return False
    if info.get("type") != "file":
        return False
    if size is not None and info.get("size") != size:
        return False
    if info.get("size") == 0:
        return md5 == EMPTY_MD5  # no bytes to read: the MD5 of nothing is known
    if target.writes_objects:
        metadata: dict[str, str] = target.fs.metadata(path)
        return metadata.get(MD5_METADATA_KEY) == md5
    return md5_of(target, path) == md5


def write_verified(
    target: Target,
    path: str,
    chunks: Iterable[bytes],
    *,
    md5: str,
    size: int | None,
    owner: str,
) -> Written:
    """Write `chunks` to `path`, hashing as they go; commit only if size and MD5 match.

    Files are written under a partial name beside `path` and renamed once verified. S3
    objects are written straight to their key as a multipart upload, which makes nothing
    visible until it is completed: a mismatch aborts it instead. `owner` (a run id) names the
    partial file, or claims the key while its upload is pending, for `Target.remove_leftovers`
    to tell a live run's leftovers from a dead one's.
    """
    fs = target.fs
    direct = target.writes_objects
    parent, _, name = path.rpartition("/")
    staging = path if direct else f"{parent}/.{name}.{_partial_tail(owner)}"
    written = 0
    with _upload_claim(target, path, owner, size):
        with _target_errors(path):
            if not direct:
                fs.makedirs(parent, exist_ok=True)
                if fs.isdir(path):
                    raise TargetError(f"cannot write {path}: a folder of that name is there")
            sink = fs.open(staging, "wb", **(_upload_options(fs, md5, size) if direct else {}))
        digest = StreamMd5(background=size is not None and size >= BACKGROUND_HASH_BYTES)
        try:
            with _target_errors(path):
                for chunk in chunks:
                    check_stop()
                    digest.update(chunk)
                    sink.write(chunk)
                    written += len(chunk)
            if size is not None and written != size:
                raise SizeMismatch(f"received {written} bytes, the server's record says {size}")
            received = digest.hexdigest()
            if received != md5:
                raise ChecksumMismatch(f"MD5 of the received bytes is {received}, expected {md5}")
            with _target_errors(path):
                sink.close()  # on S3 this completes the upload: the verified object appears
                if not direct:
                    fs.mv(staging, path)
        except BaseException:
            _abandon(target, sink, staging)
            raise
        finally:
            digest.close()
    return Written(path=path, size=written, md5=received)


@contextlib.contextmanager
def _upload_claim(target: Target, path: str, owner: str, size: int | None) -> Iterator[None]:
    """On S3, claim `path` for run `owner` while its multipart upload may be pending: an
    upload carries no run id, so a later run finds out whose it is from the claim."""
    if not target.writes_objects or (size is not None and size < UPLOAD_PART_BYTES):
        yield  # nothing pending: a small object is sent by one request when it is whole
        return
    claim = target.path(f"{CLAIMS_FOLDER}/{owner}.{_key_digest(path)}")
    write_small(target, claim, b"")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            target.fs.rm(claim)


def _key_digest(path: str) -> str:
    """A short name for an object's key (without its bucket)."""
    key = path.partition("/")[2]
    return hashlib.sha256(key.encode()).hexdigest()[:24]


class StreamMd5:
    """The MD5 of a stream of chunks, in their order: computed inline, or on a helper thread
    (`background`) that hashes each chunk while the caller writes it and receives the next.

    Every chunk is still hashed once, from the buffer that is written: one pass over the bytes.
    The helper lags at most BACKGROUND_HASH_QUEUE chunks behind, so memory stays bounded.
    """

    def __init__(self, *, background: bool) -> None:
        self._digest = hashlib.md5(usedforsecurity=False)
        self._chunks: queue.Queue[bytes | None] | None = None
        self._helper: threading.Thread | None = None
        if background:
            self._chunks = queue.Queue(maxsize=BACKGROUND_HASH_QUEUE)
            self._helper = threading.Thread(target=self._hash_queued, name="md5", daemon=True)
            self._helper.start()

    def _hash_queued(self) -> None:
        assert self._chunks is not None
        while (chunk := self._chunks.get()) is not None:
            self._digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        """Hash `chunk` after every chunk given before it."""
        if self._chunks is None:
            self._digest.update(chunk)
        else:
            self._chunks.put(bytes(chunk))  # a copy only if the caller's buffer is mutable

    def hexdigest(self) -> str:
        """The MD5 of every chunk given, once all of them are hashed."""
        self.close()
        return self._digest.hexdigest()

    def close(self) -> None:
        """Let the helper thread hash what is queued and end (nothing to do if inline)."""
        if self._helper is not None and self._chunks is not None:
            self._chunks.put(None)
            self._helper.join()
            self._helper = None


def _upload_options(fs: AbstractFileSystem, md5: str, size: int | None) -> dict[str, Any]:
    """S3 upload options: the verified MD5 as metadata, and parts of at most 8 MiB (memory
    holds one part) but enough of them for S3's 10,000-part limit."""
    block = min(int(fs.default_block_size), UPLOAD_PART_BYTES)
    if size is not None:
        block = max(block, -(-size // 9_000))
    return {"Metadata": {MD5_METADATA_KEY: md5}, "block_size": block}


def _abandon(target: Target, sink: Any, staging: str) -> None:
    """Make sure nothing of a failed write stays: no partial file, no pending upload.

    Each step is tried on its own: closing a file on a full disk fails again, and the partial
    must be removed all the same. Clean-up errors give way to the original one.
    """
    if target.writes_objects:
        with contextlib.suppress(OSError, ValueError):
            if not sink.closed:
                sink.discard()  # aborts the multipart upload
        sink.closed = True  # the file object must not upload at garbage collection
        return
    with contextlib.suppress(OSError, ValueError):
        if not sink.closed:
            sink.close()
    with contextlib.suppress(OSError):
        target.fs.rm(staging)


def write_small(target: Target, path: str, data: bytes, owner: str = "") -> None:
    """Replace a small file atomically (the delivery record, a lease)."""
    fs = target.fs
    with _target_errors(path):
        if target.writes_objects:
            fs.pipe_file(path, data)  # a single PUT is atomic
            return
        partial = f"{path}.{_partial_tail(owner)}"
        fs.makedirs(path.rpartition("/")[0], exist_ok=True)
        fs.pipe_file(partial, data)
        try:
            fs.mv(partial, path)
        except BaseException:
            fs.rm(partial)
            raise


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
        if isinstance(
            error, PermissionError | FileNotFoundError | NotADirectoryError | FileExistsError
        ):
            raise TargetError(f"cannot write {path}: {reason}") from None
        if error.errno in _PERMANENT_ERRNOS:
            raise TargetError(f"cannot write {path}: {reason}") from None
        raise TargetThrottled(f"writing {path} failed: {reason}") from None


def _timestamp(value: object) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    return None


def _partial_tail(owner: str) -> str:
    """The end of a partial file's name: its owner (`run-<run id>`), a random part, the
    suffix."""
    return f"{_OWNER_MARK}{owner}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"


def partial_owner(path: str) -> str | None:
    """The run id in a partial file's name, or None when it has none."""
    parts = path.rpartition("/")[2].removesuffix(PARTIAL_SUFFIX).split(".")
    if len(parts) < 3 or not parts[-2].startswith(_OWNER_MARK):
        return None
    return parts[-2].removeprefix(_OWNER_MARK) or None


def modified_at(target: Target, path: str) -> float | None:
    """When `path` was last written, on the target's own clock, or None if it is not there."""
    try:
        info = target.fs.info(path)
    except FileNotFoundError:
        return None
    return _timestamp(info.get("mtime") or info.get("LastModified") or info.get("created"))


def _abort_unclaimed_uploads(target: Target, folder: str, live_runs: Container[str]) -> int:
    """Abort every pending upload under `folder` that no live run claims; drop the claims of
    runs that are gone."""
    claims_folder = target.path(CLAIMS_FOLDER)
    try:
        claims = [str(p) for p in target.fs.ls(claims_folder, detail=False)]
    except FileNotFoundError:
        claims = []
    claimed = set()
    for claim in claims:
        owner, _, digest = claim.rpartition("/")[2].partition(".")
        if owner in live_runs:
            claimed.add(digest)
        else:
            with contextlib.suppress(OSError):
                target.fs.rm(claim)
    bucket, _, prefix = folder.partition("/")
    try:
        uploads = target.fs.list_multipart_uploads(bucket)
    except OSError:
        return 0
    removed = 0
    for upload in uploads:
        key = str(upload.get("Key", ""))
        if not key.startswith(prefix.rstrip("/") + "/"):
            continue
        if _key_digest(f"{bucket}/{key}") not in claimed:
            with contextlib.suppress(OSError):
                target.fs.abort_mpu(bucket, key, upload["UploadId"])
                removed += 1
    return removed


def write_stream(
    target: Target, path: str, chunks: Iterable[bytes], *, size: int | None = None
) -> Written:
    """Write `chunks` to `path`, hashing them as they go, and commit them only once the stream
    has ended without an error: a source that checks its bytes while they are read (an
    archive's member, whose CRC fails at its end) leaves nothing at `path`. No MD5 is known in
    advance, unlike write_verified: the one computed is returned. A `size` given is checked.

    The same commit as write_verified: files under a partial name, renamed once complete; S3
    objects straight to their key, visible only when the upload completes. A folder at `path`
    is not replaced (a rename would move the file into it). Errors of the source propagate as
    they are; errors of the target become TargetError or TargetThrottled.
    """
    fs = target.fs
    direct = target.writes_objects
    parent, _, name = path.rpartition("/")
    staging = path if direct else f"{parent}/.{name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
    # The part size of write_verified; no MD5 metadata, the MD5 is known only at the end.
    options = {"block_size": _upload_options(fs, "", size)["block_size"]} if direct else {}
    with _target_errors(path):
        try:
            if not direct:
                fs.makedirs(parent, exist_ok=True)
            sink = fs.open(staging, "wb", **options)
        except FileExistsError:  # a file where a folder goes: trying again cannot help
            raise TargetError(f"cannot write {path}: a file is in the way") from None
    digest = StreamMd5(background=size is not None and size >= BACKGROUND_HASH_BYTES)
    written = 0
    try:
        for chunk in chunks:
            check_stop()
            digest.update(chunk)
            with _target_errors(path):
                sink.write(chunk)
            written += len(chunk)
        if size is not None and written != size:
            raise SizeMismatch(f"read {written} bytes, expected {size}")
        with _target_errors(path):
            if not direct and fs.isdir(path):
                raise TargetError(f"cannot write {path}: a folder is in the way")
            sink.close()  # on S3 this completes the upload: the object appears whole
            if not direct:
                fs.mv(staging, path)
    except BaseException:
        _abandon(target, sink, staging)
        raise
    finally:
        digest.close()
    return Written(path=path, size=written, md5=digest.hexdigest())
