"""The transport contract: everything the copy needs from where images come from and go to.

Modelled on containers/image's ``types.go``. A transport (``oci``, ``docker``,
``containers-storage``…) parses the text after ``transport:`` into an
:class:`ImageReference`, which opens an :class:`ImageSource` to read from or an
:class:`ImageDestination` to write to. :func:`towline.copy.copy_image` moves one
image between any pair, and knows nothing else about either side.

Who checks what: sources hand over raw bytes and are never trusted. The copy
verifies every manifest and config it reads against its digest, once; blob
bytes pass through a :class:`BlobWriter` that a destination opens, which is one
of the native sinks (``towline._native.LayerSink``/``BlobSink``) and checks size,
digest (and diff_id) before anything becomes visible. A destination therefore
never needs to check again, and a source never needs to check at all.

MUST / SHOULD below are requirements on implementations, as in c/image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from towline.events import Reporter
    from towline.manifest import Descriptor, ImageConfig, ImageManifest
    from towline.options import PullOptions
    from towline.store import Store
    from towline.transports.docker import RegistryAccess

__all__ = [
    "BlobSink",
    "BlobWriter",
    "DestinationCapabilities",
    "ImageDestination",
    "ImageReference",
    "ImageSource",
    "LayerContext",
    "ProgressCallback",
    "SourceCapabilities",
    "TransportContext",
]

#: Called with the number of bytes that just arrived, from the thread that copies them.
ProgressCallback = Callable[[int], None]


class BlobSink(Protocol):
    """Where a blob's bytes go, in order: the native sinks, or anything like them."""

    def write(self, data: bytes, /) -> object:
        """Take the next chunk of the blob."""

    @property
    def bytes_written(self) -> int:
        """How many bytes were taken so far: where a resumed read continues."""


class BlobWriter(BlobSink, Protocol):
    """A verifying sink a destination opened for one blob.

    :meth:`finish` MUST check size and digest (and, for a layer with a known
    diff_id, the diff_id) before the blob becomes visible at the destination;
    :meth:`abort` MUST leave nothing behind. ``_native.LayerSink`` and
    ``_native.BlobSink`` are BlobWriters.
    """

    def finish(self) -> Mapping[str, Any]:
        """Verify and publish the blob; the mapping is the native sink's result."""

    def abort(self) -> None:
        """Drop everything written so far; safe to call more than once."""


@dataclass(frozen=True)
class SourceCapabilities:
    """What a source allows its reader to do.

    ``parallel_reads``: :meth:`ImageSource.get_blob` may run on several threads at
    once (a registry, a layout directory; not a compressed stream read in order).
    ``resumable``: an interrupted :meth:`ImageSource.get_blob` continues from the
    sink's ``bytes_written`` instead of starting over (HTTP ``Range``).
    """

    parallel_reads: bool = False
    resumable: bool = False


@dataclass(frozen=True)
class DestinationCapabilities:
    """What a destination can store.

    ``manifest_types``: single-image manifest media types it stores, preferred
    first; a manifest of another type is converted by the copy (and the writer
    says so). Empty means any. ``index_types``: index media types it stores; empty
    means it holds one image per reference, so the copy picks an instance from an
    index (as for the platform of a pull). ``parallel_writes``: several blobs may
    be written at once.
    """

    manifest_types: tuple[str, ...] = ()
    index_types: tuple[str, ...] = ()
    parallel_writes: bool = False


@dataclass(frozen=True)
class LayerContext:
    """What the copy knows about a layer blob: its position and its verified diff_id."""

    index: int
    diff_id: str


class ImageSource(Protocol):
    """One image, or one index of images, open for reading."""

    @property
    def description(self) -> str:
        """How messages name the source: its transport name, e.g. ``oci:/srv/layout:app``."""

    @property
    def capabilities(self) -> SourceCapabilities:
        """See :class:`SourceCapabilities`."""

    def get_manifest(self, digest: str | None = None) -> tuple[bytes, str]:
        """The raw manifest and its media type.

        ``None`` asks for the top-level manifest, which MAY be an index; a digest
        asks for one instance of that index. Implementations MUST return the bytes
        exactly as stored (the copy checks their digest) and SHOULD refuse a
        manifest larger than 4 MiB before reading it all.
        """

    def get_blob(
        self,
        digest: str,
        size: int | None,
        sink: BlobSink,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Stream the blob ``digest`` (``size`` bytes when known) into ``sink``.

        MUST deliver each byte once, in order, and never more than ``size`` bytes;
        need not verify anything. A ``resumable`` source SHOULD continue an
        interrupted stream from ``sink.bytes_written``.
        """

    def read_blob(self, digest: str, max_size: int) -> bytes:
        """A small blob (a config) as bytes; MUST refuse one larger than ``max_size``."""

    def image_names(self) -> list[str]:
        """The names an image copied from here gets in the store, as libimage names it.

        Empty: the image is stored unnamed (known by its ID). Names are normalized
        (``host/path:tag``).
        """

    def close(self) -> None:
        """Release files, connections and temporary data. Safe to call twice."""


class ImageDestination(Protocol):
    """A place to write images to, until :meth:`commit` or :meth:`abort`.

    The copy calls, per image: :meth:`begin_image`, then for every blob
    :meth:`try_reuse_blob` and, when that is False, :meth:`open_blob` (layers
    possibly in parallel when both sides allow it), then :meth:`put_manifest`.
    After the image(s) of an index, :meth:`put_index`. Last, the caller calls
    :meth:`commit` once (so one archive may receive several images), or
    :meth:`abort`. Nothing MUST be visible at the destination before commit where
    the format allows it (a layout directory gains verified blobs as it goes, as
    c/image's; an archive or the store shows nothing until commit).
    """

    @property
    def description(self) -> str:
        """How messages name the destination, e.g. ``oci-archive:/tmp/a.tar``."""

    @property
    def capabilities(self) -> DestinationCapabilities:
        """See :class:`DestinationCapabilities`."""

    def begin_image(self, manifest: ImageManifest, config_raw: bytes, config: ImageConfig) -> None:
        """Start an image whose (verified) manifest and config are these.

        Called before any of its blobs; the store uses the config's diff_ids to
        name and verify layers.
        """

    def try_reuse_blob(self, desc: Descriptor, layer: LayerContext | None) -> bool:
        """True when the destination already holds this blob (or the layer it is),
        so it need not be copied. MUST NOT return True for content it has not verified."""

    def open_blob(self, desc: Descriptor, layer: LayerContext | None) -> BlobWriter:
        """A verifying sink for one blob of the current image (``layer`` None for the config)."""

    def put_manifest(self, raw: bytes, media_type: str) -> None:
        """The current image's manifest, exactly these bytes (already verified or converted)."""

    def put_index(self, raw: bytes, media_type: str, *, complete: bool) -> None:
        """The index the image(s) came from.

        ``complete``: every instance it names was copied, so it may be stored as
        the top-level manifest. Otherwise only the chosen instance was: a
        destination MAY record the index's digest (the store does, as podman) but
        MUST NOT present it as the image.
        """

    def commit(self) -> None:
        """Make everything written visible, atomically where the format allows."""

    def abort(self) -> None:
        """Remove what this destination wrote; safe after a failed or partial copy."""


class ImageReference(Protocol):
    """A parsed ``transport:reference`` name."""

    @property
    def transport(self) -> str:
        """The transport's name, e.g. ``"oci-archive"``."""

    def __str__(self) -> str:
        """The full name, ``transport:reference``, as a user would type it."""

    def new_source(self, context: TransportContext) -> ImageSource:
        """Open the image (or index) this reference names for reading.

        MUST raise :class:`~towline.errors.TransportError` (or a subclass) naming the
        reference when it cannot be opened.
        """

    def new_destination(self, context: TransportContext) -> ImageDestination:
        """Open a destination to write an image to this reference."""


@dataclass
class TransportContext:
    """What transports may need from the caller: options, configuration, the store.

    ``registry`` is set for operations that may reach registries (the docker
    transport); ``store`` for ``containers-storage:``; ``tmp_dir`` is where a
    transport MAY stage temporary files (a daemon's stream); ``reporter`` gets
    progress lines.
    """

    options: PullOptions
    reporter: Reporter
    tmp_dir: Path
    registry: RegistryAccess | None = None
    store: Store | None = None
    env: Mapping[str, str] = field(default_factory=dict)
