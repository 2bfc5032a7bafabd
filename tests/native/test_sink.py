"""LayerSink and BlobSink: formats, digests, verification, resume, cleanup."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import zstandard

from support.images import TarBuilder
from towline import DigestMismatchError, InvalidLayerError, TowlineError, _native

from .layers import compress, digest_of, run_layer


def sample_tar() -> bytes:
    return (
        TarBuilder()
        .add_dir("etc", mode=0o755)
        .add_file("etc/hostname", b"towline\n")
        .add_file("bin/tool", b"\x7fELF" + os.urandom(3000), mode=0o755)
        .add_symlink("usr/bin", "/bin")
        .bytes()
    )


@pytest.mark.parametrize("compression", ["gzip", "zstd", "bzip2", "xz", "none"])
@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "inline"])
def test_every_format_unpacks_and_verifies(
    tmp_path: Path, compression: str, pipelined: bool
) -> None:
    raw = sample_tar()
    blob = compress(raw, compression)
    run = run_layer(tmp_path, blob, uncompressed=raw, chunk=777, pipelined=pipelined)
    assert run.error is None, run.error
    assert run.result is not None
    assert run.result["digest"] == digest_of(blob)
    assert run.result["diff_id"] == digest_of(raw)
    assert run.result["size"] == len(blob)
    assert run.result["uncompressed_size"] == len(raw)
    assert run.result["compression"] == compression
    assert run.result["entries"] == 4
    assert run.blob.read_bytes() == blob
    assert (run.dest / "etc/hostname").read_bytes() == b"towline\n"
    assert os.readlink(run.dest / "usr/bin") == "/bin"
    assert run.leftovers() == []


def test_multi_member_gzip_is_one_stream(tmp_path: Path) -> None:
    raw = sample_tar()
    blob = gzip.compress(raw[:1000], mtime=0) + gzip.compress(raw[1000:], mtime=0)
    run = run_layer(tmp_path, blob, uncompressed=raw)
    assert run.error is None, run.error
    assert (run.dest / "etc/hostname").exists()


def test_zstd_multi_frame_and_skippable_frames(tmp_path: Path) -> None:
    raw = sample_tar()
    cctx = zstandard.ZstdCompressor()
    skippable = (0x184D2A50).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"hello"
    blob = skippable + cctx.compress(raw[:2048]) + skippable + cctx.compress(raw[2048:])
    run = run_layer(tmp_path, blob, uncompressed=raw, chunk=3)
    assert run.error is None, run.error
    assert run.result is not None and run.result["compression"] == "zstd"


@pytest.mark.parametrize("algorithm", ["sha256", "sha512", "blake3"])
def test_digest_algorithms(tmp_path: Path, algorithm: str) -> None:
    raw = sample_tar()
    blob = compress(raw, "gzip")
    run = run_layer(tmp_path, blob, uncompressed=raw, algorithm=algorithm)
    assert run.error is None, run.error
    assert run.result is not None and run.result["digest"] == digest_of(blob, algorithm)


def test_unknown_algorithm_is_named(tmp_path: Path) -> None:
    with pytest.raises(TowlineError, match=r"unsupported digest algorithm \"md5\".*sha256"):
        _native.LayerSink(tmp_path / "b", None, "md5:" + "0" * 32, 1)


@pytest.mark.parametrize(
    ("blob", "found"),
    [
        (b"\x04\x22\x4d\x18" + b"\0" * 600, "lz4"),
        (bytes(range(256)) * 4, "unrecognized data (first bytes 00 01 02"),
        (b"PK\x03\x04" + b"\0" * 600, "zip"),
        (b"tiny", "too short for a tar header"),
    ],
)
def test_unsupported_formats_name_what_was_found(tmp_path: Path, blob: bytes, found: str) -> None:
    run = run_layer(tmp_path, blob)
    assert isinstance(run.error, InvalidLayerError)
    assert run.error.slug == "unsupported_compression"
    assert found in str(run.error)
    assert not run.blob.exists() and not run.dest.exists()
    assert run.leftovers() == []


def test_digest_mismatch_leaves_nothing(tmp_path: Path) -> None:
    raw = sample_tar()
    blob = compress(raw, "gzip")
    wrong = digest_of(b"something else")
    run = run_layer(tmp_path, blob, expected_digest=wrong)
    assert isinstance(run.error, DigestMismatchError)
    assert run.error.slug == "digest_mismatch"
    assert run.error.expected == wrong
    assert run.error.actual == digest_of(blob)
    assert not run.blob.exists() and not run.dest.exists()
    assert run.leftovers() == []


def test_diff_id_mismatch_leaves_nothing(tmp_path: Path) -> None:
    raw = sample_tar()
    run = run_layer(tmp_path, compress(raw, "zstd"), uncompressed=raw + b"x")
    assert isinstance(run.error, DigestMismatchError)
    assert run.error.slug == "diff_id_mismatch"
    assert run.error.actual == digest_of(raw)
    assert run.leftovers() == [] and not run.dest.exists() and not run.blob.exists()


def test_size_mismatch_too_short_and_too_long(tmp_path: Path) -> None:
    blob = compress(sample_tar(), "gzip")
    short = run_layer(tmp_path / "a", blob, expected_size=len(blob) + 10)
    assert isinstance(short.error, DigestMismatchError) and short.error.slug == "size_mismatch"
    assert short.error.expected == str(len(blob) + 10)
    long = run_layer(tmp_path / "b", blob, expected_size=len(blob) - 10)
    assert isinstance(long.error, DigestMismatchError) and long.error.slug == "size_mismatch"
    for run in (short, long):
        assert run.leftovers() == [] and not run.blob.exists()


def test_a_corrupt_transfer_reports_the_digest_not_the_gzip_error(tmp_path: Path) -> None:
    raw = sample_tar()
    blob = bytearray(compress(raw, "gzip"))
    good = digest_of(bytes(blob))
    blob[len(blob) // 2] ^= 0xFF
    run = run_layer(tmp_path, bytes(blob), expected_digest=good)
    assert isinstance(run.error, DigestMismatchError)
    assert run.leftovers() == []


def test_bytes_written_lets_a_caller_resume(tmp_path: Path) -> None:
    raw = sample_tar()
    blob = compress(raw, "gzip")
    sink = _native.LayerSink(tmp_path / "blob", tmp_path / "layer", digest_of(blob), len(blob))
    sink.write(blob[:1000])
    assert sink.bytes_written == 1000
    # A broken connection: the caller asks for "Range: bytes=1000-" and continues.
    sink.write(blob[sink.bytes_written :])
    assert sink.bytes_written == len(blob)
    assert sink.finish()["digest"] == digest_of(blob)


def test_abort_and_context_manager_remove_everything(tmp_path: Path) -> None:
    blob = compress(sample_tar(), "gzip")
    with _native.LayerSink(tmp_path / "blob", tmp_path / "layer", digest_of(blob), len(blob)) as s:
        s.write(blob[:100])
    assert list(tmp_path.iterdir()) == []
    sink = _native.LayerSink(tmp_path / "blob", tmp_path / "layer", digest_of(blob), len(blob))
    sink.write(blob)
    sink.abort()
    sink.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="aborted"):
        sink.write(b"more")


def test_unpack_dir_that_already_exists_is_kept(tmp_path: Path) -> None:
    raw = sample_tar()
    blob = compress(raw, "gzip")
    first = run_layer(tmp_path, blob, uncompressed=raw)
    assert first.result is not None and first.result["unpack_existed"] is False
    second = run_layer(tmp_path, blob, uncompressed=raw)
    assert second.result is not None and second.result["unpack_existed"] is True
    assert second.leftovers() == []


def test_layer_without_unpack_still_checks_diff_id(tmp_path: Path) -> None:
    raw = sample_tar()
    run = run_layer(tmp_path, compress(raw, "xz"), uncompressed=raw, unpack=False)
    assert run.result is not None and run.result["diff_id"] == digest_of(raw)
    assert not run.dest.exists()


def test_blob_sink_verifies_and_stores(tmp_path: Path) -> None:
    data = b'{"architecture":"amd64"}'
    sink = _native.BlobSink(tmp_path / "cfg", digest_of(data), len(data))
    sink.write(data)
    assert sink.finish() == {
        "digest": digest_of(data),
        "size": len(data),
        "diff_id": None,
        "uncompressed_size": None,
        "compression": None,
        "entries": 0,
        "skipped_devices": 0,
        "skipped_xattrs": 0,
        "unpack_existed": False,
    }
    assert (tmp_path / "cfg").read_bytes() == data
    bad = _native.BlobSink(tmp_path / "cfg2", digest_of(b"x"))
    bad.write(data)
    with pytest.raises(DigestMismatchError):
        bad.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg"]


def test_hash_file(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    (tmp_path / "f").write_bytes(data)
    for algorithm in ("sha256", "sha512", "blake3"):
        assert _native.hash_file(tmp_path / "f", algorithm) == digest_of(data, algorithm)
