"""Unpack a delivered archive beside it, on the same fsspec target, writing nothing outside.

`a/b/x.tar.gz` is unpacked into the folder `a/b/x/`. The archive is read one chunk at a time
(see regards_order.archives), so memory stays flat whatever its size, and every member goes
through `write_stream`, which commits it only once its bytes have passed the archive's own
checks. A .tar.gz is read through once before anything is written: gzip's CRC-32 comes after
the last member.

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

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from regards_order.archives import (
    CHECK_ERRORS,
    ArchiveFormat,
    Member,
    gzip_tar_problem,
    members,
)
from regards_order.errors import ConfigurationError, SizeMismatch, TargetError, TargetThrottled
from regards_order.paths import sanitize_filename
from regards_order.transfer import Target, open_target, write_stream

#: The names unpacked, longest first (`.tar.gz` before `.tar`), matched case-insensitively.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")

#: Read-ahead of the archive's own file: remote files (s3fs: 50 MiB by default) cache one block.
ARCHIVE_READ_BLOCK = 4 * 1024 * 1024

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
            if kind is ArchiveFormat.TAR_GZ and (problem := gzip_tar_problem(source)):
                report.error = f"the archive is corrupt ({problem}): nothing was unpacked"
                return report
            source.seek(0)
            _extract_all(members(kind, source), folder, report)
    except FileNotFoundError:
        report.error = "the archive does not exist"
    except PermissionError as error:
        report.error = f"the archive cannot be read: {error}"
    except OSError as error:
        raise TargetThrottled(f"reading {report.archive} failed: {error}") from None
    return report


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


def _extract_all(entries: Iterator[Member], folder: Target, report: UnpackReport) -> None:
    """Write every acceptable member; record the others; stop where the archive breaks."""
    seen = 0
    try:
        for member in entries:
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
        read = f"{seen} entry" if seen == 1 else f"{seen} entries"
        report.error = f"the archive is corrupt after {read}: {reason}"


def _extract(member: Member, folder: Target, relative: str, report: UnpackReport) -> None:
    try:
        written = write_stream(
            folder, f"{folder.root}/{relative}", member.chunks(), size=member.size
        )
    except (*CHECK_ERRORS, SizeMismatch) as error:
        report.failed.append(Problem(member.name, f"failed the archive's check: {error}"))
    except NotImplementedError as error:  # zipfile: a compression method it does not read
        report.failed.append(Problem(member.name, f"cannot be read: {error}"))
    except TargetThrottled:
        raise
    except TargetError as error:
        report.failed.append(Problem(member.name, str(error)))
    else:
        report.extracted.append(Extracted(relative, written.size, written.md5))
