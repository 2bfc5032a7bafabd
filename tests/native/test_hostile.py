"""Hostile layers: nothing is ever written outside the target, refusals leave nothing behind.

The rule is containerd's: names are confined to the layer root (absolute
names and ".." stop at the root, a symlink to "/" means the layer's root);
what cannot be confined (hardlinks to missing targets, loops) is refused.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
import zstandard

from support.images import TarBuilder
from towline import InvalidLayerError

from .layers import Run, compress, run_layer


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the store that no layer may touch."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret").write_text("do not touch")
    return path


def unpack(tmp_path: Path, raw: bytes, compression: str = "gzip", **options: object) -> Run:
    return run_layer(tmp_path / "store", compress(raw, compression), uncompressed=raw, **options)


def assert_outside_untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "do not touch"
    assert (outside / "secret").stat().st_nlink == 1


def assert_refused(run: Run, slug: str, text: str) -> None:
    assert isinstance(run.error, InvalidLayerError), run.error
    assert run.error.slug == slug
    assert text in str(run.error)
    assert not run.dest.exists() and not run.blob.exists()
    assert run.leftovers() == []


def test_dotdot_names_are_confined_to_the_root(tmp_path: Path, outside: Path) -> None:
    raw = TarBuilder().add_file("../../outside/pwned", b"x").add_file("a/../../b", b"y").bytes()
    run = unpack(tmp_path, raw)
    assert run.error is None, run.error
    assert (run.dest / "outside/pwned").read_bytes() == b"x"
    assert (run.dest / "b").read_bytes() == b"y"
    assert_outside_untouched(outside)


def test_absolute_names_are_confined_to_the_root(tmp_path: Path, outside: Path) -> None:
    raw = TarBuilder().add_file(str(outside / "pwned"), b"x").bytes()
    run = unpack(tmp_path, raw)
    assert run.error is None, run.error
    assert (run.dest / str(outside).lstrip("/") / "pwned").read_bytes() == b"x"
    assert_outside_untouched(outside)


@pytest.mark.parametrize("target", ["/", "../../../../../../..", "/../.."])
def test_write_through_a_symlink_to_root_lands_in_the_layer(
    tmp_path: Path, outside: Path, target: str
) -> None:
    raw = (
        TarBuilder()
        .add_symlink("escape", target)
        .add_file("escape" + str(outside) + "/pwned", b"x")
        .bytes()
    )
    run = unpack(tmp_path, raw)
    assert run.error is None, run.error
    assert os.readlink(run.dest / "escape") == target
    assert (run.dest / str(outside).lstrip("/") / "pwned").read_bytes() == b"x"
    assert_outside_untouched(outside)


def test_write_through_an_absolute_symlink_to_the_host_dir(tmp_path: Path, outside: Path) -> None:
    raw = TarBuilder().add_symlink("o", str(outside)).add_file("o/secret", b"overwritten").bytes()
    run = unpack(tmp_path, raw)
    assert run.error is None, run.error
    assert (run.dest / str(outside).lstrip("/") / "secret").read_bytes() == b"overwritten"
    assert_outside_untouched(outside)


def test_a_symlink_member_replaced_by_a_directory_is_not_followed(
    tmp_path: Path, outside: Path
) -> None:
    raw = (
        TarBuilder()
        .add_symlink("etc", str(outside))
        .add_dir("etc")
        .add_file("etc/secret", b"mine")
        .bytes()
    )
    run = unpack(tmp_path, raw)
    assert run.error is None, run.error
    assert (run.dest / "etc").is_dir() and not (run.dest / "etc").is_symlink()
    assert (run.dest / "etc/secret").read_bytes() == b"mine"
    assert_outside_untouched(outside)


def test_a_file_member_over_a_symlink_replaces_the_link(tmp_path: Path, outside: Path) -> None:
    raw = TarBuilder().add_symlink("s", str(outside / "secret")).add_file("s", b"mine").bytes()
    run = unpack(tmp_path, raw)
    assert run.error is None, run.error
    assert not (run.dest / "s").is_symlink()
    assert_outside_untouched(outside)


@pytest.mark.parametrize("link", ["../../outside/secret", "/outside/secret", "nowhere"])
def test_hardlink_to_a_path_outside_is_refused(tmp_path: Path, outside: Path, link: str) -> None:
    raw = TarBuilder().add_hardlink("h", link).bytes()
    run = unpack(tmp_path, raw)
    assert_refused(run, "unsafe_path", "is not in the layer")
    assert_outside_untouched(outside)


def test_hardlink_through_a_symlink_stays_inside(tmp_path: Path, outside: Path) -> None:
    raw = TarBuilder().add_symlink("o", str(outside)).add_hardlink("h", "o/secret").bytes()
    run = unpack(tmp_path, raw)
    assert_refused(run, "unsafe_path", "is not in the layer")
    assert_outside_untouched(outside)


def test_symlink_loop_is_refused(tmp_path: Path, outside: Path) -> None:
    raw = TarBuilder().add_symlink("a", "b").add_symlink("b", "a").add_file("a/x", b"x").bytes()
    assert_refused(unpack(tmp_path, raw), "unsafe_path", "symlink loop")


def test_device_nodes_refused_when_not_permitted(tmp_path: Path, outside: Path) -> None:
    raw = TarBuilder().add_char_device("dev/null", 1, 3).bytes()
    assert_refused(unpack(tmp_path, raw, devices="refuse"), "unsafe_path", "device nodes")


def test_device_nodes_skipped_as_rootless_podman_does(tmp_path: Path) -> None:
    raw = TarBuilder().add_char_device("dev/null", 1, 3).add_file("ok", b"1").bytes()
    run = unpack(tmp_path, raw, devices="skip")
    assert run.result is not None and run.result["skipped_devices"] == 1
    assert not (run.dest / "dev/null").exists() and (run.dest / "ok").exists()


@pytest.mark.parametrize(
    ("claimed", "message"),
    [(1100, "header checksum mismatch"), (10**6, "truncated archive")],
    ids=["next-header-lands-in-data", "beyond-the-stream"],
)
def test_header_size_that_disagrees_with_the_data(
    tmp_path: Path, claimed: int, message: str
) -> None:
    raw = bytearray(TarBuilder().add_file("a", b"A" * 1000).add_file("b", b"B" * 10).bytes())
    # The ustar header of "a", claiming another size than the 1000 bytes that follow.
    offset = next(
        i
        for i in range(0, len(raw), 512)
        if raw[i : i + 2] == b"a\0" and raw[i + 257 : i + 262] == b"ustar"
    )
    raw[offset + 124 : offset + 136] = b"%011o\0" % claimed
    raw[offset + 148 : offset + 156] = b" " * 8
    raw[offset + 148 : offset + 156] = b"%06o\0 " % sum(raw[offset : offset + 512])
    run = unpack(tmp_path, bytes(raw))
    assert_refused(run, "bad_tar", message)


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_truncated_streams_are_refused(tmp_path: Path, compression: str) -> None:
    raw = TarBuilder().add_file("big", os.urandom(20000)).bytes()
    # Cut inside the file's data (the tail of an uncompressed tar is only padding).
    blob = raw[:12000] if compression == "none" else compress(raw, compression)[:-3000]
    run = run_layer(tmp_path / "store", blob)
    assert isinstance(run.error, InvalidLayerError), run.error
    assert run.error.slug in {"bad_tar", "corrupt_stream"}
    assert "truncated" in str(run.error) or "corrupt" in str(run.error)
    assert run.leftovers() == [] and not run.dest.exists()


def test_garbage_after_the_end_of_the_archive(tmp_path: Path) -> None:
    raw = TarBuilder().add_file("a", b"x").bytes() + b"surprise"
    assert_refused(unpack(tmp_path, raw), "bad_tar", "after the end of the archive")


def test_zero_padding_after_the_end_is_fine(tmp_path: Path) -> None:
    raw = TarBuilder().add_file("a", b"x").bytes() + b"\0" * 10240
    assert unpack(tmp_path, raw).error is None


def test_decompression_bomb_is_stopped(tmp_path: Path) -> None:
    zeros = b"\0" * (200 << 20)
    blob = zstandard.ZstdCompressor(level=19).compress(zeros)
    assert len(blob) < 100_000
    run = run_layer(tmp_path / "store", blob, max_ratio=100.0)
    assert_refused(run, "decompression_bomb", "limit 100x")


def test_decompression_ratio_check_can_be_disabled(tmp_path: Path) -> None:
    blob = zstandard.ZstdCompressor(level=19).compress(b"\0" * (80 << 20))
    assert run_layer(tmp_path / "store", blob, max_ratio=0.0).error is None


def test_entry_count_limit(tmp_path: Path) -> None:
    builder = TarBuilder()
    for i in range(20):
        builder.add_file(f"f{i}", b"")
    assert_refused(unpack(tmp_path, builder.bytes(), max_entries=10), "limit_exceeded", "entries")


def test_huge_pax_header_is_refused_before_it_fills_memory(tmp_path: Path) -> None:
    info = tarfile.TarInfo("x")
    info.pax_headers = {"comment": "A" * (2 << 20)}
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b""))
    assert_refused(unpack(tmp_path, buf.getvalue()), "limit_exceeded", "PAX header")


def test_unsupported_member_type(tmp_path: Path) -> None:
    raw = bytearray(TarBuilder().add_file("a", b"").bytes())
    raw[156:157] = b"M"
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\0 " % sum(raw[0:512])
    assert_refused(unpack(tmp_path, bytes(raw)), "bad_tar", "unsupported entry type 'M'")
