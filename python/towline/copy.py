"""THE data path: one image (or every image of an index) from any source to any destination.

Knows no concrete transport (a test walks its imports), as c/image's ``copy``
package. It reads the manifest (picking the platform from an index, or taking
every instance with ``all_platforms``), reads and verifies the config, then
streams every blob the destination does not have through a verifying writer the
destination opens (the native sinks check size, digest and diff_id), and writes
the manifest, converted when the destination cannot store its type. Every
manifest and config is checked against its digest here, once.

:func:`copy_image` leaves the commit to its caller, so one archive can take
several images; :func:`copy_and_commit` is the usual whole job: copy, commit,
and on failure (or Ctrl-C) abort, which leaves the destination as it was.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from towline.errors import (
    DigestMismatchError,
    InvalidLayerError,
    StoreError,
    TowlineError,
    TransportError,
)
from towline.events import Reporter
from towline.manifest import (
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    compute_digest,
    parse_image_config,
    parse_manifest,
    verify_digest,
)
from towline.manifest_convert import convert_index, convert_manifest
from towline.platform import Platform, choose_instance, normalize_platform, parse_platform
from towline.transports.base import ImageDestination, ImageSource, LayerContext
from towline.untrusted_json import load_object

__all__ = [
    "CONFIG_SIZE_LIMIT",
    "CopyOptions",
    "CopyResult",
    "copy_and_commit",
    "copy_image",
]

_log = logging.getLogger(__name__)

#: Largest config blob accepted (as containers/image).
CONFIG_SIZE_LIMIT = 4 << 20

#: Commits tried when a destination lost a file before its commit, each after copying again.
COMMIT_ATTEMPTS = 3
# Slugs of "a file the commit needs is gone" (something outside towline removed it).
_FILE_MISSING = frozenset({"blob_unknown", "layer_unknown"})


@dataclass(frozen=True)
class CopyOptions:
    """How to copy: which platform(s), how many blobs at once.

    ``wanted``: platforms to pick from an index, best first (the pull's
    ``wanted_platforms``). ``expected``: the platform to warn about when a config
    says otherwise. ``all_platforms``: copy every instance of an index and the
    index itself (skopeo ``--all``). ``parallel``: blobs copied at once when both
    sides allow it. ``preserve_digests``: fail rather than convert a manifest (or
    index) the destination cannot store as it is (skopeo ``--preserve-digests``).
    """

    wanted: Sequence[Platform]
    expected: Platform | None = None
    all_platforms: bool = False
    parallel: int = 6
    preserve_digests: bool = False


@dataclass
class CopyResult:
    """What was copied: the top-level manifest written (digest, size), and every image ID."""

    manifest_digest: str
    manifest_size: int
    image_ids: list[str] = field(default_factory=list)


class _Cancelled(Exception):
    """Raised inside a download's progress callback to stop it (another layer failed)."""


def copy_and_commit(
    source: ImageSource,
    dest: ImageDestination,
    options: CopyOptions,
    reporter: Reporter,
) -> CopyResult:
    """Copy what ``source`` names into ``dest`` and commit it; abort ``dest`` on failure.

    A commit that finds a file gone (removed outside towline between its copy and
    its commit) copies again, up to :data:`COMMIT_ATTEMPTS` times: what is still
    there is reused, only what is missing moves again.
    """
    try:
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            result = copy_image(source, dest, options, reporter)
            try:
                dest.commit()
            except StoreError as exc:
                if exc.slug not in _FILE_MISSING or attempt == COMMIT_ATTEMPTS:
                    raise
                _log.warning("copying again what is missing (attempt %d): %s", attempt + 1, exc)
                continue
            return result
        raise AssertionError("unreachable")
    except BaseException:
        dest.abort()
        raise


def copy_image(
    source: ImageSource,
    dest: ImageDestination,
    options: CopyOptions,
    reporter: Reporter,
) -> CopyResult:
    """Copy the image (or the index of images) ``source`` names into ``dest``; no commit."""
    return _Copier(source, dest, options, reporter).run()


@dataclass
class _Copier:
    """One copy in progress."""

    source: ImageSource
    dest: ImageDestination
    options: CopyOptions
    reporter: Reporter
    cancel: threading.Event = field(default_factory=threading.Event)

    def run(self) -> CopyResult:
        # === manifest: a single image, or an index to pick from (or copy whole)
        raw, media_type = self.source.get_manifest()
        parsed = parse_manifest(raw, media_type)
        if isinstance(parsed, ImageManifest):
            return self.copy_single(parsed, raw, media_type)
        if self.options.all_platforms:
            return self.copy_all(parsed, raw, media_type)
        entry = choose_instance(load_object(raw), self.options.wanted, media_type=media_type)
        instance = str(entry["digest"])
        result = self.copy_single(*self.instance(instance))
        self.dest.put_index(raw, media_type, complete=False)
        return result

    def instance(self, digest: str) -> tuple[ImageManifest, bytes, str]:
        """The verified single-image manifest ``digest`` of the source's index."""
        raw, media_type = self.source.get_manifest(digest)
        verify_digest(raw, digest, f"manifest {digest} of {self.source.description}")
        parsed = parse_manifest(raw, media_type)
        if not isinstance(parsed, ImageManifest):
            raise TransportError(
                f"{self.source.description}: index entry {digest} is itself an index; "
                "nested indexes are not supported",
                slug="invalid_manifest",
            )
        return parsed, raw, media_type

    # === every instance, and the index itself
    def copy_all(self, index: ImageIndex, raw: bytes, media_type: str) -> CopyResult:
        accepted = self.dest.capabilities.index_types
        if not accepted:
            raise TransportError(
                f"{self.dest.description} holds one image, not an index of "
                f"{len(index.manifests)}: copy without --all (one platform), or to oci: or dir:",
                slug="index_not_supported",
            )
        count = len(index.manifests)
        self.reporter.line(f"Copying {count} images generated from {count} images in list")
        moved: dict[str, tuple[str, int]] = {}
        ids: list[str] = []
        for position, entry in enumerate(index.manifests, 1):
            self.reporter.line(f"Copying image {entry.digest} ({position}/{count})")
            result = self.copy_single(*self.instance(entry.digest))
            ids += result.image_ids
            if result.manifest_digest != entry.digest:
                moved[entry.digest] = (result.manifest_digest, result.manifest_size)
        if media_type not in accepted or moved:
            target = media_type if media_type in accepted else accepted[0]
            self.refuse_conversion(media_type, target)
            raw, media_type = convert_index(index, target, moved), target
        self.reporter.line("Writing manifest list to image destination")
        self.dest.put_index(raw, media_type, complete=True)
        return CopyResult(compute_digest(raw), len(raw), ids)

    # === one image: config, layers, manifest
    def copy_single(self, manifest: ImageManifest, raw: bytes, media_type: str) -> CopyResult:
        config_raw, config = self.read_config(manifest)
        _warn_platform(config, self.options.expected, self.reporter)
        self.dest.begin_image(manifest, config_raw, config)
        self.reporter.line("Getting image source signatures")
        self.copy_layers(manifest, config)

        desc = manifest.config
        if not self.dest.try_reuse_blob(desc, None):
            writer = self.dest.open_blob(desc, None)
            try:
                writer.write(config_raw)
                writer.finish()
            except BaseException:
                writer.abort()
                raise
        self.reporter.blob_done(desc.digest, "config", desc.size)

        raw, media_type = self.convert(manifest, raw, media_type)
        self.reporter.line("Writing manifest to image destination")
        self.dest.put_manifest(raw, media_type)
        return CopyResult(compute_digest(raw), len(raw), [desc.digest.partition(":")[2]])

    def convert(self, manifest: ImageManifest, raw: bytes, media_type: str) -> tuple[bytes, str]:
        accepted = self.dest.capabilities.manifest_types
        if not accepted or media_type in accepted:
            return raw, media_type
        target = accepted[0]
        self.refuse_conversion(media_type, target)
        self.reporter.line(
            f"Converting the manifest from {media_type} to {target} "
            f"({self.dest.description} does not store the first)"
        )
        return convert_manifest(manifest, target), target

    def refuse_conversion(self, media_type: str, target: str) -> None:
        """With ``preserve_digests``, a conversion (which changes the digest) is an error."""
        if self.options.preserve_digests:
            raise TransportError(
                f"{self.dest.description} cannot store the {media_type} manifest as it is, "
                f"and converting it to {target} would change its digest, which must be "
                f"preserved: copy to a destination that stores {media_type} (e.g. dir:)",
                slug="manifest_conversion",
            )

    def read_config(self, manifest: ImageManifest) -> tuple[bytes, ImageConfig]:
        desc = manifest.config
        raw = self.source.read_blob(desc.digest, CONFIG_SIZE_LIMIT)
        verify_digest(raw, desc.digest, f"config of {self.source.description}")
        config = parse_image_config(raw, f"image config {desc.digest} of {self.source.description}")
        if len(config.diff_ids) != len(manifest.layers):
            raise TransportError(
                f"{self.source.description}: the manifest lists {len(manifest.layers)} layers "
                f"but the config has {len(config.diff_ids)} diff_ids; the image is broken at "
                "its source",
                slug="invalid_manifest",
            )
        for layer in manifest.layers:
            if layer.media_type.endswith("+encrypted"):
                raise TransportError(
                    f"{self.source.description}: layer {layer.digest} is encrypted "
                    f"({layer.media_type}); encrypted images are not supported",
                    slug="encrypted_layer",
                )
        return raw, config

    def copy_layers(self, manifest: ImageManifest, config: ImageConfig) -> None:
        todo: list[tuple[Descriptor, LayerContext]] = []
        for i, desc in enumerate(manifest.layers):
            layer = LayerContext(i, config.diff_ids[i])
            if self.dest.try_reuse_blob(desc, layer):
                self.reporter.blob_skipped(desc.digest, "layer")
            else:
                todo.append((desc, layer))
        if not todo:
            return
        both = self.source.capabilities.parallel_reads and self.dest.capabilities.parallel_writes
        workers = max(1, min(self.options.parallel if both else 1, len(todo)))
        if workers == 1:
            for desc, layer in todo:
                self.copy_blob(desc, layer)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures: list[Future[None]] = [pool.submit(self.copy_blob, d, x) for d, x in todo]
            try:
                for future in as_completed(futures):
                    future.result()
            except BaseException:
                # Stop the other downloads at their next chunk; the pool waits for them.
                self.cancel.set()
                for future in futures:
                    future.cancel()
                raise

    def copy_blob(self, desc: Descriptor, layer: LayerContext) -> None:
        digest, size = desc.digest, desc.size
        self.reporter.blob_started(digest, "layer", size)
        # A source that ignores Range cannot resume: start the blob over, once.
        for attempt in (1, 2):
            done = 0

            def progress(n: int) -> None:
                nonlocal done
                if self.cancel.is_set():
                    raise _Cancelled
                done += n
                self.reporter.blob_advanced(digest, "layer", done, size)

            writer = self.dest.open_blob(desc, layer)
            try:
                self.source.get_blob(digest, size, writer, progress)
                writer.finish()
                break
            except (DigestMismatchError, InvalidLayerError) as exc:
                # The sink's verdict names no image: say which blob of which source.
                writer.abort()
                raise type(exc)(
                    f"{self.source.description}: blob {digest}: {exc}",
                    slug=exc.slug,
                    expected=exc.expected,
                    actual=exc.actual,
                ) from exc
            except TransportError as exc:
                writer.abort()
                if exc.slug != "range_not_supported" or attempt == 2:
                    raise
            except BaseException:
                writer.abort()
                raise
        self.reporter.blob_done(digest, "layer", size)


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
