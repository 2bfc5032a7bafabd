"""Benchmark layers: generated once, deterministically, and cached on disk.

Two kinds of layer, each compressed with gzip (level 6) and zstd (level 3):

* ``small-files``: a tar of ~20k real files from this machine (``/usr/share`` and the
  system Python's library), the shape of a distribution base layer, where creating files
  costs more than inflating bytes;
* ``big``: one ~400 MB file, half compressible text and half random bytes, where
  inflate, hashing and writing dominate.

Smoke mode (benchmarks disabled) uses tiny versions of both so that a plain ``pytest`` run
exercises every pipeline in seconds. The cache lives in ``$TOWLINE_BENCH_CACHE``
(default ``/tmp/towline-bench-cache``); delete it to regenerate. Run
``python benches/data.py`` to build the full set ahead of time and print where it is.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, get_args

import zstandard

_TESTS = Path(__file__).resolve().parent.parent / "tests"
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from support.images import TarBuilder, mixed_blob, tree_layer  # noqa: E402

LayerKind = Literal["small-files", "big"]
Compression = Literal["gzip", "zstd"]

LAYER_KINDS: tuple[LayerKind, ...] = get_args(LayerKind)
COMPRESSIONS: tuple[Compression, ...] = get_args(Compression)

#: Every pipeline is fed the blob in writes of this size, as a registry body would arrive.
CHUNK_SIZE = 1 << 20

#: Bumped whenever what is generated changes, so stale caches are not reused.
_FORMAT = 1
_SUFFIX: dict[Compression, str] = {"gzip": "tar.gz", "zstd": "tar.zst"}

#: (root on this machine, path prefix in the layer, files taken in full mode, in smoke mode)
_SMALL_FILE_SOURCES: tuple[tuple[str, str, int, int], ...] = (
    ("/usr/share", "usr/share/", 15_500, 200),
    ("/usr/lib/python3", "usr/lib/python3/", 3_000, 50),
    (f"/usr/lib/python3.{sys.version_info.minor}", "usr/lib/python3.x/", 1_500, 50),
)
#: "Small" files: bigger ones are left out of the small-files layer.
_SMALL_FILE_MAX = 128 << 10
_BIG_SIZE = {"full": 400 * 10**6, "smoke": 8 << 20}


def cache_dir() -> Path:
    """Where layers (and the on-disk destinations) live: ``$TOWLINE_BENCH_CACHE``."""
    return Path(os.environ.get("TOWLINE_BENCH_CACHE", "/tmp/towline-bench-cache"))


@dataclass(frozen=True)
class BenchLayer:
    """One compressed layer blob on disk, with the digests every pipeline must reproduce."""

    kind: LayerKind
    compression: Compression
    path: Path
    digest: str
    size: int
    diff_id: str
    uncompressed_size: int
    entries: int

    @property
    def name(self) -> str:
        """``"big.gzip"``, ``"small-files.zstd"``: the benchmark group of this layer."""
        return f"{self.kind}.{self.compression}"

    def chunks(self) -> list[bytes]:
        """The blob as 1 MiB ``bytes`` chunks, read once and kept in memory."""
        return _chunks(self.path)


@functools.cache
def _chunks(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return [data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]


def get_layer(kind: LayerKind, compression: Compression, *, smoke: bool) -> BenchLayer:
    """The cached layer ``kind`` compressed with ``compression``, generated if missing."""
    if kind not in LAYER_KINDS or compression not in COMPRESSIONS:
        raise ValueError(
            f"unknown benchmark layer {kind}.{compression}; kinds are {', '.join(LAYER_KINDS)}"
            f" and compressions {', '.join(COMPRESSIONS)}"
        )
    variant = "smoke" if smoke else "full"
    directory = cache_dir() / f"layers-v{_FORMAT}" / variant
    meta_path = directory / f"{kind}.{compression}.json"
    if not meta_path.exists():
        _generate(kind, variant, directory)
    meta = json.loads(meta_path.read_text())
    meta["path"] = Path(meta["path"])
    return BenchLayer(**meta)


def all_layers(*, smoke: bool) -> list[BenchLayer]:
    """Every (kind, compression) pair, small files first."""
    return [get_layer(k, c, smoke=smoke) for k in LAYER_KINDS for c in COMPRESSIONS]


def _generate(kind: LayerKind, variant: str, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    raw = _small_files_tar(variant) if kind == "small-files" else _big_tar(variant)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        entries = sum(1 for _ in tar)
    for compression in COMPRESSIONS:
        blob = _compress(raw, compression)
        path = directory / f"{kind}.{_SUFFIX[compression]}"
        _write_atomically(path, blob)
        layer = BenchLayer(
            kind=kind,
            compression=compression,
            path=path,
            digest="sha256:" + hashlib.sha256(blob).hexdigest(),
            size=len(blob),
            diff_id=diff_id,
            uncompressed_size=len(raw),
            entries=entries,
        )
        meta = {**asdict(layer), "path": str(path)}
        # Written last: its presence means the blob beside it is complete.
        _write_atomically(directory / f"{kind}.{compression}.json", json.dumps(meta).encode())


def _compress(raw: bytes, compression: Compression) -> bytes:
    if compression == "gzip":
        return gzip.compress(raw, compresslevel=6, mtime=0)
    return zstandard.ZstdCompressor(level=3).compress(raw)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _small_files_tar(variant: str) -> bytes:
    """Several real trees in one tar: each tree's members, then one end-of-archive marker."""
    parts: list[bytes] = []
    for root, prefix, full_count, smoke_count in _SMALL_FILE_SOURCES:
        if not Path(root).is_dir():
            continue
        count = full_count if variant == "full" else smoke_count
        tree = tree_layer(
            Path(root), prefix=prefix, limit_files=count, max_file_size=_SMALL_FILE_MAX
        )
        parts.append(tree[: _members_end(tree)])
    if not parts:
        raise FileNotFoundError(
            "no source tree for the small-files layer: none of "
            + ", ".join(s[0] for s in _SMALL_FILE_SOURCES)
            + " exists on this machine"
        )
    body = b"".join(parts) + b"\0" * (2 * tarfile.BLOCKSIZE)
    # Pad to a whole record, as tar(1) and tarfile do.
    return body + b"\0" * (-len(body) % tarfile.RECORDSIZE)


def _members_end(tar_bytes: bytes) -> int:
    """Offset of the end-of-archive marker, i.e. the length of the members proper."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for _ in tar:
            pass
        return tar.offset


def _big_tar(variant: str) -> bytes:
    data = mixed_blob(_BIG_SIZE[variant], seed="towline-bench")
    return (
        TarBuilder()
        .add_dir("data")
        .add_file("data/blob.bin", data, mode=0o644)
        .add_file("data/README", b"half text, half random\n")
        .bytes()
    )


def main(argv: list[str]) -> None:
    """Generates every layer (full size unless ``--smoke``) and prints a line per layer.

    ``--path KIND.COMPRESSION`` prints only that blob's path (for shell scripts).
    """
    smoke = "--smoke" in argv
    if "--path" in argv:
        kind, _, compression = argv[argv.index("--path") + 1].partition(".")
        layer = get_layer(kind, compression, smoke=smoke)  # type: ignore[arg-type]
        sys.stdout.write(f"{layer.path}\n")
        return
    for layer in all_layers(smoke=smoke):
        sys.stdout.write(
            f"{layer.name:18} {layer.size / 1e6:8.1f} MB -> {layer.uncompressed_size / 1e6:8.1f} MB"
            f" {layer.entries:6} entries  {layer.path}\n"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
