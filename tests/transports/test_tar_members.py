"""The shared tar member reader: an index and ``pread``, or passes of a stream, under some rules.

The transports' own behaviour (names, links, messages) is tested through them in
``test_oci_archive.py`` and ``test_docker_archive.py``; here a plain set of rules
shows what the readers do whatever the rules: the same bytes both ways, heads,
limits, what a first pass keeps, and a truncated or changed archive.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.docker_archives import ArchiveSpec
from support.docker_archives import Member as Entry
from support.images import Compression, compress
from towline import _native
from towline.errors import TowlineError, TransportError
from towline.transports.docker_archive_members import open_members
from towline.transports.oci_archive_files import open_archive
from towline.transports.tar_members import (
    CHUNK,
    HEAD_SIZE,
    Catalog,
    IndexedTar,
    Member,
    StreamedTar,
    TarMembers,
    link_target,
    open_tar,
)

BIG = bytes(range(256)) * (3 * CHUNK // 256 + 7)  # more than three chunks
FILES = {
    "index.json": b'{"kept": true}',
    "big.bin": BIG,
    "empty": b"",
    "small.bin": b"\x1f\x8b and more",
    "late.json": b'{"over": "' + b"x" * 100 + b'"}',
}


class Rules:
    """Rules as simple as can be: the last member of a name, ``*.json`` kept, 64 bytes in all."""

    description = "test:archive"
    kept_budget = 64

    def clean(self, name: str) -> str:
        return posixpath.normpath(name)

    def lookup(self, catalog: Catalog, name: str, what: str) -> Member:
        member = catalog.last(name)
        if member is None or member.kind != "file":
            raise TransportError(f"{self.description}: no {what or name}", slug="blob_unknown")
        return member

    def keep(self, member: Member, head: bytes) -> bool:
        return member.name.endswith(".json")

    def damaged(self, exc: TowlineError) -> TransportError:
        return TransportError(f"{self.description}: damaged: {exc}", slug="damaged")

    def truncated(self, member: Member) -> TransportError:
        return TransportError(f"{self.description}: {member.name} is cut", slug="truncated")

    def too_large(self, member: Member, limit: int, what: str) -> TransportError:
        return TransportError(f"{what or member.name} is over {limit}", slug="too_large")


def spec_of(files: dict[str, bytes]) -> ArchiveSpec:
    """A directory, then ``files`` named ``./<name>``."""
    entries = [Entry(f"./{name}", data) for name, data in files.items()]
    return ArchiveSpec([Entry("dir", kind="dir"), *entries], with_manifest=False)


def write_archive(path: Path, compression: Compression, files: dict[str, bytes] = FILES) -> Path:
    return spec_of(files).pack(path, compression)


@pytest.fixture(params=["none", "gzip", "zstd"])
def members(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TarMembers]:
    opened = open_tar(write_archive(tmp_path / "a.tar", request.param), Rules())
    yield opened
    opened.close()


# === the catalog and links


def test_the_catalog_finds_members_by_cleaned_name_first_or_last() -> None:
    catalog = Catalog(posixpath.normpath)
    entries = [
        _native.TarMember("./a", "file"),
        _native.TarMember("b", "dir"),
        _native.TarMember("a//", "hardlink", link="a"),
        _native.TarMember("c/../a", "file"),
    ]
    added = [catalog.add(ordinal, entry) for ordinal, entry in enumerate(entries)]
    assert [m.name for m in added] == ["a", "b", "a", "a"]
    assert catalog.first("a") == added[0]
    assert catalog.last("./a") == added[3]
    assert catalog.last("a", before=3) == added[2]
    assert catalog.last("a", before=0) is None
    assert "b/" in catalog and "c" not in catalog
    assert catalog.first("c") is None


@pytest.mark.parametrize(
    ("name", "kind", "link", "target"),
    [
        ("dir/link", "symlink", "../x", "dir/../x"),  # relative to the link's directory
        ("link", "symlink", "x", "x"),
        ("dir/link", "symlink", "/etc/passwd", "/etc/passwd"),  # absolute stays absolute
        ("dir/link", "hardlink", "x", "x"),  # from the archive root
    ],
)
def test_a_link_target_is_named_from_the_archive_root(
    name: str, kind: str, link: str, target: str
) -> None:
    assert link_target(Member(0, name, kind, 0, 0, link)) == target


# === reading, both ways


def test_both_ways_serve_the_same_bytes_in_any_order(members: TarMembers) -> None:
    assert isinstance(members, StreamedTar if not members.parallel else IndexedTar)
    names = [*FILES, *reversed(FILES), "big.bin", "big.bin"]
    for name in names:
        member = members.lookup(name)
        assert member.size == len(FILES[name])
        assert members.head(member) == FILES[name][:HEAD_SIZE]
        assert members.read(member, len(BIG)) == FILES[name]
        sink, reported = io.BytesIO(), []
        members.stream(member, sink, reported.append)  # type: ignore[arg-type]
        assert sink.getvalue() == FILES[name]
        assert sum(reported) == len(FILES[name]) and all(0 < n <= CHUNK for n in reported)


def test_a_stream_stops_at_the_length_asked(members: TarMembers) -> None:
    big = members.lookup("./big.bin")
    for length in (CHUNK + 5, 3, len(BIG) + 100):
        sink = io.BytesIO()
        members.stream(big, sink, None, length)  # type: ignore[arg-type]
        assert sink.getvalue() == BIG[:length]


def test_a_member_over_the_limit_is_refused_before_it_is_read(members: TarMembers) -> None:
    big = members.lookup("big.bin")
    with pytest.raises(TransportError, match="the big file is over 1000") as info:
        members.read(big, 1000, "the big file")
    assert info.value.slug == "too_large"


def test_a_name_the_rules_do_not_find_is_their_error(members: TarMembers) -> None:
    with pytest.raises(TransportError, match="no dir"):
        members.lookup("dir")


# === what the first pass over a compressed archive keeps


def test_the_first_pass_keeps_what_the_rules_ask_within_the_budget(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", "gzip")
    members = open_tar(archive, Rules())
    assert isinstance(members, StreamedTar)
    archive.unlink()  # from now on only what the first pass kept can be read
    kept, small = members.lookup("index.json"), members.lookup("small.bin")
    assert members.read(kept, 100) == FILES["index.json"]
    assert members.head(small) == FILES["small.bin"][:HEAD_SIZE]  # every file's head is kept
    for name in ("small.bin", "late.json"):  # not JSON; JSON over the budget
        with pytest.raises(TransportError, match="test:archive: damaged: open ") as info:
            members.read(members.lookup(name), 1000)
        assert info.value.slug == "damaged"
    members.close()


def test_a_failed_copy_starts_a_new_pass_next_time(tmp_path: Path) -> None:
    members = open_tar(write_archive(tmp_path / "a.tar.zst", "zstd"), Rules())
    big = members.lookup("big.bin")

    def interrupt(chunk: bytes) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        members.copy(big, interrupt)
    chunks: list[bytes] = []
    members.copy(big, chunks.append)
    assert b"".join(chunks) == BIG
    members.close()


# === damaged, truncated and changed archives


def test_what_is_not_a_tar_is_the_rules_damaged_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"PK\x03\x04 not a tar" + bytes(600))
    with pytest.raises(TransportError, match=r"test:archive: damaged: .*junk\.tar"):
        open_tar(junk, Rules())


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_a_truncated_archive_is_damaged_from_the_start(
    tmp_path: Path, compression: Compression
) -> None:
    # The index, or the first pass, reads every header: the cut is found on opening.
    raw = spec_of(FILES).tar()
    archive = tmp_path / "a.tar"
    archive.write_bytes(compress(raw[: len(raw) // 2], compression))
    with pytest.raises(TransportError, match=r"^test:archive: damaged: ") as info:
        open_tar(archive, Rules())
    assert info.value.slug == "damaged"


def test_a_member_cut_short_after_indexing_is_truncated(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar", "none")
    members = open_tar(archive, Rules())
    big = members.lookup("big.bin")
    with open(archive, "r+b") as file:
        file.truncate(big.offset + 10)
    with pytest.raises(TransportError, match=r"big\.bin is cut") as info:
        members.read(big, len(BIG))
    assert info.value.slug == "truncated"
    members.close()
    with pytest.raises(TransportError, match="the archive is closed"):
        members.head(big)


def test_a_member_gone_on_a_later_pass_is_truncated(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", "gzip")
    members = open_tar(archive, Rules())
    late = members.lookup("small.bin")
    write_archive(archive, "gzip", {"index.json": FILES["index.json"]})
    with pytest.raises(TransportError, match=r"small\.bin is cut"):
        members.read(late, 1000)
    members.close()


# === where the transports' rules differ: names and links


def linked_archive(path: Path, compression: Compression) -> Path:
    """Two members named blobs/x, and hard links before, after and outside them."""
    entries = [
        Entry("later", kind="hardlink", target="blobs/y"),  # its target comes after it
        Entry("./blobs/x", b"old"),
        Entry("early", kind="hardlink", target="blobs/x"),
        Entry("chain", kind="hardlink", target="/early"),
        Entry("blobs/y", b"y"),
        Entry("blobs/x", b"new"),
        Entry("../blobs/x", b"outside"),
        Entry("outside", kind="hardlink", target="../blobs/x"),
    ]
    return ArchiveSpec(entries, with_manifest=False).pack(path, compression)


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_oci_archive_members_are_what_an_untar_leaves(
    tmp_path: Path, compression: Compression
) -> None:
    # The last member of a name; a hard link is the file its target was when it came.
    files = open_archive(linked_archive(tmp_path / "a.tar", compression), "oci-archive:a")
    assert files.read("blobs/x", 100) == b"new"
    assert files.read("early", 100) == b"old"
    assert files.read("chain", 100) == b"old"
    for name in ("later", "outside"):
        with pytest.raises(TransportError, match=f"file {name} is missing from ") as info:
            files.read(name, 100)
        assert info.value.slug == "blob_unknown"
    files.close()


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_docker_archive_members_are_what_c_image_finds(
    tmp_path: Path, compression: Compression
) -> None:
    # The first member of a name; one link followed, wherever its target is, if inside.
    members = open_members(linked_archive(tmp_path / "a.tar", compression), "docker-archive:a")
    assert members.read(members.lookup("blobs/x", ""), 100) == b"old"
    assert members.read(members.lookup("later", ""), 100) == b"y"
    for name in ("chain", "outside"):  # an absolute target is outside too
        with pytest.raises(TransportError, match="which points outside the archive") as info:
            members.lookup(name, "layer")
        assert info.value.slug == "unsafe_path"
    members.close()
