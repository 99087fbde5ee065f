"""Untrusted server filenames never leave the target, and clashes keep both files."""

from __future__ import annotations

import os
import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regards_order.models import OrderFile
from regards_order.paths import MAX_NAME_BYTES, choose_name, sanitize_filename


def _file(file_id: int | None, name: str, url: str = "") -> OrderFile:
    return OrderFile(id=file_id, url=url or f"https://h/f/{file_id}", filename=name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("scene.tif", "scene.tif"),
        ("../x", "_x"),
        ("/etc/passwd", "_etc_passwd"),
        ("a/b", "a_b"),
        ("..", "fallback"),
        ("", "fallback"),
        ("   ", "fallback"),
        ("a\x00b\nc", "a_b_c"),
        ("..\\..\\win.ini", "_.._win.ini"),
        ("CON", "_CON"),
    ],
)
def test_sanitize_known_hostile_names(name: str, expected: str) -> None:
    assert sanitize_filename(name, fallback="fallback") == expected


def test_long_names_are_shortened_keeping_extension_and_uniqueness() -> None:
    first = sanitize_filename("a" * 300 + ".tif", fallback="f")
    second = sanitize_filename("a" * 299 + "b.tif", fallback="f")
    assert len(first.encode()) <= MAX_NAME_BYTES and first.endswith(".tif")
    assert first != second


@given(st.text(min_size=0, max_size=400))
def test_any_name_becomes_one_safe_component(name: str) -> None:
    result = sanitize_filename(name, fallback="regards-file-1")
    assert result and "/" not in result and "\\" not in result and "\x00" not in result
    assert result not in (".", "..")
    assert len(result.encode("utf-8")) <= MAX_NAME_BYTES
    joined = posixpath.normpath(posixpath.join("/target", result))
    assert posixpath.dirname(joined) == "/target"
    assert not any(ord(c) < 32 for c in result)


def test_clashing_names_are_both_kept() -> None:
    taken: set[str] = set()
    for file_id, filename in ((10, "data.nc"), (11, "data.nc"), (12, "data.11.nc")):
        taken.add(choose_name(_file(file_id, filename), taken))
    assert taken == {"data.nc", "data.11.nc", "data.11.12.nc"}


def test_files_without_id_get_a_stable_discriminator() -> None:
    one = choose_name(_file(None, "x.txt", url="https://h/a"), set())
    two = choose_name(_file(None, "x.txt", url="https://h/b"), {one})
    assert one == "x.txt" and two != one and two.endswith(".txt")
    assert two == choose_name(_file(None, "x.txt", url="https://h/b"), {one})
    assert os.sep not in two


def test_the_manifests_name_is_never_a_files() -> None:
    assert choose_name(_file(7, "MD5SUMS"), set()) == "MD5SUMS.7"
