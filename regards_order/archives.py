"""Zip and tar archives read entry by entry, as streams, with every check they carry.

A zip is read through its seekable file (remote files seek with range requests), a tar as a
stream (`r|`), both one chunk at a time. The checks are the archive's own: a zip member's
CRC-32 (zipfile raises on the last read of a member that does not match), tar's header
checksums, and for a .tar.gz gzip's CRC-32 and length, which tarfile's own gzip stream never
checks: it is read through gzip.GzipFile, whose trailer is checked at the end of the stream.
"""

from __future__ import annotations

import gzip
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import IO

#: Bytes read from a member (or from a tar stream) at a time.
MEMBER_CHUNK = 256 * 1024

#: Errors with which an archive says its bytes are not what it recorded.
CHECK_ERRORS = (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error)


class ArchiveFormat(Enum):
    """How an archive is read."""

    ZIP = "zip"
    TAR = "tar"
    TAR_GZ = "tar.gz"


@dataclass(frozen=True)
class Member:
    """One entry of an archive: its name as the archive gives it (untrusted), what it is."""

    name: str
    size: int
    is_dir: bool
    #: Why its type is refused (a link, a device...), or None for a file or a folder.
    refusal: str | None
    #: Its bytes, one chunk at a time; only for a file, once, before the next entry.
    chunks: Callable[[], Iterator[bytes]]


def members(kind: ArchiveFormat, source: IO[bytes]) -> Iterator[Member]:
    """The entries of the archive `source`, in their order; reading one's chunks raises one
    of CHECK_ERRORS if its bytes are not what the archive recorded, and so does the iterator
    where the archive itself breaks off."""
    if kind is ArchiveFormat.ZIP:
        return _zip_members(source)
    return _tar_members(source, compressed=kind is ArchiveFormat.TAR_GZ)


def _zip_members(source: IO[bytes]) -> Iterator[Member]:
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            chunks = partial(_read_zip_member, archive, info)
            yield Member(info.filename, info.file_size, info.is_dir(), _zip_refusal(info), chunks)


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    # zipfile checks the CRC-32 when the member is read to its end: the last read raises.
    with archive.open(info) as member:
        while chunk := member.read(MEMBER_CHUNK):
            yield chunk


def _zip_refusal(info: zipfile.ZipInfo) -> str | None:
    if info.flag_bits & 0x1:
        return "an encrypted member"
    kind = stat.S_IFMT(info.external_attr >> 16)  # the Unix mode, where a Unix tool wrote one
    if kind == stat.S_IFLNK:
        return "a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "a special file (device, FIFO or socket)"
    return None


#: The header tarfile reads at a proper end of the archive (a block of zeros).
_END_OF_ARCHIVE: type[Exception] = tarfile.EOFHeaderError  # type: ignore[attr-defined]


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile takes a header with a bad checksum, one cut short or a missing end-of-archive
    marker for the end of the archive, silently: here they raise, so damage never looks like
    a complete archive."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> _StrictTarInfo:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.HeaderError as error:
            if isinstance(error, _END_OF_ARCHIVE):
                raise
            raise tarfile.ReadError(f"damaged tar header: {error}") from None


def _tar_members(source: IO[bytes], *, compressed: bool) -> Iterator[Member]:
    # tarfile's own gzip stream never checks the trailer: gzip.GzipFile does, at the end.
    stream: IO[bytes] | gzip.GzipFile = (
        gzip.GzipFile(fileobj=source, mode="rb") if compressed else source
    )
    with tarfile.open(
        fileobj=stream, mode="r|", tarinfo=_StrictTarInfo, bufsize=MEMBER_CHUNK
    ) as archive:
        while (info := archive.next()) is not None:
            chunks = partial(_read_tar_member, archive, info)
            yield Member(info.name, info.size, info.isdir(), _tar_refusal(info), chunks)
            # tarfile keeps every header for random access, which a stream never uses: memory
            # would grow with the number of members.
            archive.members.clear()  # type: ignore[attr-defined]
    while stream.read(MEMBER_CHUNK):  # the padding, then gzip's trailer is checked
        pass


def _read_tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo) -> Iterator[bytes]:
    member = archive.extractfile(info)
    assert member is not None  # a regular file: the only kind ever read
    with member:
        while chunk := member.read(MEMBER_CHUNK):
            yield chunk


def _tar_refusal(info: tarfile.TarInfo) -> str | None:
    if info.issym():
        return "a symbolic link"
    if info.islnk():
        return "a hard link"
    if info.isdev():
        return "a device or FIFO"
    if not (info.isfile() or info.isdir()):
        return f"an unsupported member type {info.type!r}"
    return None


def gzip_tar_problem(source: IO[bytes]) -> str | None:
    """Read a .tar.gz through, writing nothing: gzip's CRC-32 and length are in its trailer,
    after the last member, so no member can be trusted before the whole stream is read."""
    try:
        for _ in _tar_members(source, compressed=True):
            pass
    except CHECK_ERRORS as error:
        return str(error) or type(error).__name__
    return None
