"""apply_layers: merging unpacked layers into one root filesystem, whiteouts honoured."""

from __future__ import annotations

import os
from pathlib import Path

from support.images import STANDARD_ROOTFS, TarBuilder, standard_layers
from towline import _native

from .layers import compress, run_layer, tree


def unpack_layers(tmp_path: Path, raws: list[bytes]) -> list[Path]:
    dirs = []
    for i, raw in enumerate(raws):
        run = run_layer(tmp_path / f"layer{i}", compress(raw, "gzip"), uncompressed=raw)
        assert run.error is None, run.error
        dirs.append(run.dest)
    return dirs


def test_standard_layers_merge_to_the_expected_tree(tmp_path: Path) -> None:
    layers = unpack_layers(tmp_path, standard_layers())
    stats = _native.apply_layers(layers, tmp_path / "rootfs")
    got = tree(tmp_path / "rootfs")
    assert {k: (v[0], v[2]) for k, v in got.items()} == {
        k: (v[0], v[2]) for k, v in STANDARD_ROOTFS.items()
    }
    for path, (kind, mode, _) in STANDARD_ROOTFS.items():
        if kind != "symlink":
            assert got[path][1] == mode, path
    assert stats["whiteouts"] == 3
    hard = tmp_path / "rootfs/usr/lib/libdemo-hard.so.1"
    assert hard.stat().st_ino == (tmp_path / "rootfs/usr/lib/libdemo.so.1").stat().st_ino


def test_upper_directory_replaces_lower_symlink_without_following_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    lower = TarBuilder().add_symlink("etc", str(outside)).bytes()
    upper = TarBuilder().add_dir("etc").add_file("etc/passwd", b"root:x:0:0\n").bytes()
    layers = unpack_layers(tmp_path, [lower, upper])
    _native.apply_layers(layers, tmp_path / "rootfs")
    assert not (tmp_path / "rootfs/etc").is_symlink()
    assert (tmp_path / "rootfs/etc/passwd").read_bytes() == b"root:x:0:0\n"
    assert list(outside.iterdir()) == []


def test_file_replaces_directory_and_back(tmp_path: Path) -> None:
    one = TarBuilder().add_dir("a").add_file("a/inner", b"1").add_file("b", b"file").bytes()
    two = TarBuilder().add_file("a", b"now a file").add_dir("b", mode=0o700).bytes()
    layers = unpack_layers(tmp_path, [one, two])
    _native.apply_layers(layers, tmp_path / "rootfs")
    assert (tmp_path / "rootfs/a").read_bytes() == b"now a file"
    assert (tmp_path / "rootfs/b").is_dir()
    assert oct((tmp_path / "rootfs/b").stat().st_mode & 0o777) == oct(0o700)


def test_whiteout_of_a_directory_and_opaque_keeps_own_entries(tmp_path: Path) -> None:
    one = (
        TarBuilder()
        .add_dir("gone")
        .add_file("gone/x", b"x")
        .add_dir("opq")
        .add_file("opq/old", b"o")
        .bytes()
    )
    two = (
        TarBuilder()
        .add_whiteout("gone")
        .add_dir("opq")
        .add_opaque("opq")
        .add_file("opq/new", b"n")
        .bytes()
    )
    layers = unpack_layers(tmp_path, [one, two])
    _native.apply_layers(layers, tmp_path / "rootfs")
    assert not (tmp_path / "rootfs/gone").exists()
    assert sorted(os.listdir(tmp_path / "rootfs/opq")) == ["new"]


def test_a_whiteout_cannot_reach_outside_dest(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    lower = TarBuilder().add_symlink("link", str(tmp_path)).bytes()
    upper = TarBuilder().add_dir("link").add_whiteout("link/victim").bytes()
    layers = unpack_layers(tmp_path, [lower, upper])
    _native.apply_layers(layers, tmp_path / "rootfs")
    assert victim.read_text() == "keep"
