"""THE data path: one image from any :class:`ImageSource` into the store.

Knows no concrete transport. Reads the manifest (picking the platform from an
index), the config, then streams every missing layer through a native
``LayerSink`` (digest, size and diff_id verified, unpacked by chain ID), and
commits the image in one store transaction. Everything the copy looks for or writes
in the store is held by its lease first, so no concurrent failure or removal takes it
away before the commit; a commit that finds a file gone anyway fetches it again. If
anything fails, or the user interrupts, what this copy wrote is removed again: the store
is left as it was.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from towline import _native
from towline.errors import StoreError, TowlineError, TransportError
from towline.events import Reporter
from towline.manifest import (
    ImageConfig,
    ImageManifest,
    compute_digest,
    parse_image_config,
    parse_manifest,
    verify_digest,
)
from towline.options import PullOptions
from towline.platform import Platform, choose_instance, normalize_platform, parse_platform
from towline.store import LayerRecord, Lease, Store, chain_ids
from towline.store.records import ImageRecord
from towline.transports.base import ImageSource
from towline.unpack import unpack_stored_layer
from towline.untrusted_json import load_object

__all__ = ["CONFIG_SIZE_LIMIT", "copy_image_to_store"]

#: Largest config blob accepted (as containers/image).
CONFIG_SIZE_LIMIT = 4 << 20

#: Commits tried when files vanish before the commit, each after fetching them again.
COMMIT_ATTEMPTS = 3
# Slugs of commit_image's "a file it needs is not in the store".
_FILE_MISSING = frozenset({"blob_unknown", "layer_unknown"})

_log = logging.getLogger(__name__)


class _Cancelled(Exception):
    """Raised inside a download's progress callback to stop it (another layer failed)."""


def copy_image_to_store(
    source: ImageSource,
    store: Store,
    *,
    names: Sequence[str],
    wanted: Sequence[Platform],
    expected: Platform | None,
    options: PullOptions,
    reporter: Reporter,
    parallel: int,
) -> ImageRecord:
    """Copy the image ``source`` names (for ``wanted`` platforms) into ``store``.

    ``expected`` is the platform to warn about when the config says otherwise.
    """
    with store.lease() as lease:
        copier = _Copier(source, store, lease, options, reporter, parallel)
        try:
            return copier.run(names, wanted, expected)
        except BaseException:
            # The lease names everything this copy wrote or adopted; what no image uses
            # and no other pull holds goes, so the store is left as it was.
            store.discard_unreferenced(lease.layers, lease.blobs, lease=lease)
            raise


@dataclass
class _Picked:
    """The single-image manifest to copy, and the index it was picked from, if any."""

    manifest: ImageManifest
    raw: bytes
    list_raw: bytes | None = None
    list_digest: str | None = None


@dataclass
class _Copier:
    """One copy in progress: the source, the store and the lease on what it uses there."""

    source: ImageSource
    store: Store
    lease: Lease
    options: PullOptions
    reporter: Reporter
    parallel: int
    cancel: threading.Event = field(default_factory=threading.Event)

    def run(
        self, names: Sequence[str], wanted: Sequence[Platform], expected: Platform | None
    ) -> ImageRecord:
        picked = self.pick_manifest(wanted)
        manifest = picked.manifest
        manifest_digest = compute_digest(picked.raw)
        config_digest = manifest.config.digest
        small: list[tuple[str, bytes]] = [(manifest_digest, picked.raw)]
        if picked.list_digest is not None and picked.list_raw is not None:
            small.append((picked.list_digest, picked.list_raw))
        # Held before the store is searched for any of them (the config is read from it).
        layer_blobs = [x.digest for x in manifest.layers]
        self.lease.add(blobs=[config_digest, *(d for d, _ in small), *layer_blobs])
        config_raw, config = self.read_config(manifest)
        _warn_platform(config, expected, self.reporter)
        small.insert(0, (config_digest, config_raw))
        self.lease.add(layers=chain_ids(config.diff_ids))

        # === layers, config, manifest and the image record, in one commit
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            layers = self.copy_layers(manifest, config)
            for digest, data in small:
                if not self.store.has_blob(digest):
                    self.store.write_blob(digest, data)
            if attempt == 1:
                self.reporter.blob_done(config_digest, "config", manifest.config.size)
                self.reporter.line("Writing manifest to image destination")
            try:
                return self.commit(names, picked, manifest_digest, config, layers)
            except StoreError as exc:
                # Leased files are kept by towline; something else removed one. Copying
                # again fetches (or unpacks) only what is missing.
                if exc.slug not in _FILE_MISSING or attempt == COMMIT_ATTEMPTS:
                    raise
                _log.warning("copying again what is missing (attempt %d): %s", attempt + 1, exc)
        raise AssertionError("unreachable")

    def commit(
        self,
        names: Sequence[str],
        picked: _Picked,
        manifest_digest: str,
        config: ImageConfig,
        layers: Sequence[LayerRecord],
    ) -> ImageRecord:
        manifest = picked.manifest
        return self.store.commit_image(
            image_id=manifest.config.digest,
            names=list(names),
            manifest_digest=manifest_digest,
            manifest_media_type=manifest.media_type,
            config_digest=manifest.config.digest,
            list_digest=picked.list_digest,
            platform=config.platform,
            created=config.created or "",
            layers=layers,
            require_unpacked=self.options.unpack,
            lease=self.lease,
        )

    # === manifest (and the platform's instance when it is an index)
    def pick_manifest(self, wanted: Sequence[Platform]) -> _Picked:
        source = self.source
        raw, media_type = source.get_manifest()
        parsed = parse_manifest(raw, media_type)
        if isinstance(parsed, ImageManifest):
            return _Picked(parsed, raw)
        entry = choose_instance(load_object(raw), wanted, media_type=media_type)
        instance = str(entry["digest"])
        instance_raw, instance_type = source.get_manifest(instance)
        verify_digest(instance_raw, instance, f"manifest {instance} of {source.description}")
        chosen = parse_manifest(instance_raw, instance_type)
        if not isinstance(chosen, ImageManifest):
            raise TransportError(
                f"{source.description}: index entry {instance} is itself an index; "
                "nested indexes are not supported",
                slug="invalid_manifest",
            )
        return _Picked(chosen, instance_raw, raw, compute_digest(raw))

    # === config
    def read_config(self, manifest: ImageManifest) -> tuple[bytes, ImageConfig]:
        self.reporter.line("Getting image source signatures")
        desc = manifest.config
        if self.store.has_blob(desc.digest):
            raw = self.store.read_blob(desc.digest)
        else:
            raw = self.source.get_config(desc.digest, CONFIG_SIZE_LIMIT)
        verify_digest(raw, desc.digest, f"config of {self.source.description}")
        config = parse_image_config(raw, f"image config {desc.digest} of {self.source.description}")
        if len(config.diff_ids) != len(manifest.layers):
            raise TransportError(
                f"{self.source.description}: the manifest lists {len(manifest.layers)} layers "
                f"but the config has {len(config.diff_ids)} diff_ids; the image is broken at "
                "its source",
                slug="invalid_manifest",
            )
        return raw, config

    # === layers
    def copy_layers(self, manifest: ImageManifest, config: ImageConfig) -> list[LayerRecord]:
        store = self.store
        chains = chain_ids(config.diff_ids)
        records: list[LayerRecord | None] = [None] * len(chains)

        def record(i: int, uncompressed_size: int) -> LayerRecord:
            desc = manifest.layers[i]
            return LayerRecord(
                chain_id=chains[i],
                diff_id=config.diff_ids[i],
                parent=chains[i - 1] if i else None,
                blob_digest=desc.digest,
                compressed_size=desc.size,
                uncompressed_size=uncompressed_size,
                media_type=desc.media_type,
            )

        todo = []
        local: list[LayerRecord] = []
        for i, desc in enumerate(manifest.layers):
            existing = store.layer_record(chains[i])
            if existing is not None:
                # Stored from another blob (compression): held before it is looked for.
                self.lease.add(blobs=[existing.blob_digest])
            unpacked = existing is not None and store.is_unpacked(chains[i])
            if existing is not None and (unpacked or store.has_blob(existing.blob_digest)):
                records[i] = record(i, existing.uncompressed_size)
                self.reporter.blob_skipped(desc.digest, "layer")
                if self.options.unpack and not unpacked:
                    local.append(existing)  # stored as a blob only: unpack it, no download
            else:
                todo.append(i)
        for existing in local:
            unpack_stored_layer(store, existing, durable=self.options.durable)

        def fetch(i: int) -> LayerRecord:
            desc = manifest.layers[i]
            result = self.fetch_layer(desc.digest, desc.size, chains[i], config.diff_ids[i])
            self.reporter.blob_done(desc.digest, "layer", desc.size)
            return record(i, result["uncompressed_size"] or 0)

        if todo:
            workers = max(1, min(self.parallel, len(todo)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures: dict[Future[LayerRecord], int] = {pool.submit(fetch, i): i for i in todo}
                try:
                    for future in as_completed(futures):
                        records[futures[future]] = future.result()
                except BaseException:
                    # Stop the other downloads at their next chunk; the pool waits for them.
                    self.cancel.set()
                    for future in futures:
                        future.cancel()
                    raise
        return [r for r in records if r is not None]

    def fetch_layer(self, digest: str, size: int, chain: str, diff_id: str) -> _native._SinkResult:
        self.reporter.blob_started(digest, "layer", size)
        # A server that ignores Range cannot resume: start the blob over, once.
        for attempt in (1, 2):
            done = 0

            def progress(n: int) -> None:
                nonlocal done
                if self.cancel.is_set():
                    raise _Cancelled
                done += n
                self.reporter.blob_advanced(digest, "layer", done, size)

            sink = _native.LayerSink(
                self.store.blob_path(digest),
                self.store.layer_path(chain) if self.options.unpack else None,
                digest,
                size,
                diff_id,
                durable=self.options.durable,
            )
            try:
                self.source.copy_blob(digest, size, sink, progress)
                return sink.finish()
            except TransportError as exc:
                sink.abort()
                if exc.slug != "range_not_supported" or attempt == 2:
                    raise
            except BaseException:
                sink.abort()
                raise
        raise AssertionError("unreachable")


def _warn_platform(config: ImageConfig, expected: Platform | None, reporter: Reporter) -> None:
    if expected is None:
        return
    try:
        actual = normalize_platform(parse_platform(config.platform))
    except TowlineError:  # a config with a nonsense platform: report it as it is
        reporter.line(
            f"WARNING: image platform ({config.platform}) does not match the expected "
            f"platform ({expected})"
        )
        return
    want = normalize_platform(expected)
    if (actual.os, actual.architecture) != (want.os, want.architecture) or (
        want.variant and actual.variant and actual.variant != want.variant
    ):
        reporter.line(
            f"WARNING: image platform ({actual}) does not match the expected platform ({want})"
        )
