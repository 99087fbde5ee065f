"""Unpacking real archives on a local folder, fsspec memory and S3 (moto): every member's bytes
at the target, nothing outside the folder, nothing of a member that fails its check."""

from __future__ import annotations

import hashlib
import posixpath
import random
import tarfile
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fsspec.core import url_to_fs
from hypothesis import given, settings
from hypothesis import strategies as st

from regards_order.unpack import (
    ARCHIVE_SUFFIXES,
    NotAnArchive,
    UnpackReport,
    UnsafeName,
    member_path,
    unpack,
)
from tests.helpers.archives import Entry, build, build_tar, build_zip, zip_member_data_offset
from tests.helpers.targets import DeliveryTarget

SUFFIXES = [".zip", ".tar", ".tar.gz", ".tgz"]
BIG = bytes(random.Random(7).randbytes(700 * 1024))  # several chunks of a member

GOOD = [
    Entry("readme.txt", b"hello\n"),
    Entry("data/", kind="dir"),
    Entry("data/granule.bin", BIG),
    Entry("data/nested/deep/empty.dat", b""),
    Entry("./data/dot.txt", b"dot"),
]
#: Where each good member lands, relative to the folder.
GOOD_PATHS = {
    "readme.txt": b"hello\n",
    "data/granule.bin": BIG,
    "data/nested/deep/empty.dat": b"",
    "data/dot.txt": b"dot",
}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def put(target: DeliveryTarget, path: str, data: bytes) -> None:
    """A file at `path` under the target's root, written from outside the pipeline."""
    target.fs.makedirs(f"{target.root}/{path}".rpartition("/")[0], exist_ok=True)
    target.write(path, data)


def put_archive(target: DeliveryTarget, suffix: str, data: bytes) -> str:
    """Deliver `data` as products/x<suffix> at the target; return its URL."""
    put(target, f"products/x{suffix}", data)
    return f"{target.url}/products/x{suffix}"


def run(target: DeliveryTarget, url: str) -> UnpackReport:
    return unpack(url, target.storage_options)


def whole(target: DeliveryTarget, tmp_path: Path) -> list[str]:
    """Everything the target's filesystem holds around the test: the whole temporary folder
    (local), the whole bucket (S3) or the target's top folder (memory), relative to the root."""
    fs = target.fs
    if target.kind == "local":
        return sorted(
            str(p.relative_to(target.root)) if p.is_relative_to(target.root) else str(p)
            for p in tmp_path.rglob("*")
            if not p.is_dir()
        )
    top = "/" + target.root.lstrip("/").split("/", 1)[0]
    if target.kind == "s3":
        top = top.lstrip("/")
    return sorted(p.lstrip("/").removeprefix(target.root.lstrip("/") + "/") for p in fs.find(top))


def assert_members_at_target(target: DeliveryTarget, report: UnpackReport) -> None:
    for path, data in GOOD_PATHS.items():
        assert target.read(f"products/x/{path}") == data, path
    assert {m.path: m.md5 for m in report.extracted} == {p: md5(d) for p, d in GOOD_PATHS.items()}
    assert {m.path: m.size for m in report.extracted} == {p: len(d) for p, d in GOOD_PATHS.items()}


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_members_land_in_a_folder_beside_the_archive(
    target: DeliveryTarget, tmp_path: Path, suffix: str
) -> None:
    report = run(target, put_archive(target, suffix, build(suffix, GOOD)))

    assert report.ok, report
    assert_members_at_target(target, report)
    assert report.bytes == sum(len(d) for d in GOOD_PATHS.values())
    assert url_to_fs(report.folder, **target.storage_options)[1] == f"{target.root}/products/x"
    expected = [f"products/x{suffix}"] + [f"products/x/{p}" for p in GOOD_PATHS]
    assert whole(target, tmp_path) == sorted(expected)
    assert target.pending_uploads() == []


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_unpacking_again_replaces_members_and_keeps_the_rest(
    target: DeliveryTarget, suffix: str
) -> None:
    url = put_archive(target, suffix, build(suffix, GOOD))
    put(target, "products/x/readme.txt", b"an older version")
    put(target, "products/x/notes.txt", b"the operator's own file")

    first, second = run(target, url), run(target, url)

    assert first.ok and second.ok
    assert first.extracted == second.extracted
    assert_members_at_target(target, second)
    assert target.read("products/x/notes.txt") == b"the operator's own file"
    assert target.leftovers() == []


def hostile_entries(tmp_path: Path, suffix: str) -> list[Entry]:
    """Members that would land outside the folder, or are not plain files, one good one."""
    entries = [
        Entry("../evil", b"up one"),
        Entry("../../../../../../../../evil-deep", b"up to the root"),
        Entry(f"{tmp_path}/evil-absolute", b"absolute"),
        Entry("a/../../evil-b", b"down and up"),
        Entry("..\\evil-backslash", b"windows parent"),
        Entry("C:/evil-drive", b"a drive"),
        Entry("evil-link", kind="symlink", link="/etc"),
        Entry("kept.txt", b"the only good member"),
    ]
    if suffix != ".zip":  # zips carry no hard links nor devices
        entries += [
            Entry("evil-hardlink", kind="hardlink", link="/etc/passwd"),
            Entry("evil-device", kind="chardev"),
            Entry("evil-block", kind="blockdev"),
            Entry("evil-fifo", kind="fifo"),
        ]
    return entries


@pytest.mark.parametrize("suffix", [".zip", ".tar", ".tar.gz"])
def test_hostile_members_write_nothing_anywhere(
    target: DeliveryTarget, tmp_path: Path, suffix: str
) -> None:
    entries = hostile_entries(tmp_path, suffix)
    report = run(target, put_archive(target, suffix, build(suffix, entries)))

    assert not report.ok
    assert [m.path for m in report.extracted] == ["kept.txt"]
    refused = {p.member: p.reason for p in report.refused}
    assert set(refused) == {e.name for e in entries} - {"kept.txt"}
    assert refused["../evil"] == "'..' in its path"
    assert refused[f"{tmp_path}/evil-absolute"] == "an absolute path"
    assert refused["C:/evil-drive"] == "a path on a drive"
    assert refused["evil-link"] == "a symbolic link"
    if suffix != ".zip":
        assert refused["evil-hardlink"] == "a hard link"
        assert refused["evil-fifo"] == refused["evil-device"] == "a device or FIFO"
    assert whole(target, tmp_path) == [f"products/x{suffix}", "products/x/kept.txt"]
    folder = f"{target.root}/products/x"
    for entry in entries:  # where a naive extraction would have written them
        naive = posixpath.normpath(posixpath.join(folder, entry.name.replace("\\", "/")))
        if "evil" in naive:
            assert not target.fs.exists(naive), naive
    assert target.pending_uploads() == []


def test_a_zip_member_that_fails_its_crc_leaves_nothing_at_its_path(
    target: DeliveryTarget,
) -> None:
    damaged = bytearray(
        build_zip([Entry("bad.bin", BIG), Entry("good.txt", b"intact")], stored=True)
    )
    damaged[zip_member_data_offset(bytes(damaged), "bad.bin") + 1000] ^= 0xFF
    report = run(target, put_archive(target, ".zip", bytes(damaged)))

    assert [p.member for p in report.failed] == ["bad.bin"]
    assert "Bad CRC-32" in report.failed[0].reason
    assert not target.fs.exists(f"{target.root}/products/x/bad.bin")
    assert target.read("products/x/good.txt") == b"intact"
    assert target.names() == {"products/x.zip", "products/x/good.txt"}
    assert target.leftovers() == [] and target.pending_uploads() == []


def gzipped_tar() -> bytes:
    return build_tar([Entry("a.bin", BIG), Entry("b.txt", b"b")], gzipped=True)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:-8] + b"\0\0\0\0" + data[-4:], id="crc-trailer"),
        pytest.param(lambda data: data[:-4] + b"\1\0\0\0", id="length-trailer"),
    ],
)
def test_a_damaged_tar_gz_unpacks_nothing(
    target: DeliveryTarget, damage: Callable[[bytes], bytes]
) -> None:
    report = run(target, put_archive(target, ".tar.gz", damage(gzipped_tar())))

    assert not report.ok and report.extracted == []
    assert report.error is not None and "nothing was unpacked" in report.error
    assert target.names() == {"products/x.tar.gz"}
    assert target.pending_uploads() == []


def test_a_truncated_tar_keeps_only_the_members_read_whole(tmp_path: Path) -> None:
    data = build_tar([Entry("first.txt", b"first"), Entry("second.bin", BIG)])
    archive = tmp_path / "x.tar"
    archive.write_bytes(data[: 3 * 512 + len(BIG) // 2])  # cut inside the second member

    report = unpack(str(archive))

    assert [m.path for m in report.extracted] == ["first.txt"]
    assert [p.member for p in report.failed] == ["second.bin"]
    assert report.error is not None and not report.ok
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["first.txt"]


def test_a_tar_header_with_a_bad_checksum_is_not_taken_for_the_end(tmp_path: Path) -> None:
    data = bytearray(build_tar([Entry("first.txt", b"first"), Entry("second.txt", b"second")]))
    second_header = bytes(data).index(b"second.txt")
    data[second_header + 200] ^= 0x01  # tarfile alone would stop there, silently
    archive = tmp_path / "x.tar"
    archive.write_bytes(bytes(data))

    report = unpack(str(archive))

    assert [m.path for m in report.extracted] == ["first.txt"]
    assert report.error is not None and "bad checksum" in report.error


def test_a_file_in_the_way_fails_only_its_member(tmp_path: Path) -> None:
    entries = [Entry("a", b"a file"), Entry("a/b", b"under a file"), Entry("c", b"c")]
    archive = tmp_path / "x.zip"
    archive.write_bytes(build_zip(entries))

    report = unpack(str(archive))

    assert [m.path for m in report.extracted] == ["a", "c"]
    assert [p.member for p in report.failed] == ["a/b"]
    assert "in the way" in report.failed[0].reason
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["a", "c"]


def test_a_name_that_is_not_an_archive_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.tif").write_bytes(b"II*\0")
    with pytest.raises(NotAnArchive, match=r"\.tar\.gz"):
        unpack(str(tmp_path / "x.tif"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tif"]


def test_a_missing_archive_is_reported(tmp_path: Path) -> None:
    report = unpack(str(tmp_path / "gone.zip"))
    assert report.error == "the archive does not exist" and not report.ok
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_zip_is_reported(tmp_path: Path) -> None:
    (tmp_path / "x.zip").write_bytes(b"PK not really")
    report = unpack(str(tmp_path / "x.zip"))
    assert report.error is not None and "not a zip file" in report.error


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a/b.txt", "a/b.txt"),
        ("./a//b.txt", "a/b.txt"),
        ("dir\\file.txt", "dir/file.txt"),
        ("bad:name?.txt", "bad_name_.txt"),
        (".hidden", "hidden"),
    ],
)
def test_member_paths_stay_inside(name: str, expected: str) -> None:
    assert member_path(name) == expected


@pytest.mark.parametrize(
    "name", ["/etc/x", "\\\\server\\share", "../x", "a/../../b", "a/..", "C:x", "", "./", " . /x"]
)
def test_member_paths_that_could_leave_are_refused(name: str) -> None:
    with pytest.raises(UnsafeName):
        member_path(name)


@settings(deadline=None)  # the machine may be busy: a slow example is not a failure
@given(
    st.one_of(
        st.text(alphabet=st.sampled_from(list("ab./\\: \x00C")), max_size=24),
        st.text(max_size=40),
    )
)
def test_any_member_path_accepted_stays_inside(name: str) -> None:
    try:
        path = member_path(name)
    except UnsafeName:
        return
    assert path and not path.startswith("/")
    assert posixpath.normpath(f"/folder/{path}").startswith("/folder/")
    assert all(part not in ("", ".", "..") and "\\" not in part for part in path.split("/"))


def test_every_suffix_is_tested() -> None:
    assert sorted(ARCHIVE_SUFFIXES) == sorted(SUFFIXES)


MIB = 1024 * 1024
LARGE = 64 * MIB


def write_large_archive(path: Path, suffix: str) -> str:
    """An archive of one 64 MiB member of generated bytes, written to disk as it is made."""
    generator = random.Random(64)
    digest = hashlib.md5()
    source = path.parent / "large.bin"
    with source.open("wb") as out:
        for _ in range(LARGE // MIB):
            chunk = generator.randbytes(MIB)
            digest.update(chunk)
            out.write(chunk)
    if suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            archive.write(source, "large.bin")
    else:
        with tarfile.open(path, "w:gz", compresslevel=1) as archive:
            archive.add(source, "large.bin")
    source.unlink()
    return digest.hexdigest()


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_a_large_member_keeps_memory_flat(tmp_path: Path, suffix: str) -> None:
    archive = tmp_path / f"x{suffix}"
    expected_md5 = write_large_archive(archive, suffix)

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        report = unpack(str(archive))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert report.ok, report
    assert [(m.path, m.size, m.md5) for m in report.extracted] == [
        ("large.bin", LARGE, expected_md5)
    ]
    assert hashlib.md5((tmp_path / "x" / "large.bin").read_bytes()).hexdigest() == expected_md5
    assert peak - before < 32 * MIB, f"peak grew by {(peak - before) / MIB:.1f} MiB"
