"""Safe target names for untrusted server filenames.

A server filename becomes one path component, never a path: separators, `..`, control
characters and over-long names cannot take a file outside the target. Two files of one order
whose names clash both keep a name: the later one gets its file id (or a digest) added.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Container

from regards_order.models import OrderFile

#: The checksum manifest every delivery writes at the target's root (the format of
#: `md5sum -c`): a server file of that name gets another one.
MANIFEST_NAME = "MD5SUMS"

#: Longest name, in UTF-8 bytes, leaving room under the usual 255-byte limit for the
#: temporary name used while a file is being written (a dot, a suffix of ~20 bytes).
MAX_NAME_BYTES = 200

# Separators, characters some filesystems and object stores refuse, and control characters.
_UNSAFE = re.compile(r'[/\\<>:"|?*\x00-\x1f\x7f-\x9f]')
_RESERVED_WINDOWS = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE)


def sanitize_filename(name: str, fallback: str) -> str:
    """A single, harmless path component for `name`; `fallback` where nothing usable is left."""
    cleaned = unicodedata.normalize("NFC", name)
    cleaned = _UNSAFE.sub("_", cleaned)
    # Leading and trailing dots and spaces: no '..', no hidden-by-accident, no trailing-dot names.
    cleaned = cleaned.strip(" .")
    if not cleaned.strip("_"):
        return fallback
    if _RESERVED_WINDOWS.match(cleaned):
        cleaned = f"_{cleaned}"
    return _shorten(cleaned)


def _shorten(name: str) -> str:
    encoded = name.encode("utf-8")
    if len(encoded) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:12]
    stem, dot, extension = name.rpartition(".")
    if not dot or len(extension.encode("utf-8")) > 16:
        stem, extension = name, ""
    suffix = f"-{digest}" + (f".{extension}" if extension else "")
    budget = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    # Cut on a character boundary.
    head = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return head + suffix


def with_discriminator(name: str, discriminator: str) -> str:
    """`name` with `discriminator` inserted before its extension (`a.tif` -> `a.17.tif`)."""
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        candidate = f"{name}.{discriminator}"
    else:
        candidate = f"{stem}.{discriminator}.{extension}"
    return _shorten(candidate)


def choose_name(file: OrderFile, taken: Container[str]) -> str:
    """The name `file` gets under the target: its own filename made safe, unless another file
    of the order has it (`taken`), in which case its file id (or a digest) is added."""
    discriminator = (
        str(file.id) if file.id is not None else hashlib.sha256(file.key.encode()).hexdigest()[:10]
    )
    name = sanitize_filename(file.filename, fallback=f"regards-file-{discriminator}")
    base, counter = name, 1
    while name in taken or name == MANIFEST_NAME:
        suffix = discriminator if counter == 1 else f"{discriminator}-{counter}"
        name = with_discriminator(base, suffix)
        counter += 1
    return name
