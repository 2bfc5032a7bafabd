"""Image and Layer: what callers get back from a pull or a lookup."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from towline import _native
from towline.errors import StoreError
from towline.store import Store
from towline.store.records import ImageRecord
from towline.unpack import unpack_stored_layer

__all__ = ["Image", "Layer"]


@dataclass(frozen=True)
class Layer:
    """One layer of an image: its blob as pulled and its uncompressed content."""

    diff_id: str
    digest: str
    size: int
    uncompressed_size: int
    media_type: str
    chain_id: str


class Image:
    """An image in a towline store.

    ``id`` is the 64-hex config digest (podman's image ID), ``digest`` the
    manifest digest it was pulled by, ``names`` its names (may be empty when a
    newer pull took its tag), ``config`` the parsed image config.
    """

    def __init__(self, record: ImageRecord, store: Store) -> None:
        self._record = record
        self._store = store

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def names(self) -> list[str]:
        return list(self._record.names)

    @property
    def digest(self) -> str:
        return self._record.digest

    @property
    def digests(self) -> list[str]:
        """Every manifest digest known for the image (instance and list)."""
        return list(self._record.digests)

    @property
    def manifest_digest(self) -> str:
        """The digest of the image's own manifest (not the list's)."""
        return self._record.manifest_digest

    @property
    def platform(self) -> str:
        return self._record.platform

    @property
    def created(self) -> str:
        return self._record.created

    @property
    def size(self) -> int:
        """Sum of the uncompressed layer sizes."""
        return self._record.size

    @property
    def layers(self) -> list[Layer]:
        return [
            Layer(
                diff_id=x.diff_id,
                digest=x.blob_digest,
                size=x.compressed_size,
                uncompressed_size=x.uncompressed_size,
                media_type=x.media_type,
                chain_id=x.chain_id,
            )
            for x in self._record.layers
        ]

    @cached_property
    def config(self) -> dict[str, Any]:
        """The image config (OCI/Docker JSON), parsed."""
        parsed: dict[str, Any] = json.loads(self._store.read_blob(self._record.config_digest))
        return parsed

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """The image manifest, parsed."""
        parsed: dict[str, Any] = json.loads(self._store.read_blob(self._record.manifest_digest))
        return parsed

    def unpack(self, dest: str | os.PathLike[str]) -> Path:
        """Write the image's root filesystem to ``dest`` (new or empty directory).

        Layers are applied in order, whiteouts and opaque directories honoured.
        Returns ``dest`` as a Path.
        """
        target = Path(dest)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise StoreError(
                f"cannot unpack {self.id[:12]} into {target}: it exists and is not an empty "
                "directory; give a new or empty directory",
                slug="destination_not_empty",
            )
        for layer in self._record.layers:
            unpack_stored_layer(self._store, layer)  # no-op for layers already unpacked
        layer_dirs = [self._store.layer_path(x.chain_id) for x in self._record.layers]
        _native.apply_layers([str(d) for d in layer_dirs], target)
        return target

    def __repr__(self) -> str:
        names = ", ".join(self._record.names) or "<none>"
        return f"<towline.Image {self.id[:12]} {names} {self._record.platform}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)
