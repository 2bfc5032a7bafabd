"""The attacks of the hostile-layers audit (issue 7), one test (or more) per finding.

Each test builds the input the finding describes and checks it is stopped: nothing
outside the target changes, time and memory stay bounded, and the error is an
``InvalidLayerError`` with a precise slug. Attacks that would hang or exhaust memory on
a vulnerable build run in a child process with a time and memory cap, so a regression
fails the test instead of taking the machine down.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.images import TarBuilder
from towline import InvalidLayerError, StoreError, _native

from .layers import compress, run_layer

# Bounds for the attacks run in a child: a fixed build does each in well under a
# second and a few tens of MB; the vulnerable ones took minutes or gigabytes.
CHILD_TIMEOUT = 60
CHILD_MEMORY = 1 << 30


def unpack(tmp_path: Path, raw: bytes, **options: object):  # type: ignore[no-untyped-def]
    return run_layer(tmp_path / "store", compress(raw, "gzip"), uncompressed=raw, **options)


def assert_refused(run, slug: str, text: str) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(run.error, InvalidLayerError), run.error
    assert run.error.slug == slug, run.error
    assert text in str(run.error), run.error
    assert not run.dest.exists() and run.leftovers() == []


def snapshot(root: Path) -> dict[str, tuple[int, int, int, bytes | str | None]]:
    """Every entry below ``root`` with its mode, size, mtime and content or link target."""
    out: dict[str, tuple[int, int, int, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = Path(dirpath, name)
            st = path.lstat()
            if path.is_symlink():
                body: bytes | str | None = os.readlink(path)
            elif path.is_file():
                body = path.read_bytes()
            else:
                body = None
            out[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, body)
    return out


def run_bounded(script: str) -> subprocess.CompletedProcess[str]:
    """Runs ``script`` in a child Python capped in time and address space."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY * 4, CHILD_MEMORY * 4))

    # The child imports this package's sink helper (layers.py) as a top-level module, and
    # measures user CPU time (all threads): the engine's own work, not the kernel's
    # filesystem work nor wall time, so a busy machine or disk does not fail the test.
    prelude = textwrap.dedent(
        f"""
        import resource, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        def cpu_seconds():
            return resource.getrusage(resource.RUSAGE_SELF).ru_utime
        def peak_rss_mb():
            # VmHWM belongs to this process's own memory map; ru_maxrss would start at
            # the parent's peak (Linux carries it across fork and exec).
            status = open("/proc/self/status").read()
            return int(status.split("VmHWM:")[1].split()[0]) // 1024
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        preexec_fn=cap,
        check=False,
    )


def make_layer_dir(root: Path, entries: dict[str, str | bytes | int]) -> Path:
    """A layer directory as stored on disk, built by hand (what an older towline, or a
    damaged store, may hold): ``bytes`` → file, ``int`` → directory with that mode,
    ``str`` → symlink to it."""
    root.mkdir(parents=True)
    for rel, what in entries.items():
        path = root / rel
        if isinstance(what, bytes):
            path.write_bytes(what)
        elif isinstance(what, int):
            path.mkdir()
            path.chmod(what)
        else:
            path.symlink_to(what)
    return root


# === 1. whiteouts of nothing, "." or ".." (deleted the parent of the destination)


@pytest.mark.parametrize("name", [".wh.", ".wh..", ".wh...", "a/.wh...", "a/.wh.", "a/.wh../b"])
def test_whiteout_of_nothing_dot_or_dotdot_is_refused_at_untar(tmp_path: Path, name: str) -> None:
    raw = TarBuilder().add_dir("a").add_file(name, b"").bytes()
    assert_refused(unpack(tmp_path, raw), "unsafe_path", "invalid whiteout name")


def test_a_whiteout_of_dotdot_reached_through_a_symlink_target_is_refused(tmp_path: Path) -> None:
    # The fuzz target found this way around the name check: the directory ".wh..." is
    # made as the implied parent named by a symlink's target.
    raw = TarBuilder().add_symlink("c", ".wh...").add_file("c/x", b"").bytes()
    assert_refused(unpack(tmp_path, raw), "unsafe_path", "invalid whiteout name")


@pytest.mark.parametrize("name", [".wh.", ".wh..", ".wh..."])
def test_whiteout_of_dotdot_in_a_stored_layer_is_refused_at_apply(
    tmp_path: Path, name: str
) -> None:
    # A root member ".wh..." used to empty the parent of the destination.
    work = tmp_path / "work"
    work.mkdir()
    (work / "precious").write_text("keep me")
    layer = make_layer_dir(tmp_path / "layer", {name: b""})
    before = snapshot(work)
    with pytest.raises(InvalidLayerError, match="invalid whiteout name") as caught:
        _native.apply_layers([layer], work / "rootfs")
    assert caught.value.slug == "unsafe_path"
    after = snapshot(work)
    after.pop("rootfs")
    before.pop(".")
    after.pop(".")
    assert after == before


# === 2. the deferred chmod went through a symlink a later layer put at a stale path


def test_directory_metadata_is_never_set_through_a_later_symlink(tmp_path: Path) -> None:
    # L1 = [dir a 06777, dir b, b/.wh...], L2 = [symlink a -> host file, dir b]: the host
    # file became 06777 and both commands exited 0.
    host = tmp_path / "host-file"
    host.write_text("secret")
    host.chmod(0o600)
    lower = make_layer_dir(tmp_path / "l1", {"a": 0o6777, "b": 0o755, "b/.wh..": b""})
    upper = make_layer_dir(tmp_path / "l2", {"a": str(host), "b": 0o755})
    with pytest.raises(InvalidLayerError, match="invalid whiteout name"):
        _native.apply_layers([lower, upper], tmp_path / "rootfs")
    assert host.stat().st_mode & 0o7777 == 0o600
    assert host.read_text() == "secret"


def test_upper_symlink_over_a_lower_directory_keeps_the_host_safe(tmp_path: Path) -> None:
    # The same shape with valid names: the lower directory "a" (06777) is replaced by a
    # symlink to a host file; nothing may chmod or touch the host file through it.
    host = tmp_path / "host-file"
    host.write_text("secret")
    host.chmod(0o600)
    stamp = host.stat().st_mtime_ns
    lower = TarBuilder().add_dir("a", mode=0o6777).add_dir("b").add_file("b/f", b"1").bytes()
    upper = TarBuilder().add_symlink("a", str(host)).add_whiteout("b/f").add_dir("b").bytes()
    layers = []
    for i, raw in enumerate([lower, upper]):
        run = run_layer(tmp_path / f"s{i}", compress(raw, "gzip"), uncompressed=raw)
        assert run.error is None, run.error
        layers.append(run.dest)
    _native.apply_layers(layers, tmp_path / "rootfs")
    assert os.readlink(tmp_path / "rootfs/a") == str(host)
    assert host.stat().st_mode & 0o7777 == 0o600
    assert host.stat().st_mtime_ns == stamp


# === 4. towline's bookkeeping file came from the layer (symlink to /dev/zero, FIFO)


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_the_bookkeeping_name_is_reserved(tmp_path: Path, kind: str) -> None:
    builder = TarBuilder().add_dir("a")
    if kind == "file":
        builder.add_file(".wh..wh..towline-implied", b"\x01\x00\x01\x01a")
    else:
        builder.add_symlink(".wh..wh..towline-implied", "/dev/zero")
    assert_refused(unpack(tmp_path, builder.bytes()), "unsafe_path", "reserved")


def test_the_bookkeeping_name_is_reserved_through_a_symlink_to_the_root(tmp_path: Path) -> None:
    raw = TarBuilder().add_symlink("l", ".").add_file("l/.wh..wh..towline-implied", b"").bytes()
    assert_refused(unpack(tmp_path, raw), "unsafe_path", "reserved")


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_hostile_bookkeeping_file_in_a_stored_layer_is_not_read(
    tmp_path: Path, kind: str
) -> None:
    # The old name, as a layer could ship it to an older towline, is now just a skipped
    # `.wh..wh.` entry; the new name in a stored layer is opened as hostile. Each in a
    # child: a vulnerable build reads /dev/zero until memory runs out, or blocks forever.
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "a").mkdir()
    for name in (".wh..wh..towline-implied-dirs", ".wh..wh..towline-implied"):
        if kind == "symlink":
            (layer / name).symlink_to("/dev/zero")
        else:
            os.mkfifo(layer / name)
        result = run_bounded(
            f"""
            from towline import _native, TowlineError
            try:
                _native.apply_layers([{str(layer)!r}], {str(tmp_path / "rootfs")!r})
                print("applied")
            except TowlineError as exc:
                print("refused", exc.slug, exc)
            """
        )
        assert result.returncode == 0, result.stderr
        if name.endswith("-dirs"):
            assert result.stdout.startswith("applied"), result.stdout
        else:
            assert result.stdout.startswith("refused io"), result.stdout
            assert "not a regular file" in result.stdout or "cannot open" in result.stdout
        (layer / name).unlink()


# === 5. sparse members: a few bytes asked for a terabyte on disk


def sparse_tar(name: str, real_size: int, data: bytes = b"x") -> bytes:
    """One PAX (GNU 0.1) sparse member: ``data`` at offset 0, holes up to ``real_size``."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.pax_headers = {
        "GNU.sparse.size": str(real_size),
        "GNU.sparse.map": f"0,{len(data)}",
        "GNU.sparse.name": name,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_sparse_terabyte_from_a_tiny_blob_is_a_decompression_bomb(tmp_path: Path) -> None:
    raw = sparse_tar("big", 1 << 40)
    blob = compress(raw, "gzip")
    assert len(blob) < 300
    run = run_layer(tmp_path / "store", blob, uncompressed=raw)
    assert_refused(run, "decompression_bomb", "limit 1000x")


def test_sparse_files_keep_their_holes_when_merged(tmp_path: Path) -> None:
    # With the ratio check off, the layer holds a 1 GiB sparse file; merging it used to
    # write every zero. Now only the data is copied.
    raw = sparse_tar("big", 1 << 30, b"data")
    run = run_layer(tmp_path / "store", compress(raw, "gzip"), uncompressed=raw, max_ratio=0.0)
    assert run.error is None, run.error
    assert (run.dest / "big").stat().st_blocks * 512 < 1 << 20
    _native.apply_layers([run.dest], tmp_path / "rootfs")
    merged = tmp_path / "rootfs/big"
    assert merged.stat().st_size == 1 << 30
    assert merged.stat().st_blocks * 512 < 1 << 20, "the holes were written out"
    with merged.open("rb") as f:
        assert f.read(4) == b"data"
        f.seek((1 << 30) - 4)
        assert f.read() == b"\0" * 4


def test_a_sparse_size_beyond_2_63_is_a_bad_tar(tmp_path: Path) -> None:
    raw = sparse_tar("big", 2**63 + 5)
    assert_refused(unpack(tmp_path, raw, max_ratio=0.0), "bad_tar", "more than any file can have")


# === 6, 7, 8. work and memory linear in the input


@dataclass
class ChildRun:
    """What a layer cost in a child process: user CPU seconds (all threads), peak RSS
    growth in MB, and the slug of the error it was refused with, if any."""

    cpu: float
    rss_mb: int
    slug: str | None


def sink_in_child(tmp_path: Path, raw: bytes, compression: str, **options: object) -> ChildRun:
    """Streams ``raw`` (compressed) through a LayerSink in a capped child process."""
    blob = tmp_path / "blob"
    blob.write_bytes(compress(raw, compression))
    result = run_bounded(
        f"""
        import json, pathlib
        from layers import run_layer
        raw = open({str(blob)!r}, "rb").read()
        rss = peak_rss_mb()
        start = cpu_seconds()
        run = run_layer(pathlib.Path({str(tmp_path / "store")!r}), raw, **{options!r})
        print(json.dumps({{
            "cpu": cpu_seconds() - start,
            "rss_mb": peak_rss_mb() - rss,
            "slug": getattr(run.error, "slug", None),
        }}))
        """
    )
    assert result.returncode == 0, result.stderr
    return ChildRun(**json.loads(result.stdout))


def test_deep_symlink_chains_cost_bounded_work(tmp_path: Path) -> None:
    # 40 symlinks, each a ~3 KB path through a 1,000-deep directory: every member below
    # the last one walked the whole chain again, about 100 ms of CPU each.
    deep = "/".join(["d"] * 1000)
    builder = TarBuilder().add_dir(deep).add_symlink("l0", deep)
    for i in range(1, 40):
        builder.add_symlink(f"l{i}", f"l{i - 1}/" + "../" * 999)
    for i in range(100):
        builder.add_file(f"l39/f{i}", b"")
    run = sink_in_child(tmp_path, builder.bytes(), "gzip", durable=False)
    # 6 s of CPU on the vulnerable build; now refused after a bounded walk.
    assert run.cpu < 2, run
    assert run.slug == "unsafe_path", run


def test_replacing_a_directory_by_a_file_many_times_is_linear(tmp_path: Path) -> None:
    # Every replacement scanned every directory known so far: 9 s of CPU on the
    # vulnerable build, under 1 s (debug build) now.
    builder = TarBuilder()
    for i in range(20_000):
        builder.add_dir(f"keep{i}")
    for _ in range(5_000):
        builder.add_dir("x").add_file("x", b"")
    run = sink_in_child(tmp_path, builder.bytes(), "gzip", durable=False)
    assert run.slug is None and run.cpu < 4, run


def test_memory_per_directory_is_one_copy_of_its_name(tmp_path: Path) -> None:
    # 20,000 directories under a 3.8 KB path: each full path was held more than once
    # (43 MB here, 2.2 GB for 200,000); now each name is held once (no growth seen).
    prefix = "/".join(["p" * 250] * 15)
    builder = TarBuilder().add_dir(prefix)
    for i in range(20_000):
        builder.add_dir(f"{prefix}/{i}")
    run = sink_in_child(tmp_path, builder.bytes(), "zstd", durable=False, max_ratio=0.0)
    assert run.slug is None and run.rss_mb < 20, run


# === 11. layer faults reported as store I/O errors


def pax_member(path: str, pax: dict[str, str], kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(path)
    info.type = kind
    info.pax_headers = pax
    if kind == tarfile.SYMTYPE:
        info.linkname = pax.get("linkpath", "x")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def test_a_nul_in_a_pax_path_is_a_bad_tar(tmp_path: Path) -> None:
    raw = pax_member("a", {"path": "a\0b"})
    assert_refused(unpack(tmp_path, raw), "bad_tar", "NUL byte")


def test_a_symlink_target_longer_than_path_max_is_refused(tmp_path: Path) -> None:
    raw = TarBuilder().add_symlink("s", "t" * 5000).bytes()
    assert_refused(unpack(tmp_path, raw), "unsafe_path", "link target of 5000 bytes")


def test_thousands_of_xattrs_are_a_limit_not_a_store_error(tmp_path: Path) -> None:
    xattrs = {f"user.attr{i:05}": "v" * 8 for i in range(5000)}
    raw = TarBuilder().add_file("f", b"x", xattrs=xattrs).bytes()
    assert_refused(unpack(tmp_path, raw), "limit_exceeded", "extended attributes")


def test_xattrs_that_do_not_fit_the_filesystem_are_a_limit(tmp_path: Path) -> None:
    # Under the 64 KiB cap, but more than one ext4/overlay inode holds: ENOSPC from
    # setxattr with a disk that is not full is the layer's fault, not the store's.
    xattrs = {f"user.a{i:04}": "v" * 40 for i in range(1000)}
    raw = TarBuilder().add_file("f", b"x", xattrs=xattrs).bytes()
    run = unpack(tmp_path, raw)
    if run.error is None:
        # A filesystem with room for all of them (tmpfs, XFS): nothing to refuse.
        assert len(os.listxattr(run.dest / "f")) == 1000
        return
    assert not isinstance(run.error, StoreError), run.error
    assert isinstance(run.error, InvalidLayerError)
    assert run.error.slug == "limit_exceeded" and "do not fit" in str(run.error)


# === 12. a hardlink to itself was dropped silently


def test_a_hardlink_to_itself_is_refused(tmp_path: Path) -> None:
    raw = TarBuilder().add_file("f", b"x").add_hardlink("f", "f").bytes()
    assert_refused(unpack(tmp_path, raw), "unsafe_path", "hardlink to itself")
