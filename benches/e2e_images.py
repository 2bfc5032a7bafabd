"""The images of the end-to-end benchmark: built once, cached on disk, pushed to a local registry.

Three images (issue 3), all deterministic for a given machine:

* ``small-files``: about 20k small files from real trees (``/usr/share``, ``/usr/lib/python3*``,
  ``/usr/include``) in 3 gzip layers; the case where per-file cost dominates.
* ``large-gzip``: about 400 MB uncompressed in 2 gzip layers, each file half compressible text
  and half random bytes; the case where decompression and hashing dominate.
* ``large-zstd``: the same layer tars, compressed with zstd.

``--quick`` scales them down; ``tiny-gzip`` / ``tiny-zstd`` (tens of files) exist for the smoke
test. Building reads real trees, so the result is cached under ``$TOWLINE_BENCH_CACHE``
(default ``/tmp/towline-bench-cache``) in a directory named after the recipe's hash: the same
recipe on the same machine always yields the same digests. The last layer of every image holds
a marker file, ``towline-bench/<name>``, by which the harness checks that a tool unpacked it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.images import (
    Compression,
    Image,
    LayerInfo,
    TarBuilder,
    build_image,
    mixed_blob,
    tree_layer,
)
from support.registry import RegistryServer, push_image

__all__ = [
    "CACHE_ENV",
    "BenchImage",
    "ImageSpec",
    "benchmark_specs",
    "cache_root",
    "ensure_image",
    "marker_content",
    "marker_path",
    "push_bench_image",
]

CACHE_ENV = "TOWLINE_BENCH_CACHE"
DEFAULT_CACHE = Path("/tmp/towline-bench-cache")
#: Bump when the cache layout (not a recipe) changes.
_CACHE_FORMAT = 1
#: Files bigger than this are left out of ``small-files``: it is about per-file cost.
SMALL_FILE_MAX = 64 * 1024


@dataclass(frozen=True)
class ImageSpec:
    """How to build one benchmark image: uncompressed layer tars plus a compression.

    ``recipe`` names every input that changes the bytes; it keys the cache.
    """

    name: str
    compression: Compression
    recipe: str
    description: str
    layers: Callable[[], list[bytes]]


@dataclass(frozen=True)
class BenchImage:
    """A built image as cached on disk (``directory``), with what the harness checks."""

    name: str
    directory: Path
    description: str
    compression: Compression
    manifest_digest: str
    config_digest: str
    media_type: str
    layers: tuple[LayerInfo, ...]
    entries: int  # tar entries over all layers (files, links, directories)
    uncompressed_size: int

    def blob_path(self, digest: str) -> Path:
        """Where the cache keeps the blob (layer, config or manifest) ``digest``."""
        algorithm, _, hexpart = digest.partition(":")
        return self.directory / "blobs" / algorithm / hexpart

    @property
    def compressed_size(self) -> int:
        """Sum of the layer blobs' sizes: what a tool downloads."""
        return sum(layer.size for layer in self.layers)

    def load(self) -> Image:
        """The image with every blob in memory, as :func:`support.registry.push_image` wants."""
        manifest = self.blob_path(self.manifest_digest).read_bytes()
        config = self.blob_path(self.config_digest).read_bytes()
        blobs = {layer.digest: self.blob_path(layer.digest).read_bytes() for layer in self.layers}
        blobs[self.config_digest] = config
        return Image(
            manifest=manifest,
            config=config,
            blobs=blobs,
            manifest_digest=self.manifest_digest,
            config_digest=self.config_digest,
            layers=list(self.layers),
            media_type=self.media_type,
            platform="linux/amd64",
        )


def marker_path(name: str) -> str:
    """The path, inside the image, of the marker file of image ``name``."""
    return f"towline-bench/{name}"


def marker_content(name: str) -> bytes:
    """What the marker file of image ``name`` holds."""
    return f"towline end-to-end benchmark image {name}\n".encode()


def cache_root() -> Path:
    """``$TOWLINE_BENCH_CACHE``, else ``/tmp/towline-bench-cache``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


# === layer recipes


def _merge_tars(tars: Sequence[bytes]) -> bytes:
    """One tar with the members of ``tars`` in order; a directory seen before is not repeated."""
    out = io.BytesIO()
    seen_dirs: set[str] = set()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as merged:
        for data in tars:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as part:
                for member in part:
                    if member.isdir():
                        if member.name in seen_dirs:
                            continue
                        seen_dirs.add(member.name)
                    merged.addfile(member, part.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def _marker_layer(name: str) -> bytes:
    return (
        TarBuilder()
        .add_dir("towline-bench")
        .add_file(marker_path(name), marker_content(name))
        .bytes()
    )


def _with_marker(layers: list[bytes], name: str) -> list[bytes]:
    return [*layers[:-1], _merge_tars([layers[-1], _marker_layer(name)])]


def _trees(roots: Sequence[str], limit: int) -> bytes:
    """The existing trees among ``roots``, sharing a budget of ``limit`` files."""
    parts: list[bytes] = []
    remaining = limit
    for root in roots:
        path = Path(root)
        if remaining <= 0 or not path.is_dir():
            continue
        tar = tree_layer(
            path, limit_files=remaining, prefix=root.strip("/") + "/", max_file_size=SMALL_FILE_MAX
        )
        with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as reader:
            remaining -= sum(1 for m in reader if not m.isdir())
        parts.append(tar)
    return _merge_tars(parts) if parts else TarBuilder().bytes()


def _python_roots() -> list[str]:
    return sorted(str(p) for p in Path("/usr/lib").glob("python3*") if p.is_dir())


def _small_files_layers(limits: tuple[int, int, int]) -> list[bytes]:
    share, python, include = limits
    layers = [
        _trees(["/usr/share"], share),
        _trees(_python_roots(), python),
        _trees(["/usr/include"], include),
    ]
    return _with_marker(layers, "small-files")


@functools.cache
def _large_layers(files_per_layer: int, file_size: int) -> tuple[bytes, ...]:
    # Cached so large-gzip and large-zstd, built one after the other, share the tars.
    layers = []
    for n in range(2):
        builder = TarBuilder().add_dir("data").add_dir(f"data/layer{n}")
        for m in range(files_per_layer):
            builder.add_file(f"data/layer{n}/blob{m}.bin", mixed_blob(file_size, f"large/{n}/{m}"))
        layers.append(builder.bytes())
    return tuple(layers)


def _tiny_layers(name: str) -> list[bytes]:
    one = TarBuilder().add_dir("etc").add_dir("usr").add_dir("usr/share")
    for n in range(20):
        one.add_file(f"usr/share/file{n:02}.txt", b"towline tiny %d\n" % n * (n + 1))
    two = TarBuilder().add_dir("opt")
    for n in range(20):
        two.add_file(f"opt/data{n:02}.bin", mixed_blob(4096, f"tiny/{n}"))
    two.add_symlink("opt/link", "data00.bin")
    return _with_marker([one.bytes(), two.bytes()], name)


def benchmark_specs(*, quick: bool = False) -> dict[str, ImageSpec]:
    """Every image the harness knows, by name; ``quick`` scales the three real ones down."""
    limits = (1500, 500, 500) if quick else (10_000, 5_000, 6_000)
    files, size = (2, 10_000_000) if quick else (5, 40_000_000)
    roots = ",".join(["/usr/share", *_python_roots(), "/usr/include"])
    total_mb = 2 * files * size // 1_000_000

    def large(compression: Compression) -> ImageSpec:
        name = f"large-{compression}"
        return ImageSpec(
            name=name,
            compression=compression,
            recipe=f"large v1 files={files} size={size} {compression}",
            description=f"{total_mb} MB in 2 {compression} layers (half text, half random)",
            layers=lambda: _with_marker(list(_large_layers(files, size)), name),
        )

    specs = [
        ImageSpec(
            name="small-files",
            compression="gzip",
            recipe=f"small-files v1 limits={limits} max={SMALL_FILE_MAX} roots={roots}",
            description=f"~{sum(limits) // 1000}k files <= 64 KiB from {roots}, 3 gzip layers",
            layers=lambda: _small_files_layers(limits),
        ),
        large("gzip"),
        large("zstd"),
    ]
    for compression in ("gzip", "zstd"):
        name = f"tiny-{compression}"
        specs.append(
            ImageSpec(
                name=name,
                compression=compression,
                recipe=f"tiny v1 {compression}",
                description=f"42 files in 2 {compression} layers (smoke test)",
                layers=functools.partial(_tiny_layers, name),
            )
        )
    return {spec.name: spec for spec in specs}


# === the cache


def _cache_dir(spec: ImageSpec, cache: Path) -> Path:
    key = hashlib.sha256(f"{_CACHE_FORMAT}|{spec.name}|{spec.recipe}".encode()).hexdigest()
    return cache / f"{spec.name}-{key[:16]}"


def _count_entries(tar: bytes) -> int:
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as reader:
        return sum(1 for _ in reader)


def _write_cache(spec: ImageSpec, final: Path) -> None:
    tars = spec.layers()
    image = build_image(tars, spec.compression)
    staging = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    blobs = {**image.blobs, image.manifest_digest: image.manifest}
    for digest, data in blobs.items():
        algorithm, _, hexpart = digest.partition(":")
        path = staging / "blobs" / algorithm / hexpart
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    meta = {
        "name": spec.name,
        "recipe": spec.recipe,
        "description": spec.description,
        "compression": spec.compression,
        "manifest_digest": image.manifest_digest,
        "config_digest": image.config_digest,
        "media_type": image.media_type,
        "layers": [layer._asdict() for layer in image.layers],
        "entries": sum(_count_entries(tar) for tar in tars),
        "uncompressed_size": sum(len(tar) for tar in tars),
    }
    (staging / "image.json").write_text(json.dumps(meta, indent=2))
    try:
        staging.rename(final)
    except OSError:
        # Another run cached the same recipe first; its bytes are the same.
        shutil.rmtree(staging)
        if not final.is_dir():
            raise


def _read_cache(directory: Path) -> BenchImage:
    meta = json.loads((directory / "image.json").read_text())
    image = BenchImage(
        name=meta["name"],
        directory=directory,
        description=meta["description"],
        compression=meta["compression"],
        manifest_digest=meta["manifest_digest"],
        config_digest=meta["config_digest"],
        media_type=meta["media_type"],
        layers=tuple(LayerInfo(**layer) for layer in meta["layers"]),
        entries=meta["entries"],
        uncompressed_size=meta["uncompressed_size"],
    )
    for layer in image.layers:
        path = image.blob_path(layer.digest)
        if not path.is_file() or path.stat().st_size != layer.size:
            raise FileNotFoundError(f"benchmark cache {directory} lacks {layer.digest}")
    return image


def ensure_image(spec: ImageSpec, cache: Path | None = None) -> BenchImage:
    """The cached build of ``spec``, building it first when it is missing or incomplete."""
    directory = _cache_dir(spec, cache or cache_root())
    try:
        return _read_cache(directory)
    except (FileNotFoundError, KeyError, ValueError):
        # Missing or damaged (an interrupted copy by hand): rebuild it from the recipe.
        shutil.rmtree(directory, ignore_errors=True)
    directory.parent.mkdir(parents=True, exist_ok=True)
    _write_cache(spec, directory)
    return _read_cache(directory)


def push_bench_image(server: RegistryServer, image: BenchImage) -> str:
    """Push ``image`` as ``bench/<name>:latest``; return the reference tools pull."""
    repo = f"bench/{image.name}"
    digest = push_image(server, repo, "latest", image.load())
    if digest != image.manifest_digest:
        raise RuntimeError(f"registry {server.host} stored {repo} as {digest}")
    return f"{server.host}/{repo}:latest"
