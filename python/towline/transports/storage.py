"""The ``containers-storage:`` transport: towline's own store, as a source and a destination.

As a destination it is where every pull ends (c/image ``storage_dest.go``): layers
stream through a native ``LayerSink`` that verifies and unpacks them into
``layers/<chain-id>``, a layer the store already has is reused (and unpacked from
its stored blob when it was kept packed), and :meth:`StorageDestination.commit`
records each image in one transaction. Everything it looks for or writes is held
by a store lease first, so no concurrent failure or removal takes it away before
the commit; :meth:`StorageDestination.abort` removes what it wrote.

As a source it serves an image of the store, blob by blob, for ``copy`` and
``save``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from towline import _native
from towline.config import RegistriesConf
from towline.errors import ImageUnknownError, StoreError, TransportError
from towline.lookup import find_local
from towline.manifest import (
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    ImageManifest,
    compute_digest,
    detect_media_type,
)
from towline.reference import parse_reference
from towline.store import LayerRecord, Lease, Store, chain_ids
from towline.store.records import ImageRecord
from towline.transports.base import (
    BlobSink,
    BlobWriter,
    DestinationCapabilities,
    LayerContext,
    ProgressCallback,
    SourceCapabilities,
    TransportContext,
)
from towline.unpack import unpack_stored_layer

__all__ = ["StorageDestination", "StorageReference", "StorageSource", "parse"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class StorageReference:
    """``containers-storage:NAME``: an image of the store by name, ID or ID prefix."""

    name: str
    transport: str = "containers-storage"

    def __str__(self) -> str:
        return f"containers-storage:{self.name}"

    def new_source(self, context: TransportContext) -> StorageSource:
        store = _store_of(context, self)
        registries = context.registry.registries if context.registry else RegistriesConf()
        found = find_local(store, self.name, registries)
        if found is None:
            raise ImageUnknownError(f"{self.name}: image not known in {store.root}")
        return StorageSource(store, found[0], str(self))

    def new_destination(self, context: TransportContext) -> StorageDestination:
        # As c/storage's ParseStoreReference: docker.io normalisation, :latest.
        names = [str(parse_reference(self.name))] if self.name else []
        return StorageDestination(
            _store_of(context, self),
            names,
            unpack=context.options.unpack,
            durable=context.options.durable,
        )


def parse(rest: str) -> StorageReference:
    """The reference of ``containers-storage:<rest>``."""
    return StorageReference(rest)


def _store_of(context: TransportContext, ref: StorageReference) -> Store:
    if context.store is None:
        raise TransportError(f"{ref}: no store was given to reach it", slug="no_store")
    return context.store


# === the store as a source


class StorageSource:
    """One stored image, read blob by blob; a lease keeps its files while it is open."""

    capabilities = SourceCapabilities(parallel_reads=True)

    def __init__(self, store: Store, record: ImageRecord, description: str) -> None:
        self._store = store
        self._record = record
        self._description = description
        self._lease: Lease | None = store.lease()
        blobs = [record.manifest_digest, record.config_digest]
        blobs += [layer.blob_digest for layer in record.layers]
        self._lease.add(blobs=blobs, layers=[layer.chain_id for layer in record.layers])

    @property
    def description(self) -> str:
        return self._description

    @property
    def record(self) -> ImageRecord:
        """The stored image this source reads."""
        return self._record

    def image_names(self) -> list[str]:
        return list(self._record.names)

    def get_manifest(self, digest: str | None = None) -> tuple[bytes, str]:
        # The image's own manifest: the store keeps one platform of a list, as podman's.
        if digest is None:
            return self._read(self._record.manifest_digest), self._record.manifest_media_type
        raw = self._read(digest)
        return raw, detect_media_type(raw, None)

    def read_blob(self, digest: str, max_size: int) -> bytes:
        data = self._read(digest)
        if len(data) > max_size:
            raise TransportError(
                f"{self._description}: blob {digest} is larger than {max_size} bytes",
                slug="too_large",
            )
        return data

    def get_blob(
        self,
        digest: str,
        size: int | None,
        sink: BlobSink,
        progress: ProgressCallback | None = None,
    ) -> None:
        if not self._store.has_blob(digest):
            raise TransportError(
                f"{self._description}: blob {digest} is not stored (the layer is kept "
                "unpacked only); pull the image again to copy it",
                slug="blob_unknown",
            )
        with open(self._store.blob_path(digest), "rb") as blob:
            while chunk := blob.read(_CHUNK):
                sink.write(chunk)
                if progress is not None:
                    progress(len(chunk))

    def _read(self, digest: str) -> bytes:
        try:
            return self._store.read_blob(digest)
        except StoreError as exc:
            raise TransportError(f"{self._description}: {exc}", slug="blob_unknown") from exc

    def close(self) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None


# === the store as a destination


@dataclass
class _Pending:
    """One image begun at the destination, until it is committed."""

    manifest: ImageManifest
    config: ImageConfig
    chains: list[str]
    uncompressed: dict[int, int] = field(default_factory=dict)
    manifest_digest: str | None = None
    manifest_media_type: str | None = None
    list_digest: str | None = None


class _LayerWriter:
    """A LayerSink whose result (the uncompressed size) is noted for the image record."""

    def __init__(self, sink: _native.LayerSink, pending: _Pending, index: int) -> None:
        self._sink = sink
        self._pending = pending
        self._index = index
        self.write = sink.write  # the hot path goes straight to the native sink

    @property
    def bytes_written(self) -> int:
        return self._sink.bytes_written

    def finish(self) -> Mapping[str, Any]:
        result = self._sink.finish()
        self._pending.uncompressed[self._index] = result["uncompressed_size"] or 0
        return result

    def abort(self) -> None:
        self._sink.abort()


class StorageDestination:
    """The store, receiving images: verified, unpacked (unless ``unpack`` is off), leased.

    ``names`` are given to every image committed. After :meth:`commit`,
    :attr:`records` holds the stored images, in the order they were begun.
    """

    capabilities = DestinationCapabilities(
        manifest_types=(OCI_MANIFEST, DOCKER_MANIFEST),
        index_types=(),
        parallel_writes=True,
    )

    def __init__(
        self, store: Store, names: Sequence[str], *, unpack: bool = True, durable: bool = True
    ) -> None:
        self._store = store
        self._names = list(names)
        self._unpack = unpack
        self._durable = durable
        self._lease: Lease | None = store.lease()
        self._pending: dict[str, _Pending] = {}  # by config digest (the image ID)
        self._current: _Pending | None = None
        self._mutex = threading.Lock()
        self.records: list[ImageRecord] = []

    @property
    def description(self) -> str:
        return f"containers-storage:{self._names[0] if self._names else ''}"

    @property
    def store(self) -> Store:
        """The store written to."""
        return self._store

    def _lease_now(self) -> Lease:
        if self._lease is None:
            raise StoreError(f"{self.description}: the destination is closed", slug="closed")
        return self._lease

    def begin_image(self, manifest: ImageManifest, config_raw: bytes, config: ImageConfig) -> None:
        chains = chain_ids(config.diff_ids)
        # Held before the store is searched for any of them.
        self._lease_now().add(
            blobs=[manifest.config.digest, *(layer.digest for layer in manifest.layers)],
            layers=chains,
        )
        pending = _Pending(manifest, config, chains)
        with self._mutex:
            self._pending[manifest.config.digest] = pending
            self._current = pending

    def _image(self) -> _Pending:
        if self._current is None:
            raise StoreError(f"{self.description}: begin_image was not called", slug="internal")
        return self._current

    def try_reuse_blob(self, desc: Descriptor, layer: LayerContext | None) -> bool:
        pending = self._image()
        if layer is None:
            return self._store.has_blob(desc.digest)
        chain = pending.chains[layer.index]
        existing = self._store.layer_record(chain)
        if existing is None:
            return False
        if existing.blob_digest != desc.digest:
            # Another compression of the same layer: hold its blob before looking at it.
            self._lease_now().add(blobs=[existing.blob_digest])
        unpacked = self._store.is_unpacked(chain)
        if not (unpacked or self._store.has_blob(existing.blob_digest)):
            return False
        if self._unpack and not unpacked:
            unpack_stored_layer(self._store, existing, durable=self._durable)
        pending.uncompressed[layer.index] = existing.uncompressed_size
        return True

    def open_blob(self, desc: Descriptor, layer: LayerContext | None) -> BlobWriter:
        store = self._store
        if layer is None:
            return _native.BlobSink(
                store.blob_path(desc.digest), desc.digest, desc.size, durable=self._durable
            )
        pending = self._image()
        chain = pending.chains[layer.index]
        sink = _native.LayerSink(
            store.blob_path(desc.digest),
            store.layer_path(chain) if self._unpack else None,
            desc.digest,
            desc.size,
            layer.diff_id,
            durable=self._durable,
        )
        return _LayerWriter(sink, pending, layer.index)

    def put_manifest(self, raw: bytes, media_type: str) -> None:
        pending = self._image()
        digest = compute_digest(raw)
        self._write_small(digest, raw)
        pending.manifest_digest = digest
        pending.manifest_media_type = media_type

    def put_index(self, raw: bytes, media_type: str, *, complete: bool) -> None:
        # The store keeps one image per platform and records the list's digest with it.
        digest = compute_digest(raw)
        self._write_small(digest, raw)
        with self._mutex:
            for pending in self._pending.values():
                if pending.list_digest is None:
                    pending.list_digest = digest

    def _write_small(self, digest: str, data: bytes) -> None:
        self._lease_now().add(blobs=[digest])
        if not self._store.has_blob(digest):
            self._store.write_blob(digest, data)

    def commit(self) -> None:
        lease = self._lease_now()
        records = []
        for pending in self._pending.values():
            records.append(self._commit_one(pending, lease))
        self.records = records
        self._release()

    def _commit_one(self, pending: _Pending, lease: Lease) -> ImageRecord:
        manifest, config = pending.manifest, pending.config
        if pending.manifest_digest is None or pending.manifest_media_type is None:
            raise StoreError(f"{self.description}: no manifest was written", slug="internal")
        layers = [
            LayerRecord(
                chain_id=pending.chains[i],
                diff_id=config.diff_ids[i],
                parent=pending.chains[i - 1] if i else None,
                blob_digest=desc.digest,
                compressed_size=desc.size,
                uncompressed_size=pending.uncompressed.get(i, 0),
                media_type=desc.media_type,
            )
            for i, desc in enumerate(manifest.layers)
        ]
        return self._store.commit_image(
            image_id=manifest.config.digest,
            names=self._names,
            manifest_digest=pending.manifest_digest,
            manifest_media_type=pending.manifest_media_type,
            config_digest=manifest.config.digest,
            list_digest=pending.list_digest,
            platform=config.platform,
            created=config.created or "",
            layers=layers,
            require_unpacked=self._unpack,
            lease=lease,
        )

    def abort(self) -> None:
        lease = self._lease
        if lease is None:
            return
        try:
            # The lease names everything this copy wrote or adopted; what no image uses
            # and no other writer holds goes, so the store is left as it was.
            self._store.discard_unreferenced(lease.layers, lease.blobs, lease=lease)
        finally:
            self._release()

    def _release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()
