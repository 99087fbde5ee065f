"""Unpack a delivered archive beside it, on the same fsspec target, writing nothing outside.

`a/b/x.tar.gz` is unpacked into the folder `a/b/x/`. The archive is read as a stream (a tar)
or through its seekable file (a zip: remote files seek with range requests), one chunk at a
time, so memory stays flat whatever its size. Every member goes through `write_stream`, which
commits it only once its bytes have passed the archive's own checks: a zip member's CRC-32,
gzip's CRC-32 and length trailer, tar's header checksums.

Names inside an archive are as untrusted as the server's filenames. A member that could land
outside the folder (an absolute path, `..`, a drive), or that is not a plain file or folder (a
link, a device, a FIFO), is refused: nothing is written for it, the others are still unpacked,
and the report lists it with the reason. Refusing only the member keeps the one property that
matters (nothing outside the folder) without a second pass over every archive; the caller
decides what a refusal means (the flow ends Failed).

Unpacking into a folder that exists merges into it: each member replaces its path atomically
and nothing else there is touched, so unpacking the same archive again gives the same folder.
"""

from __future__ import annotations

import gzip
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from typing import IO, Any

from regards_order.errors import ConfigurationError, SizeMismatch, TargetError, TargetThrottled
from regards_order.paths import sanitize_filename
from regards_order.transfer import Target, open_target, write_stream

#: The names unpacked, longest first (`.tar.gz` before `.tar`), matched case-insensitively.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")

#: Bytes read from a member (or from a tar stream) at a time.
MEMBER_CHUNK = 256 * 1024

#: Read-ahead of the archive's own file: remote files (s3fs: 50 MiB by default) cache one block.
ARCHIVE_READ_BLOCK = 4 * 1024 * 1024

#: Errors with which an archive says its bytes are not what it recorded.
CHECK_ERRORS = (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error)


class ArchiveFormat(Enum):
    """How an archive is read."""

    ZIP = "zip"
    TAR = "tar"
    TAR_GZ = "tar.gz"


_FORMATS = {
    ".tar.gz": ArchiveFormat.TAR_GZ,
    ".tgz": ArchiveFormat.TAR_GZ,
    ".tar": ArchiveFormat.TAR,
    ".zip": ArchiveFormat.ZIP,
}


class NotAnArchive(ConfigurationError):
    """The file's name does not end in one of ARCHIVE_SUFFIXES."""


@dataclass(frozen=True)
class Extracted:
    """A member written to the folder: its path relative to the folder, size and MD5."""

    path: str
    size: int
    md5: str


@dataclass(frozen=True)
class Problem:
    """A member not written (its name as in the archive) and why."""

    member: str
    reason: str


@dataclass
class UnpackReport:
    """What one unpack did. `ok` only if every member was written and the archive read whole."""

    archive: str
    folder: str
    extracted: list[Extracted] = field(default_factory=list)
    #: Members never written: what they are or where they would go is not allowed.
    refused: list[Problem] = field(default_factory=list)
    #: Members not written: they failed the archive's check, or the target refused them.
    failed: list[Problem] = field(default_factory=list)
    #: Why the archive could not be read (to its end): what follows was not unpacked.
    error: str | None = None

    @property
    def bytes(self) -> int:
        """Bytes written, every member together."""
        return sum(member.size for member in self.extracted)

    @property
    def ok(self) -> bool:
        """Whether everything the archive holds is in the folder, verified."""
        return not self.refused and not self.failed and self.error is None

    def summary(self) -> str:
        """One line for a log or a flow run's state."""
        count = len(self.extracted)
        members = "1 member" if count == 1 else f"{count} members"
        line = f"{members} ({self.bytes} bytes) unpacked into {self.folder}"
        if self.refused:
            line += f"; {len(self.refused)} refused"
        if self.failed:
            line += f"; {len(self.failed)} failed"
        if self.error:
            line += f"; {self.error}"
        return line


def archive_format(name: str) -> tuple[ArchiveFormat, str]:
    """The format of the archive named `name` and its name without the suffix."""
    base = name.rpartition("/")[2]
    for suffix in ARCHIVE_SUFFIXES:
        if base.lower().endswith(suffix):
            return _FORMATS[suffix], base[: -len(suffix)]
    allowed = ", ".join(ARCHIVE_SUFFIXES)
    raise NotAnArchive(f"{base!r} is not an archive this step unpacks (names ending in {allowed})")


def unpack(archive_url: str, storage_options: dict[str, Any] | None = None) -> UnpackReport:
    """Unpack the archive at `archive_url` into the folder beside it named after it.

    Problems of the archive (missing, corrupt, hostile members) are in the report; only a
    target that fails (TargetThrottled: worth trying again, the unpack is idempotent) and a
    name or URL that cannot be used (NotAnArchive, ConfigurationError) raise.
    """
    archive = open_target(archive_url, storage_options)
    kind, stem = archive_format(archive.root)
    parent = archive.root.rpartition("/")[0]
    folder = Target(archive.fs, f"{parent}/{sanitize_filename(stem, fallback='unpacked')}")
    report = UnpackReport(archive=archive.url(archive.root), folder=folder.url(folder.root))
    if not folder.writes_objects and archive.fs.isfile(folder.root):
        report.error = "a file is in the way of the folder"
        return report
    try:
        with archive.fs.open(archive.root, "rb", block_size=ARCHIVE_READ_BLOCK) as source:
            if kind is ArchiveFormat.TAR_GZ and (problem := _gzip_tar_problem(source)):
                report.error = f"the archive is corrupt ({problem}): nothing was unpacked"
                return report
            source.seek(0)
            _extract_all(_members(kind, source), folder, report)
    except FileNotFoundError:
        report.error = "the archive does not exist"
    except PermissionError as error:
        report.error = f"the archive cannot be read: {error}"
    except OSError as error:
        raise TargetThrottled(f"reading {report.archive} failed: {error}") from None
    return report


@dataclass(frozen=True)
class _Member:
    """One entry of an archive, as the unpack sees it."""

    name: str
    size: int
    is_dir: bool
    #: Why its type is refused (a link, a device...), or None for a file or a folder.
    refusal: str | None
    chunks: Callable[[], Iterator[bytes]]


class UnsafeName(Exception):
    """A member's name that could take it outside the folder (the message says how)."""


_DRIVE = re.compile(r"^[A-Za-z]:")


def member_path(name: str) -> str:
    """Where member `name` goes, relative to the folder; raises UnsafeName when it could land
    outside it. A backslash is a separator (as Windows tools write zips), checked like `/`."""
    unified = name.replace("\\", "/")
    if unified.startswith("/"):
        raise UnsafeName("an absolute path")
    if _DRIVE.match(unified):
        raise UnsafeName("a path on a drive")
    parts = [part for part in unified.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeName("'..' in its path")
    # Each component is made harmless as a server filename is (control characters, names some
    # stores refuse, leading dots); one left with nothing usable is refused, not renamed.
    safe = [sanitize_filename(part, fallback="") for part in parts]
    if not safe or "" in safe:
        raise UnsafeName("no usable name")
    return "/".join(safe)


def _extract_all(members: Iterator[_Member], folder: Target, report: UnpackReport) -> None:
    """Write every acceptable member; record the others; stop where the archive breaks."""
    seen = 0
    try:
        for member in members:
            seen += 1
            if member.refusal is not None:
                report.refused.append(Problem(member.name, member.refusal))
                continue
            try:
                relative = member_path(member.name)
            except UnsafeName as refusal:
                report.refused.append(Problem(member.name, str(refusal)))
                continue
            if not member.is_dir:  # folders are made as their files need them
                _extract(member, folder, relative, report)
    except CHECK_ERRORS as error:
        reason = str(error) or type(error).__name__
        entries = f"{seen} entry" if seen == 1 else f"{seen} entries"
        report.error = f"the archive is corrupt after {entries}: {reason}"


def _extract(member: _Member, folder: Target, relative: str, report: UnpackReport) -> None:
    try:
        written = write_stream(
            folder, f"{folder.root}/{relative}", member.chunks(), size=member.size
        )
    except (*CHECK_ERRORS, SizeMismatch, NotImplementedError) as error:
        report.failed.append(Problem(member.name, f"failed the archive's check: {error}"))
    except TargetThrottled:
        raise
    except TargetError as error:
        report.failed.append(Problem(member.name, str(error)))
    else:
        report.extracted.append(Extracted(relative, written.size, written.md5))


def _members(kind: ArchiveFormat, source: IO[bytes]) -> Iterator[_Member]:
    if kind is ArchiveFormat.ZIP:
        return _zip_members(source)
    return _tar_members(source, compressed=kind is ArchiveFormat.TAR_GZ)


def _zip_members(source: IO[bytes]) -> Iterator[_Member]:
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            chunks = partial(_read_zip_member, archive, info)
            yield _Member(info.filename, info.file_size, info.is_dir(), _zip_refusal(info), chunks)


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


def _tar_members(source: IO[bytes], *, compressed: bool) -> Iterator[_Member]:
    # tarfile's own gzip stream never checks the trailer: gzip.GzipFile does, at the end.
    stream: IO[bytes] | gzip.GzipFile = (
        gzip.GzipFile(fileobj=source, mode="rb") if compressed else source
    )
    with tarfile.open(
        fileobj=stream, mode="r|", tarinfo=_StrictTarInfo, bufsize=MEMBER_CHUNK
    ) as archive:
        while (info := archive.next()) is not None:
            chunks = partial(_read_tar_member, archive, info)
            yield _Member(info.name, info.size, info.isdir(), _tar_refusal(info), chunks)
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


def _gzip_tar_problem(source: IO[bytes]) -> str | None:
    """Read a .tar.gz through, writing nothing: gzip's CRC-32 and length are in its trailer,
    after the last member, so no member can be trusted before the whole stream is read."""
    try:
        for _ in _tar_members(source, compressed=True):
            pass
    except CHECK_ERRORS as error:
        return str(error) or type(error).__name__
    return None
