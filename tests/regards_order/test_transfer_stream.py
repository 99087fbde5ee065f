"""write_stream commits a stream whose MD5 is not known in advance, only once it ended well."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from regards_order.errors import SizeMismatch, TargetError
from regards_order.transfer import BACKGROUND_HASH_BYTES, open_target, write_stream
from tests.helpers.targets import DeliveryTarget

DATA = os.urandom(2 * 1024 * 1024 + 5)


def chunks(data: bytes = DATA, size: int = 256 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class SourceBroke(Exception):
    """What a source that checks its bytes raises (a zip member's CRC, say)."""


def breaking(after: int) -> Iterator[bytes]:
    yield from chunks(DATA[:after])
    raise SourceBroke("the member's CRC does not match")


def test_the_stream_is_committed_with_its_md5(target: DeliveryTarget) -> None:
    path = f"{target.root}/a/b/member.bin"
    written = write_stream(open_target(target.url, target.storage_options), path, chunks())
    assert (written.path, written.size) == (path, len(DATA))
    assert written.md5 == hashlib.md5(DATA).hexdigest()
    assert target.read("a/b/member.bin") == DATA
    assert target.everything() == ["a/b/member.bin"]
    assert target.pending_uploads() == []


def test_a_large_stream_is_hashed_beside_the_write(tmp_path: Path) -> None:
    data = os.urandom(BACKGROUND_HASH_BYTES + 3)
    target = open_target(str(tmp_path))
    written = write_stream(target, f"{target.root}/big.bin", chunks(data), size=len(data))
    assert written.md5 == hashlib.md5(data).hexdigest()
    assert (tmp_path / "big.bin").read_bytes() == data


def test_a_source_that_fails_leaves_nothing(target: DeliveryTarget) -> None:
    destination = open_target(target.url, target.storage_options)
    with pytest.raises(SourceBroke):
        write_stream(destination, f"{target.root}/member.bin", breaking(len(DATA) // 2))
    assert target.everything() == []
    assert target.pending_uploads() == []


def test_an_existing_file_is_kept_when_the_source_fails(target: DeliveryTarget) -> None:
    destination = open_target(target.url, target.storage_options)
    write_stream(destination, f"{target.root}/member.bin", iter([b"previous"]))
    with pytest.raises(SourceBroke):
        write_stream(destination, f"{target.root}/member.bin", breaking(1000))
    assert target.read("member.bin") == b"previous"
    assert target.everything() == ["member.bin"]


def test_a_short_stream_is_not_committed(target: DeliveryTarget) -> None:
    destination = open_target(target.url, target.storage_options)
    with pytest.raises(SizeMismatch):
        write_stream(destination, f"{target.root}/member.bin", chunks(), size=len(DATA) + 1)
    assert target.everything() == []
    assert target.pending_uploads() == []


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_a_folder_in_the_way_is_not_replaced(kind: str, tmp_path: Path) -> None:
    url = str(tmp_path / "out") if kind == "local" else f"memory://stream-{os.urandom(4).hex()}"
    destination = open_target(url)
    write_stream(destination, f"{destination.root}/a/inside.txt", iter([b"inside"]))
    with pytest.raises(TargetError, match="a folder is in the way"):
        write_stream(destination, f"{destination.root}/a", iter([b"would hide the folder"]))
    assert destination.fs.cat_file(f"{destination.root}/a/inside.txt") == b"inside"
    assert destination.fs.find(destination.root) == [f"{destination.root}/a/inside.txt"]


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_a_file_in_the_way_is_a_permanent_error(kind: str, tmp_path: Path) -> None:
    url = str(tmp_path / "out") if kind == "local" else f"memory://stream-{os.urandom(4).hex()}"
    destination = open_target(url)
    write_stream(destination, f"{destination.root}/a", iter([b"a file"]))
    with pytest.raises(TargetError, match="a file is in the way") as raised:
        write_stream(destination, f"{destination.root}/a/b", iter([b"under a file"]))
    assert not raised.value.retryable
    assert destination.fs.find(destination.root) == [f"{destination.root}/a"]
