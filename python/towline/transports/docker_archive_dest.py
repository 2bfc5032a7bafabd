"""Writing ``docker save`` archives: the ``docker-archive:`` destination.

The archive holds ``manifest.json``, ``repositories``, ``<config-hex>.json`` and
every layer uncompressed as ``<diff_id-hex>/layer.tar``, the layout of
``docker save`` before Docker 25, which ``docker load``, ``podman load`` and
skopeo read. Layers arrive through a native ``LayerSink`` that verifies the
blob (digest, size, diff_id) and writes its decompressed tar, so a gzip or zstd
layer is stored as the tar its diff_id names. Files are staged in a hidden
directory next to the archive; :meth:`DockerArchiveDestination.commit` packs
them with ``_native.write_tar``, which writes the archive atomically, and
:meth:`~DockerArchiveDestination.abort` removes the staging: until the commit
nothing appears at the path.

Several images may be copied in before the one commit (``towline save -m``):
each gets the RepoTags set by :meth:`~DockerArchiveDestination.set_repo_tags`
(by default the reference's NAME); an image copied twice gains the second
copy's tags, as containers/image's archive writer does.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from towline import _native
from towline.errors import InvalidReferenceError, StoreError, TransportError
from towline.manifest import DOCKER_MANIFEST, OCI_MANIFEST, Descriptor, ImageConfig, ImageManifest
from towline.reference import parse_reference
from towline.transports.base import BlobWriter, DestinationCapabilities, LayerContext
from towline.transports.docker_archive_format import (
    MANIFEST_JSON,
    REPOSITORIES,
    WrittenImage,
    config_path,
    layer_path,
    render_manifest_json,
    render_repositories,
)

if TYPE_CHECKING:
    from towline.transports.docker_archive import DockerArchiveReference

__all__ = ["DockerArchiveDestination", "open_archive_destination"]


def open_archive_destination(
    ref: DockerArchiveReference, *, durable: bool = True
) -> DockerArchiveDestination:
    """A destination writing the archive ``ref`` names; its NAME becomes the RepoTag."""
    if ref.index is not None:
        raise InvalidReferenceError(
            f"{ref}: a destination reference must not contain a source index "
            f"@{ref.index}; use docker-archive:PATH[:NAME[:TAG]]"
        )
    tags = [str(ref.name)] if ref.name is not None else []
    return DockerArchiveDestination(ref.path, tags, description=str(ref), durable=durable)


class DockerArchiveDestination:
    """A ``docker save`` archive being written; see the module docstring."""

    # The archive keeps no manifest (manifest.json is rebuilt from config and layers), so
    # none is converted: an OCI image with zstd layers is written as well as a Docker one.
    capabilities = DestinationCapabilities(
        manifest_types=(DOCKER_MANIFEST, OCI_MANIFEST),
        index_types=(),
        parallel_writes=True,
    )

    def __init__(
        self,
        path: Path,
        repo_tags: Sequence[str],
        *,
        description: str | None = None,
        durable: bool = True,
    ) -> None:
        self._path = path
        self._description = description or f"docker-archive:{path}"
        self._durable = durable
        self._tags = _tags(repo_tags)
        self._staging: Path | None = None
        self._images: dict[str, WrittenImage] = {}  # by config digest, in the order begun
        self._current: tuple[str, WrittenImage] | None = None
        self._mutex = threading.Lock()
        self._closed = False
        self._check_path()

    @property
    def description(self) -> str:
        return self._description

    def set_repo_tags(self, tags: Sequence[str]) -> None:
        """RepoTags of the images begun from now on (names such as ``host/repo:tag``).

        Each is normalized as an image name (``latest`` added). A name pinned by
        digest is no repository tag and is left out, as ``podman save`` does.
        """
        self._tags = _tags(tags)

    def _check_path(self) -> None:
        path = self._path
        # As c/image's openArchiveForWriting: never overwrite an archive that has content.
        if path.is_dir():
            raise TransportError(
                f"{self._description}: {path} is a directory; give a file path for the archive",
                slug="invalid_destination",
            )
        if path.exists() and path.stat().st_size != 0:
            raise TransportError(
                f"{self._description}: {path} exists and is not empty; docker-archive doesn't "
                "support modifying existing images: remove it or choose another path",
                slug="destination_exists",
            )
        if not path.parent.is_dir():
            raise TransportError(
                f"{self._description}: the directory {path.parent} does not exist; create it first",
                slug="invalid_destination",
            )

    def _stage_dir(self) -> Path:
        if self._closed:
            raise StoreError(f"{self._description}: the destination is closed", slug="closed")
        if self._staging is None:
            self._staging = Path(
                tempfile.mkdtemp(
                    prefix=f".{self._path.name}.", suffix=".tmp", dir=self._path.parent
                )
            )
        return self._staging

    def _image(self) -> tuple[str, WrittenImage]:
        if self._current is None:
            raise StoreError(f"{self._description}: begin_image was not called", slug="internal")
        return self._current

    # === the ImageDestination protocol
    def begin_image(self, manifest: ImageManifest, config_raw: bytes, config: ImageConfig) -> None:
        self._stage_dir()
        config_hex = manifest.config.digest.partition(":")[2]
        layers = [diff_id.partition(":")[2] for diff_id in config.diff_ids]
        with self._mutex:
            image = self._images.get(manifest.config.digest)
            if image is None:
                image = WrittenImage(config_hex, layers)
            for tag in self._tags:
                if tag not in image.repo_tags:
                    image.repo_tags.append(tag)
            self._current = (manifest.config.digest, image)

    def try_reuse_blob(self, desc: Descriptor, layer: LayerContext | None) -> bool:
        # A file is in the staging only once its sink verified it.
        return self._blob_path(desc, layer).is_file()

    def _blob_path(self, desc: Descriptor, layer: LayerContext | None) -> Path:
        staging = self._stage_dir()
        if layer is None:
            return staging / config_path(desc.digest.partition(":")[2])
        return staging / layer_path(layer.diff_id.partition(":")[2])

    def open_blob(self, desc: Descriptor, layer: LayerContext | None) -> BlobWriter:
        target = self._blob_path(desc, layer)
        # Staged files need no fsync: write_tar makes the archive durable at the commit.
        if layer is None:
            return _native.BlobSink(target, desc.digest, desc.size, durable=False)
        target.parent.mkdir(exist_ok=True)
        return _native.LayerSink(
            None,
            None,
            desc.digest,
            desc.size,
            layer.diff_id,
            durable=False,
            decompressed_path=target,
        )

    def put_manifest(self, raw: bytes, media_type: str) -> None:
        key, image = self._image()
        with self._mutex:
            self._images.setdefault(key, image)
            self._current = None

    def put_index(self, raw: bytes, media_type: str, *, complete: bool) -> None:
        """An archive holds single images; the index they came from is not kept."""

    def commit(self) -> None:
        staging = self._stage_dir()
        images = list(self._images.values())
        entries: list[tuple[str, str | bytes | Path]] = []
        seen: set[str] = set()
        for image in images:
            for diff_hex in image.layer_hexes:
                if diff_hex not in seen:
                    seen.add(diff_hex)
                    entries.append((f"{diff_hex}/", b""))
                    entries.append((layer_path(diff_hex), staging / layer_path(diff_hex)))
            entries.append((config_path(image.config_hex), staging / config_path(image.config_hex)))
        entries.append((MANIFEST_JSON, render_manifest_json(images)))
        entries.append((REPOSITORIES, render_repositories(images)))
        self._check_path()  # nothing appeared there meanwhile
        _native.write_tar(self._path, entries, durable=self._durable)
        self._remove_staging()

    def abort(self) -> None:
        self._remove_staging()

    def _remove_staging(self) -> None:
        self._closed = True
        staging, self._staging = self._staging, None
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _tags(names: Sequence[str]) -> list[str]:
    tags = []
    for name in names:
        ref = parse_reference(name)
        if ref.tag is None:
            continue
        # c/image writes Name():Tag(), with the registry, so every reader sees one name.
        tag = f"{ref.name}:{ref.tag}"
        if tag not in tags:
            tags.append(tag)
    return tags
