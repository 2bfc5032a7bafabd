"""THE data path: one image from any :class:`ImageSource` into the store.

Knows no concrete transport. Reads the manifest (picking the platform from an
index), the config, then streams every missing layer through a native
``LayerSink`` (digest, size and diff_id verified, unpacked by chain ID), and
commits the image in one store transaction. If anything fails, or the user
interrupts, what this copy wrote is removed again: the store is left as it was.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from towline import _native
from towline.errors import TowlineError, TransportError
from towline.events import Reporter
from towline.manifest import (
    ImageConfig,
    ImageIndex,
    ImageManifest,
    compute_digest,
    parse_image_config,
    parse_manifest,
    verify_digest,
)
from towline.options import PullOptions
from towline.platform import Platform, choose_instance, normalize_platform, parse_platform
from towline.store import LayerRecord, Store, chain_ids
from towline.store.records import ImageRecord
from towline.transports.base import ImageSource
from towline.unpack import unpack_stored_layer

__all__ = ["CONFIG_SIZE_LIMIT", "copy_image_to_store"]

#: Largest config blob accepted (as containers/image).
CONFIG_SIZE_LIMIT = 4 << 20


class _Cancelled(Exception):
    """Raised inside a download's progress callback to stop it (another layer failed)."""


@dataclass
class _Written:
    """What this copy put in the store, to take out again if the copy fails."""

    chains: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, chain: str | None, blob: str) -> None:
        with self.lock:
            if chain is not None:
                self.chains.append(chain)
            self.blobs.append(blob)


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
    written = _Written()
    try:
        return _copy(source, store, names, wanted, expected, options, reporter, parallel, written)
    except BaseException:
        store.discard_unreferenced(written.chains, written.blobs)
        raise


def _copy(
    source: ImageSource,
    store: Store,
    names: Sequence[str],
    wanted: Sequence[Platform],
    expected: Platform | None,
    options: PullOptions,
    reporter: Reporter,
    parallel: int,
    written: _Written,
) -> ImageRecord:
    # === manifest (and the platform's instance when it is an index)
    raw, media_type = source.get_manifest()
    parsed = parse_manifest(raw, media_type)
    list_raw: bytes | None = None
    list_digest: str | None = None
    if isinstance(parsed, ImageIndex):
        list_raw, list_digest = raw, compute_digest(raw)
        entry = choose_instance(json.loads(raw), wanted, media_type=media_type)
        instance = str(entry["digest"])
        raw, media_type = source.get_manifest(instance)
        verify_digest(raw, instance, f"manifest {instance} of {source.description}")
        parsed = parse_manifest(raw, media_type)
        if not isinstance(parsed, ImageManifest):
            raise TransportError(
                f"{source.description}: index entry {instance} is itself an index; "
                "nested indexes are not supported",
                slug="invalid_manifest",
            )
    manifest: ImageManifest = parsed
    manifest_digest = compute_digest(raw)

    # === config
    reporter.line("Getting image source signatures")
    config_desc = manifest.config
    if store.has_blob(config_desc.digest):
        config_raw = store.read_blob(config_desc.digest)
    else:
        config_raw = source.get_config(config_desc.digest, CONFIG_SIZE_LIMIT)
    verify_digest(config_raw, config_desc.digest, f"config of {source.description}")
    config = parse_image_config(config_raw)
    if len(config.diff_ids) != len(manifest.layers):
        raise TransportError(
            f"{source.description}: the manifest lists {len(manifest.layers)} layers but the "
            f"config has {len(config.diff_ids)} diff_ids; the image is broken at its source",
            slug="invalid_manifest",
        )
    _warn_platform(config, expected, reporter)

    # === layers
    layers = _copy_layers(source, store, manifest, config, options, reporter, parallel, written)

    # === config, manifest and the image record, in one commit
    for digest, data in (
        (config_desc.digest, config_raw),
        (manifest_digest, raw),
        *([(list_digest, list_raw)] if list_digest and list_raw else []),
    ):
        if not store.has_blob(digest):
            written.add(None, digest)
            store.write_blob(digest, data)
    reporter.blob_done(config_desc.digest, "config", config_desc.size)
    reporter.line("Writing manifest to image destination")
    return store.commit_image(
        image_id=config_desc.digest,
        names=list(names),
        manifest_digest=manifest_digest,
        manifest_media_type=manifest.media_type,
        config_digest=config_desc.digest,
        list_digest=list_digest,
        platform=config.platform,
        created=config.created or "",
        layers=layers,
        require_unpacked=options.unpack,
    )


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


def _copy_layers(
    source: ImageSource,
    store: Store,
    manifest: ImageManifest,
    config: ImageConfig,
    options: PullOptions,
    reporter: Reporter,
    parallel: int,
    written: _Written,
) -> list[LayerRecord]:
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
        unpacked = existing is not None and store.is_unpacked(chains[i])
        if existing is not None and (unpacked or store.has_blob(existing.blob_digest)):
            records[i] = record(i, existing.uncompressed_size)
            reporter.blob_skipped(desc.digest, "layer")
            if options.unpack and not unpacked:
                local.append(existing)  # stored as a blob only: unpack it, no download
        else:
            todo.append(i)
    for existing in local:
        unpack_stored_layer(store, existing, durable=options.durable)
        written.add(existing.chain_id, existing.blob_digest)

    cancel = threading.Event()

    def fetch(i: int) -> LayerRecord:
        desc = manifest.layers[i]
        result = _fetch_layer(
            source,
            store,
            desc.digest,
            desc.size,
            chains[i],
            config.diff_ids[i],
            options,
            reporter,
            cancel,
        )
        written.add(None if result["unpack_existed"] else chains[i], desc.digest)
        reporter.blob_done(desc.digest, "layer", desc.size)
        return record(i, result["uncompressed_size"] or 0)

    if todo:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(todo)))) as pool:
            futures: dict[Future[LayerRecord], int] = {pool.submit(fetch, i): i for i in todo}
            try:
                for future in as_completed(futures):
                    records[futures[future]] = future.result()
            except BaseException:
                # Stop the other downloads at their next chunk; the pool waits for them.
                cancel.set()
                for future in futures:
                    future.cancel()
                raise
    return [r for r in records if r is not None]


def _fetch_layer(
    source: ImageSource,
    store: Store,
    digest: str,
    size: int,
    chain: str,
    diff_id: str,
    options: PullOptions,
    reporter: Reporter,
    cancel: threading.Event,
) -> _native._SinkResult:
    reporter.blob_started(digest, "layer", size)
    # A server that ignores Range cannot resume: start the blob over, once.
    for attempt in (1, 2):
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            if cancel.is_set():
                raise _Cancelled
            done += n
            reporter.blob_advanced(digest, "layer", done, size)

        sink = _native.LayerSink(
            store.blob_path(digest),
            store.layer_path(chain) if options.unpack else None,
            digest,
            size,
            diff_id,
            durable=options.durable,
        )
        try:
            source.copy_blob(digest, size, sink, progress)
            return sink.finish()
        except TransportError as exc:
            sink.abort()
            if exc.slug != "range_not_supported" or attempt == 2:
                raise
        except BaseException:
            sink.abort()
            raise
    raise AssertionError("unreachable")
