"""The ``oci-archive:`` transport: an OCI image layout in a tar, as a source and a destination.

``oci-archive:FILE[:REF]`` selects an image as ``oci:`` does. c/image untars the
file to a temporary directory first; towline reads it in place (by offset when
it is uncompressed, streamed when not: :mod:`towline.transports.oci_archive_files`).

Images are named as libimage's ``nameFromAnnotations`` names them: the entry's
``io.containerd.image.name``, else its ``org.opencontainers.image.ref.name``,
through ``NormalizeName`` (so ``app:1`` is ``localhost/app:1``); no annotation
means unnamed.

As a destination it stages a layout in a directory beside ``FILE`` (the same
filesystem), written by the ``oci:`` destination, and at :meth:`commit` writes
the tar atomically over ``FILE`` (``_native.write_tar``) and removes the stage.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from towline import _native
from towline.errors import TowlineError, TransportError
from towline.manifest import Descriptor, ImageConfig, ImageManifest
from towline.reference import normalize_name
from towline.transports.base import (
    BlobWriter,
    DestinationCapabilities,
    LayerContext,
    TransportContext,
)
from towline.transports.oci_archive_files import archive_error, open_archive
from towline.transports.oci_layout import LayoutSpec, parse_layout_spec, refuse_index_destination
from towline.transports.oci_layout_dest import LayoutDestination, sibling_name
from towline.transports.oci_layout_source import REF_NAME_ANNOTATION, LayoutSource

__all__ = [
    "CONTAINERD_NAME_ANNOTATION",
    "OCIArchiveDestination",
    "OCIArchiveReference",
    "names_from_annotations",
    "parse",
]

#: buildkit's and containerd's image name annotation (podman#12560).
CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name"


@dataclass(frozen=True)
class OCIArchiveReference:
    """``oci-archive:FILE[:REF]`` / ``oci-archive:FILE:@INDEX``."""

    spec: LayoutSpec
    transport: str = "oci-archive"

    def __str__(self) -> str:
        return f"oci-archive:{self.spec}"

    def new_source(self, context: TransportContext) -> LayoutSource:
        files = open_archive(Path(self.spec.path), str(self))
        return LayoutSource(files, self.spec, str(self), names_from_annotations)

    def new_destination(self, context: TransportContext) -> OCIArchiveDestination:
        refuse_index_destination(self.spec, str(self))
        return OCIArchiveDestination(
            Path(self.spec.path),
            self.spec.image or None,
            description=str(self),
            durable=context.options.durable,
        )


def parse(rest: str) -> OCIArchiveReference:
    """The reference of ``oci-archive:<rest>``."""
    return OCIArchiveReference(parse_layout_spec("oci-archive", rest))


def names_from_annotations(desc: Descriptor) -> list[str]:
    """libimage ``nameFromAnnotations`` + ``NormalizeName``: the store name of an entry."""
    name = desc.annotations.get(CONTAINERD_NAME_ANNOTATION) or desc.annotations.get(
        REF_NAME_ANNOTATION
    )
    return [str(normalize_name(name))] if name else []


class OCIArchiveDestination:
    """A tar of a layout receiving images; nothing appears at ``FILE`` before :meth:`commit`."""

    capabilities: DestinationCapabilities = LayoutDestination.capabilities

    def __init__(
        self, path: Path, ref_name: str | None, *, description: str, durable: bool = True
    ) -> None:
        self._path = Path(os.path.realpath(path))  # a symlink keeps pointing at the archive
        self._description = description
        self._durable = durable
        if self._path.is_dir():
            raise TransportError(f"{description}: {self._path} is a directory", slug="io")
        if not self._path.parent.is_dir():
            raise TransportError(
                f"{description}: the directory {self._path.parent} does not exist",
                slug="not_found",
            )
        # Beside FILE (one filesystem); the layout destination makes it with its first blob.
        self._staging: Path | None = sibling_name(self._path, "stage")
        # The stage is throwaway: the tar written from it is what must be durable.
        self._layout = LayoutDestination(
            self._staging, ref_name, description=description, durable=False
        )

    @property
    def description(self) -> str:
        return self._description

    def set_ref_name(self, name: str | None) -> None:
        """Name the images whose manifests are put from now on (``save`` of several images)."""
        self._layout.set_ref_name(name)

    def begin_image(self, manifest: ImageManifest, config_raw: bytes, config: ImageConfig) -> None:
        self._layout.begin_image(manifest, config_raw, config)

    def try_reuse_blob(self, desc: Descriptor, layer: LayerContext | None) -> bool:
        return self._layout.try_reuse_blob(desc, layer)

    def open_blob(self, desc: Descriptor, layer: LayerContext | None) -> BlobWriter:
        return self._layout.open_blob(desc, layer)

    def put_manifest(self, raw: bytes, media_type: str) -> None:
        self._layout.put_manifest(raw, media_type)

    def put_index(self, raw: bytes, media_type: str, *, complete: bool) -> None:
        self._layout.put_index(raw, media_type, complete=complete)

    def commit(self) -> None:
        staging = self._staging
        if staging is None:
            raise TransportError(f"{self._description}: the destination is closed", slug="closed")
        self._layout.commit()
        try:
            _native.write_tar(self._path, _tar_entries(staging), durable=self._durable)
        except TowlineError as exc:
            raise archive_error(exc, self._description) from exc
        self.abort()  # the stage is no longer needed

    def abort(self) -> None:
        staging, self._staging = self._staging, None
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _tar_entries(root: Path) -> list[tuple[str, bytes | Path]]:
    """The staged layout as tar members: index.json and oci-layout, then blobs/ (a sorted walk).

    The small files come first, so a reader streaming the tar finds them early.
    """
    entries: list[tuple[str, bytes | Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        relative = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if relative == "." else f"{relative}/"
        if prefix:
            entries.append((prefix, b""))  # a name ending in "/" with no bytes is a directory
        entries += [(prefix + name, Path(dirpath, name)) for name in sorted(filenames)]
    return entries
