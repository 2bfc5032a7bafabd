"""Helpers for native sink tests: compress a tar, stream it through a sink, collect the result."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import zstandard

from towline import _native


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    if algorithm == "blake3":
        return "blake3:" + blake3.blake3(data).hexdigest()
    return f"{algorithm}:" + hashlib.new(algorithm, data).hexdigest()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    if compression == "bzip2":
        return bz2.compress(data)
    if compression == "xz":
        return lzma.compress(data)
    assert compression == "none"
    return data


@dataclass
class Run:
    """What one sink run produced, and where."""

    result: dict[str, Any] | None
    error: Exception | None
    blob: Path
    dest: Path
    workdir: Path

    def leftovers(self) -> list[str]:
        """Everything in the sink's directory other than its two final paths."""
        return sorted(p.name for p in self.workdir.iterdir() if p not in (self.blob, self.dest))


def run_layer(
    workdir: Path,
    blob: bytes,
    *,
    uncompressed: bytes | None = None,
    algorithm: str = "sha256",
    chunk: int = 64 * 1024,
    expected_digest: str | None = None,
    expected_size: int | None = -1,
    unpack: bool = True,
    **options: Any,
) -> Run:
    """Streams ``blob`` through a LayerSink in ``chunk``-sized writes.

    The expected diff_id is the sha256 of ``uncompressed`` when given.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    blob_path = workdir / "blob"
    dest = workdir / "layer"
    sink = _native.LayerSink(
        blob_path,
        dest if unpack else None,
        expected_digest or digest_of(blob, algorithm),
        len(blob) if expected_size == -1 else expected_size,
        digest_of(uncompressed) if uncompressed is not None else None,
        **options,
    )
    try:
        for start in range(0, len(blob), chunk):
            sink.write(blob[start : start + chunk])
        result = sink.finish()
    except Exception as exc:  # the tests inspect whichever error the sink raised
        sink.abort()
        return Run(None, exc, blob_path, dest, workdir)
    return Run(result, None, blob_path, dest, workdir)


def tree(root: Path) -> dict[str, tuple[str, int, str | bytes | None]]:
    """A comparable picture of a directory: kind, mode and content or link target."""
    out: dict[str, tuple[str, int, str | bytes | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st = path.lstat()
            mode = st.st_mode & 0o7777
            if path.is_symlink():
                out[rel] = ("symlink", 0, os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir", mode, None)
            elif path.is_file():
                out[rel] = ("file", mode, path.read_bytes())
            else:
                out[rel] = ("other", mode, None)
    return out
