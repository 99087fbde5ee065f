"""Deterministic file content of the REGARDS simulator.

A file's bytes are a 64 KiB pseudo-random block, seeded by the order and file ids, repeated and cut
at the file size. Nothing touches the disk and serving is a matter of slicing one precomputed
1 MiB chunk (16 blocks), so the simulator can push well over 1 GB/s. A scenario may also give a
file's very bytes (an archive, say): those are kept under a content key of their own
(`literal_key`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from functools import lru_cache

BLOCK_SIZE = 64 * 1024
CHUNK_SIZE = 1024 * 1024
# A corrupt body flips one byte every CORRUPT_STRIDE bytes of its first piece.
CORRUPT_STRIDE = 4096


_SEED_SIZE = BLOCK_SIZE // 8

#: The "order id" of content keys whose bytes a scenario gave (see literal_key).
LITERAL = -1
_literals: dict[int, bytes] = {}
_literal_ids: dict[str, int] = {}


def literal_key(data: bytes) -> tuple[int, int]:
    """The content key serving exactly `data` (the same bytes, the same key)."""
    digest = hashlib.sha256(data).hexdigest()
    index = _literal_ids.setdefault(digest, len(_literal_ids))
    _literals[index] = data
    return LITERAL, index


@lru_cache(maxsize=256)
def block(order_id: int, file_id: int) -> bytes:
    """The 64 KiB block a file's content repeats, derived from the order and file ids."""
    # Eight rotations of an 8 KiB random seed: start-up hashes every file, and drawing 64 KiB of
    # randomness per file would be several times slower for the same detection power.
    seed = random.Random(f"{order_id}:{file_id}").randbytes(_SEED_SIZE)
    return b"".join(seed[r:] + seed[:r] for r in range(0, 8 * 1031, 1031))


@lru_cache(maxsize=32)
def _chunk(order_id: int, file_id: int) -> memoryview:
    # Because CHUNK_SIZE is a multiple of BLOCK_SIZE, the byte at any offset p is _chunk[p % CHUNK].
    return memoryview(block(order_id, file_id) * (CHUNK_SIZE // BLOCK_SIZE))


def iter_content(
    order_id: int,
    file_id: int,
    size: int,
    *,
    start: int = 0,
    stop: int | None = None,
    piece: int = CHUNK_SIZE,
    corrupt: bool = False,
) -> Iterator[memoryview]:
    """Yield the bytes ``[start, stop)`` of a file as memoryviews of at most ``piece`` bytes.

    With ``corrupt``, the piece starting at offset 0 has some bytes inverted (same length).
    """
    if order_id == LITERAL:
        data = memoryview(_literals[file_id])
        end = size if stop is None else min(stop, size)
        for pos in range(start, end, piece):
            view = data[pos : min(pos + piece, end)]
            if corrupt and pos == 0:
                spoiled = bytearray(view)
                spoiled[0] ^= 0xFF
                view = memoryview(spoiled)
            yield view
        return
    chunk = _chunk(order_id, file_id)
    end = size if stop is None else min(stop, size)
    pos = start
    while pos < end:
        offset = pos % CHUNK_SIZE
        n = min(piece, end - pos, CHUNK_SIZE - offset)
        view = chunk[offset : offset + n]
        if corrupt and pos == 0:
            spoiled = bytearray(view)
            for i in range(0, n, CORRUPT_STRIDE):
                spoiled[i] ^= 0xFF
            view = memoryview(spoiled)
        yield view
        pos += n


def content_bytes(order_id: int, file_id: int, size: int) -> bytes:
    """The whole content of a file (for tests and small files)."""
    return b"".join(iter_content(order_id, file_id, size))


@lru_cache(maxsize=65536)
def content_md5(order_id: int, file_id: int, size: int) -> str:
    """Hex MD5 of a file's content, as served in the listing's ``checksum``.

    Cached: benchmarks and tests start many simulators over the same multi-GB files.
    """
    if order_id == LITERAL:
        return hashlib.md5(_literals[file_id][:size], usedforsecurity=False).hexdigest()
    digest = hashlib.md5(usedforsecurity=False)
    data = block(order_id, file_id)
    full, rest = divmod(size, BLOCK_SIZE)
    # Hash block by block: no 1 MiB chunk to build for the many small files of a big scenario.
    for _ in range(full):
        digest.update(data)
    digest.update(data[:rest])
    return digest.hexdigest()
