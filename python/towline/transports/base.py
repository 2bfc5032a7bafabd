"""What the copy pipeline needs from a place images come from.

Like containers/image's ``types.ImageSource``: a source hands over raw
manifests and raw blob bytes, nothing more. Verification of every byte is the
sinks' job (``towline._native``), so a source never needs to be trusted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from towline.registry.blob_reader import BlobSinkLike

__all__ = ["ImageSource"]


class ImageSource(Protocol):
    """One image (or image index) at one transport location, open for reading."""

    @property
    def description(self) -> str:
        """How errors and progress name the source, e.g. ``docker://quay.io/x:1``."""

    def get_manifest(self, digest: str | None = None) -> tuple[bytes, str]:
        """The raw manifest and its media type.

        ``None`` asks for the top-level manifest (which MAY be an index); a digest
        asks for one instance of an index. Implementations MUST return the bytes
        exactly as stored: their digest is checked by the caller.
        """

    def get_config(self, digest: str, max_size: int) -> bytes:
        """The config blob, at most ``max_size`` bytes."""

    def copy_blob(
        self,
        digest: str,
        size: int | None,
        sink: BlobSinkLike,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Stream the blob into ``sink`` (``progress`` gets byte counts as they arrive).

        Implementations SHOULD resume an interrupted stream from
        ``sink.bytes_written`` instead of starting over.
        """

    def close(self) -> None:
        """Release connections."""
