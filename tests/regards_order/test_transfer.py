"""The transfer commits only verified bytes and never leaves a partial file behind."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from regards_order.errors import ChecksumMismatch, SizeMismatch, TargetError, TruncatedBody
from regards_order.transfer import (
    BACKGROUND_HASH_BYTES,
    PARTIAL_SUFFIX,
    StreamMd5,
    Target,
    is_verified,
    open_target,
    write_verified,
)

DATA = os.urandom(3 * 1024 * 1024 + 17)
MD5 = hashlib.md5(DATA).hexdigest()


def _chunks(data: bytes = DATA, size: int = 1024 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture(params=["local", "memory"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "local":
        return open_target(str(tmp_path / "out"))
    return open_target(f"memory://transfer-{os.urandom(4).hex()}")


def _leftovers(target: Target) -> list[str]:
    if not target.fs.exists(target.root):
        return []
    return [p for p in target.fs.find(target.root, withdirs=False) if p.endswith(PARTIAL_SUFFIX)]


def test_verified_bytes_are_committed(target: Target) -> None:
    path = target.path("file.bin")
    written = write_verified(target, path, _chunks(), md5=MD5, size=len(DATA), owner="t")
    assert written.md5 == MD5 and written.size == len(DATA)
    assert target.fs.cat_file(path) == DATA
    assert _leftovers(target) == []
    assert is_verified(target, path, MD5, len(DATA))


def test_checksum_mismatch_leaves_nothing(target: Target) -> None:
    path = target.path("file.bin")
    with pytest.raises(ChecksumMismatch):
        write_verified(target, path, _chunks(), md5="0" * 32, size=len(DATA), owner="t")
    assert not target.fs.exists(path)
    assert _leftovers(target) == []


def test_size_mismatch_leaves_nothing(target: Target) -> None:
    path = target.path("file.bin")
    with pytest.raises(SizeMismatch):
        write_verified(target, path, _chunks(), md5=MD5, size=len(DATA) + 1, owner="t")
    assert not target.fs.exists(path)


def test_broken_stream_removes_the_partial_and_keeps_the_old_file(target: Target) -> None:
    path = target.path("file.bin")
    target.fs.makedirs(target.root, exist_ok=True)
    target.fs.pipe_file(path, b"previous")

    def broken() -> Iterator[bytes]:
        yield DATA[:1000]
        raise TruncatedBody("cut")

    with pytest.raises(TruncatedBody):
        write_verified(target, path, broken(), md5=MD5, size=len(DATA), owner="t")
    assert target.fs.cat_file(path) == b"previous"
    assert _leftovers(target) == []


# Large enough for the MD5 to be computed on a helper thread.
BIG = os.urandom(BACKGROUND_HASH_BYTES + 65_537)
BIG_MD5 = hashlib.md5(BIG).hexdigest()


def test_a_large_file_hashed_beside_the_write_is_committed_when_it_matches(
    target: Target,
) -> None:
    path = target.path("big.bin")
    written = write_verified(
        target, path, _chunks(BIG, 65_536), md5=BIG_MD5, size=len(BIG), owner="t"
    )
    assert written.md5 == BIG_MD5
    assert hashlib.md5(target.fs.cat_file(path)).hexdigest() == BIG_MD5
    assert _leftovers(target) == []


def test_a_large_corrupt_file_hashed_beside_the_write_leaves_nothing(target: Target) -> None:
    path = target.path("big.bin")
    corrupt = BIG[:1000] + bytes([BIG[1000] ^ 1]) + BIG[1001:]
    with pytest.raises(ChecksumMismatch):
        write_verified(
            target, path, _chunks(corrupt, 65_536), md5=BIG_MD5, size=len(BIG), owner="t"
        )
    assert not target.fs.exists(path)
    assert _leftovers(target) == []


@pytest.mark.parametrize("background", [False, True])
def test_stream_md5_hashes_chunks_in_their_order(background: bool) -> None:
    digest = StreamMd5(background=background)
    for chunk in _chunks(DATA, 4096):
        digest.update(chunk)
    assert digest.hexdigest() == MD5
    digest.close()  # a second close is harmless


def test_is_verified_checks_size_and_content(target: Target) -> None:
    path = target.path("file.bin")
    assert not is_verified(target, path, MD5, len(DATA))
    target.fs.makedirs(target.root, exist_ok=True)
    target.fs.pipe_file(path, DATA[:-1] + b"\x00")
    assert not is_verified(target, path, MD5, len(DATA))
    assert not is_verified(target, path, MD5, len(DATA) - 1)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_target_is_a_clear_permanent_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    target = open_target(str(folder))
    with pytest.raises(TargetError, match="cannot write"):
        write_verified(target, target.path("f"), _chunks(), md5=MD5, size=len(DATA), owner="t")


def test_target_that_is_a_file_is_a_clear_permanent_error(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"x")
    target = open_target(str(blocker / "sub"))
    with pytest.raises(TargetError, match="cannot write"):
        write_verified(target, target.path("f"), _chunks(), md5=MD5, size=len(DATA), owner="t")
