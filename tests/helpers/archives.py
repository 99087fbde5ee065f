"""Real archives built in the tests: zip, tar, tar.gz, with any member a test needs."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from dataclasses import dataclass

#: Unix file types as a zip's external attributes carry them (the mode in the high 16 bits).
ZIP_SYMLINK_MODE = 0o120777


@dataclass(frozen=True)
class Entry:
    """One member: a file with `data`, or a link, a device, a FIFO, a folder (`kind`)."""

    name: str
    data: bytes = b""
    kind: str = "file"  # file, dir, symlink, hardlink, chardev, blockdev, fifo
    link: str = ""


_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chardev": tarfile.CHRTYPE,
    "blockdev": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def build_tar(entries: list[Entry], *, gzipped: bool = False) -> bytes:
    """A tar (gzipped if asked) holding `entries`, names exactly as given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _TAR_TYPES[entry.kind]
            info.linkname = entry.link
            info.size = len(entry.data) if entry.kind == "file" else 0
            archive.addfile(info, io.BytesIO(entry.data) if entry.kind == "file" else None)
    data = buffer.getvalue()
    return gzip.compress(data, compresslevel=1) if gzipped else data


def build_zip(entries: list[Entry], *, stored: bool = False) -> bytes:
    """A zip holding `entries` (deflated unless `stored`); symlinks as Unix tools write them."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for entry in entries:
            info = zipfile.ZipInfo(entry.name)
            info.compress_type = method
            if entry.kind == "symlink":
                info.create_system = 3
                info.external_attr = ZIP_SYMLINK_MODE << 16
                archive.writestr(info, entry.link)
            elif entry.kind == "dir":
                info.external_attr = (0o40755 << 16) | 0x10
                archive.writestr(info, b"")
            else:
                assert entry.kind == "file", entry
                archive.writestr(info, entry.data)
    return buffer.getvalue()


def build(suffix: str, entries: list[Entry]) -> bytes:
    """An archive of the format `suffix` names."""
    if suffix == ".zip":
        return build_zip(entries)
    return build_tar(entries, gzipped=suffix in (".tar.gz", ".tgz"))


def zip_member_data_offset(archive: bytes, name: str) -> int:
    """Where the (stored) data of member `name` starts in `archive`."""
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        header = opened.getinfo(name).header_offset
    name_length = int.from_bytes(archive[header + 26 : header + 28], "little")
    extra_length = int.from_bytes(archive[header + 28 : header + 30], "little")
    return header + 30 + name_length + extra_length
