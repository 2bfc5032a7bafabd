"""Deterministic layers, images and indexes for tests: same inputs, same digests, always.

Everything here is pure (no network): :class:`TarBuilder` writes layer tars with explicit
metadata, :func:`build_image` / :func:`build_index` wrap them in OCI or Docker v2 manifests,
:func:`tree_layer` turns a real directory into a layer (for benchmarks), and
:func:`standard_images` is the fixed set the ``test_images`` fixture pushes.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import zstandard

Compression = Literal["gzip", "zstd", "none"]
Flavour = Literal["oci", "docker"]

#: mtime given to every entry unless a test asks otherwise (2023-11-14, a fixed instant).
FIXED_MTIME = 1_700_000_000
#: "created" in every image config, so configs (and their digests) never depend on the clock.
FIXED_CREATED = "2023-11-14T22:13:20Z"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

_LAYER_MEDIA: dict[tuple[Flavour, Compression], str] = {
    ("oci", "none"): "application/vnd.oci.image.layer.v1.tar",
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("docker", "none"): "application/vnd.docker.image.rootfs.diff.tar",
    ("docker", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
}


def sha256_digest(data: builtins.bytes) -> str:
    """The ``sha256:<hex>`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class TarBuilder:
    """Builds a PAX tar entry by entry, in the order given, with explicit metadata.

    Paths are written exactly as given (no normalisation), so hostile layers
    (``../x``, absolute paths) can be built too. Methods return ``self`` to chain.
    """

    def __init__(self, *, mtime: int = FIXED_MTIME) -> None:
        self._mtime = mtime
        self._entries: list[tuple[tarfile.TarInfo, builtins.bytes | None]] = []

    def _info(
        self,
        path: str,
        kind: builtins.bytes,
        mode: int,
        uid: int,
        gid: int,
        mtime: int | None,
        xattrs: Mapping[str, builtins.bytes | str] | None,
    ) -> tarfile.TarInfo:
        info = tarfile.TarInfo(path)
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname = info.gname = ""
        info.mtime = self._mtime if mtime is None else mtime
        # PAX carries xattrs as SCHILY.xattr.<name>; binary values survive as surrogates.
        info.pax_headers = {
            "SCHILY.xattr." + key: (
                value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
            )
            for key, value in (xattrs or {}).items()
        }
        return info

    def add_dir(
        self,
        path: str,
        *,
        mode: int = 0o755,
        uid: int = 0,
        gid: int = 0,
        mtime: int | None = None,
        xattrs: Mapping[str, builtins.bytes | str] | None = None,
    ) -> TarBuilder:
        """Add a directory entry."""
        self._entries.append(
            (self._info(path, tarfile.DIRTYPE, mode, uid, gid, mtime, xattrs), None)
        )
        return self

    def add_file(
        self,
        path: str,
        data: builtins.bytes = b"",
        *,
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        mtime: int | None = None,
        xattrs: Mapping[str, builtins.bytes | str] | None = None,
    ) -> TarBuilder:
        """Add a regular file with content ``data``."""
        info = self._info(path, tarfile.REGTYPE, mode, uid, gid, mtime, xattrs)
        info.size = len(data)
        self._entries.append((info, data))
        return self

    def add_symlink(
        self, path: str, target: str, *, uid: int = 0, gid: int = 0, mtime: int | None = None
    ) -> TarBuilder:
        """Add a symlink ``path -> target`` (target kept verbatim)."""
        info = self._info(path, tarfile.SYMTYPE, 0o777, uid, gid, mtime, None)
        info.linkname = target
        self._entries.append((info, None))
        return self

    def add_hardlink(
        self, path: str, target: str, *, mode: int = 0o644, mtime: int | None = None
    ) -> TarBuilder:
        """Add a hard link to ``target``, a path from the layer root (as tar stores it)."""
        info = self._info(path, tarfile.LNKTYPE, mode, 0, 0, mtime, None)
        info.linkname = target
        self._entries.append((info, None))
        return self

    def add_whiteout(self, path: str) -> TarBuilder:
        """Delete ``path`` of a lower layer: an empty ``.wh.<name>`` file beside it."""
        parent, _, name = path.rstrip("/").rpartition("/")
        return self.add_file(f"{parent}/.wh.{name}" if parent else f".wh.{name}", mode=0o600)

    def add_opaque(self, directory: str) -> TarBuilder:
        """Hide everything lower layers put in ``directory``: ``<dir>/.wh..wh..opq``."""
        return self.add_file(directory.rstrip("/") + "/.wh..wh..opq", mode=0o600)

    def add_char_device(
        self, path: str, major: int, minor: int, *, mode: int = 0o666, mtime: int | None = None
    ) -> TarBuilder:
        """Add a character device node (e.g. ``dev/null`` is 1, 3)."""
        info = self._info(path, tarfile.CHRTYPE, mode, 0, 0, mtime, None)
        info.devmajor, info.devminor = major, minor
        self._entries.append((info, None))
        return self

    def bytes(self) -> builtins.bytes:
        """The uncompressed tar, end-of-archive blocks included."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for info, data in self._entries:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def compress(data: bytes, compression: Compression) -> bytes:
    """Compress deterministically: gzip with mtime 0 and no name, zstd level 3, or not at all."""
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    if compression == "none":
        return data
    raise ValueError(f"unknown compression {compression!r}; use gzip, zstd or none")


def parse_platform(platform: str) -> dict[str, str]:
    """``"linux/arm64/v8"`` -> ``{"os": "linux", "architecture": "arm64", "variant": "v8"}``."""
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform {platform!r} is not os/arch[/variant]")
    out = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        out["variant"] = parts[2]
    return out


class LayerInfo(NamedTuple):
    """One layer of a built image."""

    digest: str
    diff_id: str
    size: int
    media_type: str


@dataclass(frozen=True)
class Image:
    """A built single-platform image: manifest, config and every blob by digest."""

    manifest: bytes
    config: bytes
    blobs: dict[str, bytes]
    manifest_digest: str
    config_digest: str
    layers: list[LayerInfo]
    media_type: str
    platform: str


def with_config(image: Image, config: bytes) -> Image:
    """``image`` with another config blob: the manifest points at it (digest and size)."""
    digest = sha256_digest(config)
    manifest = image.manifest.replace(image.config_digest.encode(), digest.encode())
    manifest = manifest.replace(b'"size":%d' % len(image.config), b'"size":%d' % len(config), 1)
    blobs = {d: b for d, b in image.blobs.items() if d != image.config_digest}
    return dataclasses.replace(
        image,
        manifest=manifest,
        config=config,
        blobs={**blobs, digest: config},
        manifest_digest=sha256_digest(manifest),
        config_digest=digest,
    )


@dataclass(frozen=True)
class Index:
    """A built OCI index or Docker manifest list over several :class:`Image`."""

    manifest: bytes
    manifest_digest: str
    media_type: str
    images: list[Image] = field(default_factory=list)


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def build_image(
    layers: Sequence[bytes],
    compression: Compression = "gzip",
    platform: str = "linux/amd64",
    media: Flavour = "oci",
    config_extra: Mapping[str, Any] | None = None,
) -> Image:
    """Wrap uncompressed layer tars in a config and manifest; see :class:`Image`.

    ``config_extra`` is merged into the config's top level, except its ``"config"``
    key, which is merged into the runtime config (Env, Cmd...).
    """
    if (media, compression) not in _LAYER_MEDIA:
        raise ValueError(f"{media} manifests have no layer media type for {compression}")
    layer_media = _LAYER_MEDIA[(media, compression)]
    blobs: dict[str, bytes] = {}
    infos: list[LayerInfo] = []
    for tar in layers:
        blob = compress(tar, compression)
        digest = sha256_digest(blob)
        blobs[digest] = blob
        infos.append(LayerInfo(digest, sha256_digest(tar), len(blob), layer_media))

    runtime: dict[str, Any] = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["/bin/sh"]}
    config: dict[str, Any] = {
        **parse_platform(platform),
        "created": FIXED_CREATED,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [info.diff_id for info in infos]},
        "history": [
            {"created": FIXED_CREATED, "created_by": f"towline tests: layer {n}"}
            for n in range(len(infos))
        ],
    }
    for key, value in (config_extra or {}).items():
        if key == "config" and isinstance(value, Mapping):
            runtime.update(value)
        else:
            config[key] = value
    config_blob = _json(config)
    config_digest = sha256_digest(config_blob)
    blobs[config_digest] = config_blob

    manifest_media = OCI_MANIFEST if media == "oci" else DOCKER_MANIFEST
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": manifest_media,
            "config": {
                "mediaType": OCI_CONFIG if media == "oci" else DOCKER_CONFIG,
                "digest": config_digest,
                "size": len(config_blob),
            },
            "layers": [
                {"mediaType": i.media_type, "digest": i.digest, "size": i.size} for i in infos
            ],
        }
    )
    return Image(
        manifest=manifest,
        config=config_blob,
        blobs=blobs,
        manifest_digest=sha256_digest(manifest),
        config_digest=config_digest,
        layers=infos,
        media_type=manifest_media,
        platform=platform,
    )


def build_index(images: Sequence[Image], media: Flavour = "oci") -> Index:
    """An OCI index (or Docker manifest list) with one entry per image, platform included."""
    media_type = OCI_INDEX if media == "oci" else DOCKER_LIST
    entries = [
        {
            "mediaType": image.media_type,
            "digest": image.manifest_digest,
            "size": len(image.manifest),
            "platform": parse_platform(image.platform),
        }
        for image in images
    ]
    body = _json({"schemaVersion": 2, "mediaType": media_type, "manifests": entries})
    return Index(body, sha256_digest(body), media_type, list(images))


def tree_layer(
    root: Path,
    *,
    limit_files: int | None = None,
    prefix: str = "",
    max_file_size: int | None = None,
) -> bytes:
    """A deterministic tar of the real tree under ``root`` (e.g. ``/usr/share``).

    Entries are sorted by name, owned by 0:0 with :data:`FIXED_MTIME`; modes are the
    files' own. Symlinks are kept as links; sockets, devices and files or directories
    that cannot be read are left out. ``limit_files`` caps the number of files and
    symlinks; ``prefix`` (e.g. ``"usr/share/"``) is put before every path, and its
    directories are added first. ``max_file_size`` leaves out bigger files, for a
    small-files image.
    """
    builder = TarBuilder()
    base = prefix.strip("/")
    parts = base.split("/") if base else []
    for n in range(1, len(parts) + 1):
        builder.add_dir("/".join(parts[:n]))
    remaining = limit_files if limit_files is not None else -1  # -1: no limit

    def walk(directory: Path, rel: str) -> None:
        nonlocal remaining
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return  # an unreadable directory keeps its entry but not its contents
        for entry in entries:
            if remaining == 0:
                return
            name = f"{rel}/{entry.name}" if rel else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    builder.add_symlink(name, os.readlink(entry.path))
                elif stat.S_ISREG(st.st_mode):
                    if max_file_size is not None and st.st_size > max_file_size:
                        continue
                    builder.add_file(
                        name, Path(entry.path).read_bytes(), mode=stat.S_IMODE(st.st_mode)
                    )
                elif stat.S_ISDIR(st.st_mode):
                    builder.add_dir(name, mode=stat.S_IMODE(st.st_mode))
                    walk(Path(entry.path), name)
                    continue
                else:
                    continue
            except OSError:
                continue  # unreadable (or vanished) files are skipped, as documented
            remaining -= 1

    walk(root, base)
    return builder.bytes()


def mixed_blob(size: int, seed: int | str) -> bytes:
    """``size`` deterministic bytes: the first half compressible text, the rest random."""
    key = str(seed).encode()
    words = [hashlib.sha256(key + b"/%d" % n).hexdigest()[: 3 + n % 7].encode() for n in range(512)]
    picks = hashlib.shake_256(b"text:" + key).digest(1 << 17)
    text = b" ".join(words[picks[i] + 256 * (picks[i + 1] & 1)] for i in range(0, len(picks), 2))
    half = size // 2
    repeats = half // len(text) + 1
    return (text * repeats)[:half] + hashlib.shake_256(b"random:" + key).digest(size - half)


# === the standard set pushed by the test_images fixture

LONG_PATH = "usr/share/doc/" + "d" * 60 + "/" + "f" * 60 + ".txt"
TOOL = b'#!/bin/sh\necho "towline test tool"\n'
MULTIARCH_PLATFORMS = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7")


def standard_layers() -> list[bytes]:
    """Three layers; layer 3 deletes things from layers 1 and 2 (see :data:`STANDARD_ROOTFS`)."""
    one = (
        TarBuilder()
        .add_dir("etc")
        .add_file("etc/hostname", b"towline-test\n")
        .add_dir("etc/app", mode=0o750)
        .add_file("etc/app/config.txt", b"key=value\n", mode=0o640, uid=1000, gid=1000)
        .add_dir("opt")
        .add_dir("opt/stuff")
        .add_file("opt/stuff/a.txt", b"a\n")
        .add_file("opt/stuff/b.txt", b"b\n")
        .add_dir("tmp", mode=0o1777)
        .add_dir("usr")
        .add_dir("usr/bin")
        .add_file("usr/bin/tool", TOOL, mode=0o755)
        .add_dir("var")
        .add_dir("var/lib")
        .add_dir("var/lib/data", mode=0o700)
        .add_file("var/lib/data/old.txt", b"old\n", mode=0o600)
    )
    two = (
        TarBuilder()
        .add_file("etc/app/extra.conf", b"extra=1\n")
        .add_symlink("usr/bin/tool-link", "tool")
        .add_dir("usr/lib")
        .add_file("usr/lib/libdemo.so.1", b"\x7fELF not really\n", mode=0o755)
        .add_hardlink("usr/lib/libdemo-hard.so.1", "usr/lib/libdemo.so.1", mode=0o755)
        .add_dir("usr/share")
        .add_dir("usr/share/doc")
        .add_dir(LONG_PATH.rsplit("/", 1)[0])
        .add_file(LONG_PATH, b"a path longer than 100 characters\n")
        .add_file("var/lib/data/keep.txt", b"keep\n")
    )
    three = (
        TarBuilder()
        .add_whiteout("var/lib/data/old.txt")
        .add_whiteout("etc/app/extra.conf")
        .add_dir("opt/stuff")
        .add_opaque("opt/stuff")
        .add_file("opt/stuff/c.txt", b"c\n")
        .add_file("usr/bin/run.sh", b'#!/bin/sh\nexec tool "$@"\n', mode=0o755)
    )
    return [one.bytes(), two.bytes(), three.bytes()]


#: The tree after applying :func:`standard_layers` in order: path -> (kind, mode, content
#: for files / target for links). Hard links show as files with their target's content.
STANDARD_ROOTFS: dict[str, tuple[str, int, bytes | str | None]] = {
    "etc": ("dir", 0o755, None),
    "etc/hostname": ("file", 0o644, b"towline-test\n"),
    "etc/app": ("dir", 0o750, None),
    "etc/app/config.txt": ("file", 0o640, b"key=value\n"),
    "opt": ("dir", 0o755, None),
    "opt/stuff": ("dir", 0o755, None),
    "opt/stuff/c.txt": ("file", 0o644, b"c\n"),
    "tmp": ("dir", 0o1777, None),
    "usr": ("dir", 0o755, None),
    "usr/bin": ("dir", 0o755, None),
    "usr/bin/tool": ("file", 0o755, TOOL),
    "usr/bin/tool-link": ("symlink", 0o777, "tool"),
    "usr/bin/run.sh": ("file", 0o755, b'#!/bin/sh\nexec tool "$@"\n'),
    "usr/lib": ("dir", 0o755, None),
    "usr/lib/libdemo.so.1": ("file", 0o755, b"\x7fELF not really\n"),
    "usr/lib/libdemo-hard.so.1": ("file", 0o755, b"\x7fELF not really\n"),
    "usr/share": ("dir", 0o755, None),
    "usr/share/doc": ("dir", 0o755, None),
    LONG_PATH.rsplit("/", 1)[0]: ("dir", 0o755, None),
    LONG_PATH: ("file", 0o644, b"a path longer than 100 characters\n"),
    "var": ("dir", 0o755, None),
    "var/lib": ("dir", 0o755, None),
    "var/lib/data": ("dir", 0o700, None),
    "var/lib/data/keep.txt": ("file", 0o644, b"keep\n"),
}


@functools.cache
def standard_images() -> dict[str, Image | Index]:
    """The images ``test_images`` pushes, by name: gzip, zstd, docker, multiarch, shared-a/b."""
    layers = standard_layers()
    per_platform = [
        build_image(
            [TarBuilder().add_dir("etc").add_file("etc/platform", p.encode() + b"\n").bytes()],
            "gzip",
            platform=p,
        )
        for p in MULTIARCH_PLATFORMS
    ]
    return {
        "gzip": build_image(layers, "gzip"),
        "zstd": build_image(layers, "zstd"),
        "docker": build_image(layers, "gzip", media="docker"),
        "multiarch": build_index(per_platform),
        "shared-a": build_image([*layers[:2], TarBuilder().add_file("a.txt", b"A\n").bytes()]),
        "shared-b": build_image([*layers[:2], TarBuilder().add_file("b.txt", b"B\n").bytes()]),
    }
