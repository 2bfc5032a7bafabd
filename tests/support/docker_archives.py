"""``docker save`` archives built by hand, member by member, so tests can damage them at will.

:func:`docker_archive` lays images out as ``docker save`` does (legacy
``<id>/layer.tar`` directories, or Docker 25's ``blobs/sha256/<hex>``), as an
:class:`ArchiveSpec`: an ordered list of members plus the ``manifest.json``
items, which a test edits before :meth:`ArchiveSpec.pack` writes the tar
(optionally gzip- or zstd-compressed as a whole).
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import zstandard

from .images import Compression, Image, build_image, compress

Style = Literal["legacy", "blobs"]


@dataclass
class Member:
    """One tar member: a file (``data``), a directory, or a link to ``target``."""

    name: str
    data: bytes = b""
    kind: Literal["file", "dir", "symlink", "hardlink"] = "file"
    target: str = ""


@dataclass
class ArchiveSpec:
    """The members of an archive and its manifest.json items, before packing."""

    members: list[Member] = field(default_factory=list)
    manifest: list[dict[str, Any]] = field(default_factory=list)
    manifest_json: bytes | None = None  # raw manifest.json, instead of ``manifest``
    with_manifest: bool = True  # False: no manifest.json at all
    manifest_first: bool = False  # manifest.json before the other members, not after

    def add(self, member: Member) -> None:
        """Append ``member`` (a name already present is replaced in place)."""
        for i, old in enumerate(self.members):
            if old.name == member.name:
                self.members[i] = member
                return
        self.members.append(member)

    def remove(self, name: str) -> None:
        """Drop the member ``name``."""
        self.members = [m for m in self.members if m.name != name]

    def tar(self) -> bytes:
        """The uncompressed tar: the members, then (or first) manifest.json."""
        raw = self.manifest_json
        if raw is None:
            raw = json.dumps(self.manifest).encode()
        members = list(self.members)
        if self.with_manifest:
            position = 0 if self.manifest_first else len(members)
            members.insert(position, Member("manifest.json", raw))
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for member in members:
                info = tarfile.TarInfo(member.name)
                info.mtime = 1_700_000_000
                if member.kind == "dir":
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                elif member.kind in ("symlink", "hardlink"):
                    info.type = tarfile.SYMTYPE if member.kind == "symlink" else tarfile.LNKTYPE
                    info.linkname = member.target
                    tar.addfile(info)
                else:
                    info.size, info.mode = len(member.data), 0o644
                    tar.addfile(info, io.BytesIO(member.data))
        return out.getvalue()

    def pack(self, path: Path, compression: Compression = "none") -> Path:
        """Write the archive to ``path``, compressed as a whole with ``compression``."""
        data = self.tar()
        if compression == "gzip":
            data = gzip.compress(data, mtime=0)
        elif compression == "zstd":
            data = zstandard.ZstdCompressor().compress(data)
        path.write_bytes(data)
        return path


def archive_image(layers: Sequence[bytes], **config: Any) -> Image:
    """An image whose blobs are its uncompressed layers (blob digest = diff_id), for archives."""
    return build_image(layers, "none", media="docker", config_extra=config or None)


def docker_archive(
    images: Sequence[tuple[Image, Sequence[str]]],
    *,
    style: Style = "legacy",
    layer_compression: Compression = "none",
) -> ArchiveSpec:
    """``images`` (uncompressed, see :func:`archive_image`) with their RepoTags, as ``docker save``.

    ``legacy``: ``<diff_id-hex>/layer.tar`` and ``<config-hex>.json`` (Docker before 25);
    ``blobs``: ``blobs/sha256/<hex>`` for both (Docker 25+). ``layer_compression`` stores
    each layer file compressed (as hand-made archives do); names keep the diff_id.
    """
    spec = ArchiveSpec()
    for image, tags in images:
        layers = []
        for info in image.layers:
            hex_id = info.diff_id.partition(":")[2]
            tar = image.blobs[info.digest]
            data = compress(tar, layer_compression)
            if style == "legacy":
                spec.add(Member(f"{hex_id}/", kind="dir"))
                name = f"{hex_id}/layer.tar"
            else:
                name = f"blobs/sha256/{hex_id}"
            spec.add(Member(name, data))
            layers.append(name)
        config_hex = image.config_digest.partition(":")[2]
        config = f"{config_hex}.json" if style == "legacy" else f"blobs/sha256/{config_hex}"
        spec.add(Member(config, image.config))
        spec.manifest.append({"Config": config, "RepoTags": list(tags), "Layers": layers})
    return spec
