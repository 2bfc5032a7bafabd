"""Native archive access for the archive transports: tar_index, TarStream, write_tar.

Archives are made with Python's tarfile (ustar, GNU and PAX formats) and read
back natively; what write_tar writes is read back by tarfile and by GNU tar.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest
import zstandard

from support.tools import require_tool
from towline import InvalidLayerError, StoreError, _native
from towline._native import TarMember, TarStream, sniff_archive, tar_index, write_tar

BIG = bytes(range(256)) * 4000  # 1 MB, not a multiple of 512


def make_tar(fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A docker-save-like archive with every kind the transports meet."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:

        def add(
            name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = ""
        ) -> None:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            info.linkname = link
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("blobs/", tarfile.DIRTYPE)
        add("blobs/sha256/layer", data=BIG)
        add("manifest.json", data=b'[{"Config":"config.json"}]')
        add("empty")
        add("d" * 150 + "/long-name.tar", data=b"long")
        add("repositories.link", tarfile.SYMTYPE, link="manifest.json")
        add("hard", tarfile.LNKTYPE, link="empty")
        add("fifo", tarfile.FIFOTYPE)
    return buf.getvalue()


EXPECTED = [
    ("blobs/", "dir", 0, ""),
    ("blobs/sha256/layer", "file", len(BIG), ""),
    ("manifest.json", "file", 26, ""),
    ("empty", "file", 0, ""),
    ("d" * 150 + "/long-name.tar", "file", 4, ""),
    ("repositories.link", "symlink", 0, "manifest.json"),
    ("hard", "hardlink", 0, "empty"),
    ("fifo", "other", 0, ""),
]


def summary(members: list[TarMember]) -> list[tuple[str, str, int, str]]:
    return [(m.name, m.kind, m.size, m.link) for m in members]


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    if compression == "bzip2":
        return bz2.compress(data)
    if compression == "xz":
        return lzma.compress(data)
    return data


def stream_all(path: Path, chunk: int = 65536) -> list[tuple[TarMember, bytes]]:
    out = []
    with TarStream(path) as stream:
        for member in stream:
            data = b""
            while piece := stream.read(chunk):
                assert len(piece) <= chunk
                data += piece
            out.append((member, data))
    return out


def drain(stream: TarStream) -> int:
    """Reads the rest of the current member; returns how many bytes it had."""
    total = 0
    while piece := stream.read(4096):
        total += len(piece)
    return total


def write(tmp_path: Path, data: bytes, name: str = "archive.tar") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# === tar_index


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_index_lists_members_with_the_offset_of_their_data(tmp_path: Path, fmt: int) -> None:
    data = make_tar(fmt)
    members = tar_index(write(tmp_path, data))
    assert summary(members) == EXPECTED
    for m in members:
        assert m.offset is not None and m.offset % 512 == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in members:
            if m.kind == "file" and m.offset is not None:
                want = tar.extractfile(m.name).read()  # type: ignore[union-attr]
                assert data[m.offset : m.offset + m.size] == want, m.name


def test_index_refuses_a_compressed_archive_naming_its_compression(tmp_path: Path) -> None:
    path = write(tmp_path, compress(make_tar(), "gzip"), "archive.tar.gz")
    with pytest.raises(ValueError, match="gzip-compressed") as info:
        tar_index(path)
    assert "TarStream" in str(info.value) and str(path) in str(info.value)


def test_index_ignores_what_follows_the_end_marker(tmp_path: Path) -> None:
    data = make_tar() + b"\x00" * 5000 + b"garbage after the end" * 100
    assert summary(tar_index(write(tmp_path, data))) == EXPECTED


def test_index_skips_data_without_reading_it(tmp_path: Path) -> None:
    """A 4 GiB member, a hole on disk, then one more member."""
    path = tmp_path / "big.tar"
    size = 4 << 30
    head = tarfile.TarInfo("layer.tar")
    head.size = size
    tail = io.BytesIO()
    with tarfile.open(fileobj=tail, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("after")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"end"))
    with path.open("wb") as f:
        f.write(head.tobuf(tarfile.USTAR_FORMAT))
        f.seek(size, os.SEEK_CUR)
        f.write(tail.getvalue())
    members = tar_index(path)
    assert summary(members) == [("layer.tar", "file", size, ""), ("after", "file", 3, "")]
    assert members[1].offset == 1024 + size


def test_index_refuses_an_archive_cut_inside_a_member(tmp_path: Path) -> None:
    data = make_tar()
    cut = data.index(BIG[:600]) + 1000
    with pytest.raises(InvalidLayerError, match="truncated") as info:
        tar_index(write(tmp_path, data[:cut]))
    assert info.value.slug == "bad_tar"


# === sniff_archive


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd", "bzip2", "xz"])
def test_sniff_archive_names_the_compression(tmp_path: Path, compression: str) -> None:
    path = write(tmp_path, compress(make_tar(), compression))
    assert sniff_archive(path) == compression


def test_sniff_archive_refuses_what_is_not_a_tar(tmp_path: Path) -> None:
    path = write(tmp_path, b"PK\x03\x04" + b"\x00" * 600, "image.zip")
    with pytest.raises(InvalidLayerError, match="zip") as info:
        sniff_archive(path)
    assert info.value.slug == "unsupported_compression" and str(path) in str(info.value)
    with pytest.raises(StoreError):
        sniff_archive(tmp_path / "missing.tar")


# === TarStream


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd", "bzip2", "xz"])
def test_stream_reads_every_compression(tmp_path: Path, compression: str) -> None:
    path = write(tmp_path, compress(make_tar(), compression))
    with TarStream(path) as stream:
        assert stream.compression == compression
    read = stream_all(path)
    assert summary([m for m, _ in read]) == EXPECTED
    assert all(m.offset is None for m, _ in read)
    contents = {m.name: data for m, data in read}
    assert contents["blobs/sha256/layer"] == BIG
    assert contents["manifest.json"] == b'[{"Config":"config.json"}]'
    assert contents["empty"] == b"" and contents["repositories.link"] == b""


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_stream_skips_what_was_read_partly_or_not_at_all(tmp_path: Path, compression: str) -> None:
    path = write(tmp_path, compress(make_tar(), compression))
    with TarStream(path) as stream:
        assert stream.next() == TarMember("blobs/", "dir")
        layer = stream.next()
        assert layer is not None and layer.name == "blobs/sha256/layer"
        assert stream.read(10) == BIG[:10]
        assert stream.read(5) == BIG[10:15]
        manifest = stream.next()
        assert manifest is not None and manifest.name == "manifest.json"
        assert stream.read() == b'[{"Config":"config.json"}]'
        assert stream.read() == b""
        names = [m.name for m in stream]
        assert names == [name for name, *_ in EXPECTED[3:]]
        assert stream.next() is None
        assert stream.read() == b""


def test_stream_ignores_trailing_garbage_after_the_end_marker(tmp_path: Path) -> None:
    data = compress(make_tar() + b"docker save padding" * 1000, "gzip")
    assert len(stream_all(write(tmp_path, data))) == len(EXPECTED)


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_stream_refuses_a_member_cut_short(tmp_path: Path, compression: str) -> None:
    data = make_tar()
    cut = data[: data.index(BIG[:600]) + 1000]
    path = write(tmp_path, compress(cut, compression))
    with TarStream(path) as stream:
        stream.next()
        stream.next()
        with pytest.raises(InvalidLayerError, match="truncated") as info:
            drain(stream)
        assert str(path) in str(info.value)
        with pytest.raises(ValueError, match="failed earlier"):
            stream.next()


def test_stream_refuses_a_compressed_stream_cut_short(tmp_path: Path) -> None:
    whole = compress(make_tar(), "gzip")
    path = write(tmp_path, whole[: len(whole) // 2])
    with pytest.raises(InvalidLayerError, match="truncated"):
        stream_all(path)


def test_stream_reads_from_a_pipe(tmp_path: Path) -> None:
    """Nothing is seeked: a FIFO (say, a daemon's export piped in) reads like a file."""
    fifo = tmp_path / "archive.fifo"
    os.mkfifo(fifo)
    data = compress(make_tar(), "zstd")

    def feed() -> None:
        with fifo.open("wb") as f:
            f.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        read = stream_all(fifo)
    finally:
        writer.join()
    assert summary([m for m, _ in read]) == EXPECTED
    assert {m.name: d for m, d in read}["blobs/sha256/layer"] == BIG


def test_closed_stream_raises_value_error(tmp_path: Path) -> None:
    stream = TarStream(write(tmp_path, make_tar()))
    stream.close()
    stream.close()
    with pytest.raises(ValueError, match="closed"):
        stream.next()
    with pytest.raises(ValueError, match="closed"):
        stream.read()


# === hostile archives: bounded memory and time


def huge_pax_header(claimed: int) -> bytes:
    """A PAX header block claiming `claimed` bytes of records, none of them present."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = claimed
    return info.tobuf(tarfile.GNU_FORMAT) + b"\x00" * 1024


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_a_huge_pax_header_is_refused_without_reading_it(tmp_path: Path, compression: str) -> None:
    path = write(tmp_path, compress(huge_pax_header(1 << 40), compression))
    with pytest.raises(InvalidLayerError, match="PAX header") as info, TarStream(path) as s:
        s.next()
    assert info.value.slug == "limit_exceeded"
    if compression == "none":
        with pytest.raises(InvalidLayerError, match="PAX header"):
            tar_index(path)


def test_a_real_oversized_pax_record_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        member = tarfile.TarInfo("a")
        member.pax_headers = {"comment": "x" * (2 << 20)}
        tar.addfile(member, io.BytesIO(b""))
    path = write(tmp_path, buf.getvalue())
    with pytest.raises(InvalidLayerError) as info:
        tar_index(path)
    assert info.value.slug == "limit_exceeded"


def test_member_counts_are_capped(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(20):
            tar.addfile(tarfile.TarInfo(f"f{i}"), io.BytesIO(b""))
    path = write(tmp_path, buf.getvalue())
    assert len(tar_index(path, max_members=20)) == 20
    with pytest.raises(InvalidLayerError, match="more than 19 archive members"):
        tar_index(path, max_members=19)
    with (
        pytest.raises(InvalidLayerError, match="more than 5"),
        TarStream(path, max_members=5) as stream,
    ):
        list(stream)


# === write_tar


def sample_entries(tmp_path: Path) -> list[tuple[str, bytes | str | os.PathLike[str]]]:
    layer = tmp_path / "layer.tar"
    layer.write_bytes(BIG)
    empty = tmp_path / "empty-file"
    empty.write_bytes(b"")
    return [
        ("blobs/", b""),
        ("blobs/sha256/", b""),
        ("blobs/sha256/" + "a" * 64, layer),
        ("blobs/sha256/" + "b" * 64, str(empty)),
        ("manifest.json", b'[{"Config":"config.json"}]'),
        ("zero", b""),
        ("p" * 120 + "/" + "q" * 200, b"needs pax"),
        ("ünïcødé", b"utf-8"),
    ]


def contents_of(
    tmp_path: Path, entries: list[tuple[str, bytes | str | os.PathLike[str]]]
) -> dict[str, bytes]:
    out = {}
    for name, content in entries:
        if not name.endswith("/"):
            out[name] = content if isinstance(content, bytes) else Path(content).read_bytes()
    return out


def test_write_tar_round_trips_through_index_and_stream(tmp_path: Path) -> None:
    entries = sample_entries(tmp_path)
    dest = tmp_path / "out.tar"
    write_tar(dest, entries)
    want = contents_of(tmp_path, entries)
    data = dest.read_bytes()
    members = tar_index(dest)
    assert [m.name for m in members] == [name for name, _ in entries]
    assert [m.kind for m in members] == ["dir", "dir"] + ["file"] * 6
    for m in members:
        if m.kind == "file":
            assert m.offset is not None
            assert data[m.offset : m.offset + m.size] == want[m.name]
    streamed = {m.name: content for m, content in stream_all(dest) if m.kind == "file"}
    assert streamed == want


def test_tarfile_reads_what_write_tar_writes(tmp_path: Path) -> None:
    entries = sample_entries(tmp_path)
    dest = tmp_path / "out.tar"
    write_tar(dest, entries, durable=False)
    want = contents_of(tmp_path, entries)
    with tarfile.open(dest) as tar:
        infos = tar.getmembers()
        assert [i.name for i in infos] == [name.rstrip("/") for name, _ in entries]
        for info in infos:
            assert (info.uid, info.gid, info.mtime, info.uname, info.gname) == (0, 0, 0, "", "")
            if info.isdir():
                assert info.mode == 0o755
            else:
                assert info.isreg() and info.mode == 0o644
                assert tar.extractfile(info).read() == want[info.name]  # type: ignore[union-attr]
        # ustar headers; PAX only for the name ustar cannot hold.
        assert [i.name for i in infos if i.pax_headers] == ["p" * 120 + "/" + "q" * 200]


def test_gnu_tar_lists_what_write_tar_writes(tmp_path: Path) -> None:
    require_tool("tar")
    entries = sample_entries(tmp_path)
    dest = tmp_path / "out.tar"
    write_tar(dest, entries)
    out = subprocess.run(
        ["tar", "-tvf", str(dest)],
        capture_output=True,
        check=True,
        env={**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"},
    )
    assert out.stderr == b""
    lines = out.stdout.decode().splitlines()
    assert len(lines) == len(entries)
    assert lines[0].split()[:3] == ["drwxr-xr-x", "0/0", "0"]
    assert lines[2].split()[:3] == ["-rw-r--r--", "0/0", str(len(BIG))]
    assert lines[2].split()[3:5] == ["1970-01-01", "00:00"]
    assert [line.split(maxsplit=5)[5] for line in lines] == [name for name, _ in entries]


def test_write_tar_is_deterministic(tmp_path: Path) -> None:
    entries = sample_entries(tmp_path)
    write_tar(tmp_path / "1.tar", entries)
    write_tar(tmp_path / "2.tar", entries)
    assert (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../escape", "a/../../b", "a/..", "", "nul\x00byte", "x" * 5000]
)
def test_write_tar_refuses_unsafe_names_and_writes_nothing(tmp_path: Path, name: str) -> None:
    dest = tmp_path / "out.tar"
    with pytest.raises(ValueError, match="archive member name"):
        write_tar(dest, [("fine", b"ok"), (name, b"x")])
    assert list(tmp_path.iterdir()) == []


def test_write_tar_refuses_content_it_cannot_write(tmp_path: Path) -> None:
    dest = tmp_path / "out.tar"
    dest.write_bytes(b"previous")
    with pytest.raises(ValueError, match="directory"):
        write_tar(dest, [("dir/", b"content")])
    with pytest.raises(TypeError, match="bytes or a path"):
        write_tar(dest, [("a", 42)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="not a regular file"):
        write_tar(dest, [("a", tmp_path)])
    with pytest.raises(StoreError, match="missing"):
        write_tar(dest, [("a", b"x"), ("b", tmp_path / "missing")])
    # Nothing staged is left behind, and the old file is untouched.
    assert [p.name for p in tmp_path.iterdir()] == ["out.tar"]
    assert dest.read_bytes() == b"previous"


# === TarMember


def test_tar_member_is_a_read_only_value() -> None:
    m = TarMember("a/b", "file", 3, 512)
    assert (m.name, m.kind, m.size, m.offset, m.link) == ("a/b", "file", 3, 512, "")
    assert m == TarMember("a/b", "file", size=3, offset=512, link="")
    assert m != TarMember("a/b", "file", 3, None)
    assert len({m, TarMember("a/b", "file", 3, 512)}) == 1
    assert repr(m) == "TarMember(name='a/b', kind='file', size=3, offset=512, link='')"
    with pytest.raises(AttributeError):
        m.name = "c"  # type: ignore[misc]
    with pytest.raises(ValueError, match="kind"):
        TarMember("a", "block")  # type: ignore[arg-type]
    assert _native.TarMember is TarMember
