"""What an unpacked layer holds: every member type and its metadata, as the tar says."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from support.images import TarBuilder
from support.tools import require_tool

from .layers import compress, run_layer

MTIME = 1_700_000_000


def unpack_ok(tmp_path: Path, raw: bytes, **options: object) -> Path:
    run = run_layer(tmp_path / "store", compress(raw, "gzip"), uncompressed=raw, **options)
    assert run.error is None, run.error
    return run.dest


def test_modes_mtimes_and_kinds(tmp_path: Path) -> None:
    raw = (
        TarBuilder(mtime=MTIME)
        .add_dir("ro", mode=0o555)
        .add_file("ro/inside", b"x", mode=0o400)
        .add_file("suid", b"#!", mode=0o4755)
        .add_file("sticky", b"", mode=0o1777)
        .add_symlink("link", "ro/inside")
        .add_hardlink("hard", "ro/inside")
        .bytes()
    )
    dest = unpack_ok(tmp_path, raw)
    # A read-only directory still received its child: modes are applied at the end.
    assert stat.S_IMODE((dest / "ro").stat().st_mode) == 0o555
    assert (dest / "ro/inside").read_bytes() == b"x"
    assert stat.S_IMODE((dest / "ro/inside").stat().st_mode) == 0o400
    assert stat.S_IMODE((dest / "suid").stat().st_mode) == 0o4755
    assert stat.S_IMODE((dest / "sticky").stat().st_mode) == 0o1777
    assert os.readlink(dest / "link") == "ro/inside"
    assert (dest / "hard").stat().st_ino == (dest / "ro/inside").stat().st_ino
    for name in ("ro", "ro/inside", "suid"):
        assert (dest / name).stat().st_mtime == MTIME
    assert (dest / "link").lstat().st_mtime == MTIME


DIR_MODES = (0o700, 0o750, 0o755, 0o777, 0o1777, 0o2775, 0o555, 0o311)
FILE_MODES = (0o600, 0o644, 0o666, 0o777, 0o2755, 0o400)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_modes_are_exact_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    # The unpacker skips chmod calls when creation already gave the right mode;
    # the umask decides when it did.
    builder = TarBuilder(mtime=MTIME)
    for mode in DIR_MODES:
        builder.add_dir(f"d{mode:o}", mode=mode).add_file(f"d{mode:o}/f", b"f", mode=0o644)
    for mode in FILE_MODES:
        builder.add_file(f"f{mode:o}", b"x", mode=mode)
    old = os.umask(umask)
    try:
        dest = unpack_ok(tmp_path, builder.bytes())
    finally:
        os.umask(old)
    for mode in DIR_MODES:
        assert stat.S_IMODE((dest / f"d{mode:o}").stat().st_mode) == mode, oct(mode)
        assert (dest / f"d{mode:o}").stat().st_mtime == MTIME
    for mode in FILE_MODES:
        assert stat.S_IMODE((dest / f"f{mode:o}").stat().st_mode) == mode, oct(mode)


def test_pax_subsecond_mtime(tmp_path: Path) -> None:
    info = tarfile.TarInfo("precise")
    info.mtime = 1_700_000_000.25
    info.size = 1
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b"p"))
    dest = unpack_ok(tmp_path, buf.getvalue())
    assert (dest / "precise").stat().st_mtime_ns == 1_700_000_000_250_000_000


def test_ownership_follows_the_archive_when_root(tmp_path: Path) -> None:
    raw = TarBuilder().add_file("owned", b"", uid=1234, gid=4321).add_dir("d", uid=7, gid=8).bytes()
    dest = unpack_ok(tmp_path, raw)
    st = (dest / "owned").stat()
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 4321)
        assert ((dest / "d").stat().st_uid, (dest / "d").stat().st_gid) == (7, 8)
    else:  # an unprivileged user keeps its own ids, as tar does
        assert st.st_uid == os.geteuid()


def test_ownership_can_be_turned_off(tmp_path: Path) -> None:
    raw = TarBuilder().add_file("owned", b"", uid=1234, gid=4321).bytes()
    dest = unpack_ok(tmp_path, raw, same_owner=False)
    assert (dest / "owned").stat().st_uid == os.geteuid()


def xattrs_supported(path: Path) -> bool:
    probe = path / ".probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError:
        return False
    finally:
        probe.unlink()
    return True


def test_xattrs_where_the_filesystem_allows(tmp_path: Path) -> None:
    raw = (
        TarBuilder()
        .add_file("f", b"", xattrs={"user.color": "blue", "user.bin": b"\x00\xff"})
        .add_dir("d", xattrs={"user.dir": "yes"})
        .bytes()
    )
    dest = unpack_ok(tmp_path, raw)
    if xattrs_supported(tmp_path):
        assert os.getxattr(dest / "f", "user.color") == b"blue"
        assert os.getxattr(dest / "f", "user.bin") == b"\x00\xff"
        assert os.getxattr(dest / "d", "user.dir") == b"yes"


def test_long_names_gnu_and_pax(tmp_path: Path) -> None:
    long_dir = "/".join(["d" * 60] * 5)
    long_target = "t" * 150
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
            info = tarfile.TarInfo(long_dir + "/file")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
            link = tarfile.TarInfo("short/link")
            link.type = tarfile.SYMTYPE
            link.linkname = long_target
            tar.addfile(link)
        dest = unpack_ok(tmp_path / str(fmt), buf.getvalue())
        assert (dest / long_dir / "file").read_bytes() == b"abc"
        assert os.readlink(dest / "short/link") == long_target


def test_whiteouts_are_kept_as_they_are_in_the_layer(tmp_path: Path) -> None:
    raw = TarBuilder().add_whiteout("etc/motd").add_opaque("var/cache").bytes()
    dest = unpack_ok(tmp_path, raw)
    assert (dest / "etc/.wh.motd").is_file()
    assert (dest / "var/cache/.wh..wh..opq").is_file()


def test_fifo_and_char_device(tmp_path: Path) -> None:
    raw = bytearray()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        fifo = tarfile.TarInfo("pipe")
        fifo.type = tarfile.FIFOTYPE
        fifo.mode = 0o640
        tar.addfile(fifo)
    raw = bytearray(buf.getvalue())
    dest = unpack_ok(tmp_path / "fifo", bytes(raw))
    assert stat.S_ISFIFO((dest / "pipe").lstat().st_mode)
    assert stat.S_IMODE((dest / "pipe").lstat().st_mode) == 0o640
    dev = TarBuilder().add_char_device("dev/null", 1, 3).bytes()
    dest = unpack_ok(tmp_path / "dev", dev, devices="create")
    st = (dest / "dev/null").lstat()
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)


def test_later_members_replace_earlier_ones(tmp_path: Path) -> None:
    raw = (
        TarBuilder()
        .add_file("x", b"first")
        .add_file("x", b"second")
        .add_dir("d")
        .add_file("d/child", b"c")
        .add_file("d", b"now a file")
        .add_symlink("s", "x")
        .add_dir("s")
        .bytes()
    )
    dest = unpack_ok(tmp_path, raw)
    assert (dest / "x").read_bytes() == b"second"
    assert (dest / "d").read_bytes() == b"now a file"
    assert (dest / "s").is_dir() and not (dest / "s").is_symlink()


def test_the_root_entry_is_accepted(tmp_path: Path) -> None:
    raw = TarBuilder().add_dir("./", mode=0o700).add_file("./a", b"1").bytes()
    dest = unpack_ok(tmp_path, raw)
    assert (dest / "a").read_bytes() == b"1"


@pytest.mark.parametrize("fmt", ["gnu", "pax-0.1", "pax-1.0"])
def test_sparse_files(tmp_path: Path, fmt: str) -> None:
    tar = require_tool("tar")
    src = tmp_path / "src"
    src.mkdir()
    sparse = src / "sparse.img"
    with open(sparse, "wb") as f:
        f.seek(4 << 20)
        f.write(b"middle")
        f.seek(12 << 20)
        f.write(b"end")
    archive = tmp_path / "sparse.tar"
    args = [tar, "--sparse", "-C", str(src), "-cf", str(archive)]
    if fmt == "gnu":
        args.insert(1, "--format=gnu")
    else:
        args[1:1] = ["--format=pax", f"--sparse-version={fmt.split('-')[1]}"]
    subprocess.run([*args, "sparse.img"], check=True)
    raw = archive.read_bytes()
    assert len(raw) < 1 << 20  # the holes are not in the archive
    dest = unpack_ok(tmp_path / "out", raw)
    out = dest / "sparse.img"
    assert out.stat().st_size == sparse.stat().st_size
    assert out.read_bytes() == sparse.read_bytes()
    assert out.stat().st_blocks * 512 < 1 << 20  # written sparse, not 12 MiB of zeros


def test_owner_is_exact_under_a_set_group_id_directory(tmp_path: Path) -> None:
    # A file in a setgid directory inherits the directory's group unless chowned:
    # towline skips chowns only while no such directory exists in the layer.
    raw = (
        TarBuilder()
        .add_file("early", b"e", uid=0, gid=0)
        .add_dir("shared", mode=0o2775, uid=0, gid=50)
        .add_file("shared/mine", b"x", uid=0, gid=0)
        .add_dir("plain", uid=0, gid=0)
        .add_file("plain/also", b"y", uid=0, gid=0)
        .bytes()
    )
    dest = unpack_ok(tmp_path, raw)
    assert stat.S_IMODE((dest / "shared").stat().st_mode) == 0o2775
    if os.geteuid() == 0:
        assert (dest / "shared").stat().st_gid == 50
        assert (dest / "shared/mine").stat().st_gid == 0
        assert (dest / "early").stat().st_gid == 0
        assert (dest / "plain/also").stat().st_gid == 0
