"""Writing an OCI image layout directory: the ``oci:`` destination (and ``oci-archive:``'s stage).

Blobs go through the verifying native sink straight to ``blobs/<alg>/<hex>``
(visible as they arrive, as c/image's); ``index.json`` changes only at
:meth:`LayoutDestination.commit`, atomically (a temporary file renamed over it),
so an aborted copy leaves the layout as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from towline import _native
from towline.errors import InvalidReferenceError, TransportError
from towline.manifest import (
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    compute_digest,
    parse_manifest,
)
from towline.quoting import go_quote
from towline.transports.base import BlobWriter, DestinationCapabilities, LayerContext
from towline.transports.oci_layout_source import (
    LAYOUT_VERSION,
    REF_NAME_ANNOTATION,
    DirectoryFiles,
    blob_name,
    check_layout_version,
    load_index,
    valid_ref_name,
)

__all__ = [
    "LayoutDestination",
    "add_manifest",
    "fsync_dir",
    "make_sibling_dir",
    "sibling_name",
    "write_file_atomic",
]


def write_file_atomic(path: Path, data: bytes, *, durable: bool) -> None:
    """Write ``path`` through a temporary sibling renamed over it (fsynced when ``durable``)."""
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(6)}")
    try:
        with open(tmp, "xb") as file:
            file.write(data)
            if durable:
                os.fsync(file.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sibling_name(path: Path, label: str) -> Path:
    """A fresh hidden name beside ``path`` (same filesystem, so it can be renamed into place)."""
    return path.parent / f".{path.name}.towline-{label}-{secrets.token_hex(6)}"


def make_sibling_dir(path: Path, label: str) -> Path:
    """A new directory beside ``path``, named by :func:`sibling_name`."""
    for _ in range(100):
        candidate = sibling_name(path, label)
        try:
            candidate.mkdir(mode=0o755)
        except FileExistsError:
            continue
        return candidate
    raise TransportError(f"cannot create a staging directory in {path.parent}", slug="io")


@contextlib.contextmanager
def _dir_lock(path: Path) -> Iterator[None]:
    # flock on the directory itself: writers of one layout take turns, and no lock file appears.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def add_manifest(entries: list[dict[str, Any]], new: dict[str, Any]) -> None:
    """c/image ``addManifest``: the name moves to the new entry; an unnamed twin is replaced."""
    name = new.get("annotations", {}).get(REF_NAME_ANNOTATION)
    if name:
        for entry in entries:
            annotations = entry.get("annotations")
            if isinstance(annotations, dict) and annotations.get(REF_NAME_ANNOTATION) == name:
                del annotations[REF_NAME_ANNOTATION]
                if not annotations:
                    del entry["annotations"]
                break
    for i, entry in enumerate(entries):
        annotations = entry.get("annotations")
        named = isinstance(annotations, dict) and annotations.get(REF_NAME_ANNOTATION)
        if entry.get("digest") == new["digest"] and not named:
            entries[i] = new
            return
    entries.append(new)


@dataclass
class _Top:
    """A manifest or index that becomes an entry of index.json at commit."""

    digest: str
    size: int
    media_type: str
    name: str | None


class _TrackedWriter:
    """A native BlobSink that reports a blob it brought into being, so abort can remove it."""

    def __init__(self, sink: _native.BlobSink, created: Callable[[], None]) -> None:
        self._sink = sink
        self._created = created
        self.write = sink.write  # the hot path goes straight to the native sink

    @property
    def bytes_written(self) -> int:
        return self._sink.bytes_written

    def finish(self) -> Mapping[str, Any]:
        result = self._sink.finish()
        self._created()
        return result

    def abort(self) -> None:
        self._sink.abort()


@dataclass
class _Written:
    """What a destination created, so :meth:`LayoutDestination.abort` can take it back."""

    blobs: list[Path] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)


class LayoutDestination:
    """An OCI layout receiving images; ``ref_name`` names each top-level entry written.

    Blobs appear under ``blobs/`` as they are verified; ``index.json`` (and
    ``oci-layout``) change only at :meth:`commit`, under an ``flock`` of the layout
    directory, from the index on disk at that moment, so concurrent writers of one
    layout keep each other's entries. :meth:`abort` removes the blobs and
    directories this destination created, nothing that was there before.
    """

    capabilities = DestinationCapabilities(
        manifest_types=(OCI_MANIFEST,), index_types=(OCI_INDEX,), parallel_writes=True
    )

    def __init__(
        self, root: Path, ref_name: str | None, *, description: str, durable: bool = True
    ) -> None:
        self._root = root
        self._description = description
        self._durable = durable
        self._ref_name = ref_name
        self._tops: list[_Top] = []
        self._written = _Written()
        self._mutex = threading.Lock()
        if root.exists() and not root.is_dir():
            raise TransportError(f"{description}: {root} exists and is not a directory", slug="io")
        if root.is_dir():
            self._existing_index()  # a damaged layout is refused before anything is copied

    @property
    def description(self) -> str:
        return self._description

    def set_ref_name(self, name: str | None) -> None:
        """Name the images whose manifests are put from now on (``save`` of several images)."""
        if name is not None and not valid_ref_name(name):
            raise InvalidReferenceError(f"{self._description}: invalid image name {go_quote(name)}")
        self._ref_name = name

    def _existing_index(self) -> dict[str, Any] | None:
        files = DirectoryFiles(self._root, self._description)
        if (self._root / "oci-layout").exists():
            check_layout_version(files, self._description)
        if not (self._root / "index.json").exists():
            return None
        return load_index(files, self._description)[0]

    def _ensure_dir(self, path: Path) -> None:
        missing = []
        probe = path
        while not probe.is_dir():
            missing.append(probe)
            probe = probe.parent
        for directory in reversed(missing):
            try:
                directory.mkdir(mode=0o755)
            except FileExistsError:
                continue  # a concurrent writer made it: not ours to remove
            except OSError as exc:
                raise TransportError(
                    f"{self._description}: cannot create {directory}: {exc.strerror}", slug="io"
                ) from exc
            with self._mutex:
                self._written.dirs.append(directory)

    def _blob_path(self, digest: str) -> Path:
        return self._root / blob_name(digest, self._description)

    def begin_image(self, manifest: ImageManifest, config_raw: bytes, config: ImageConfig) -> None:
        """Nothing to prepare: blobs go straight to ``blobs/``."""

    def try_reuse_blob(self, desc: Descriptor, layer: LayerContext | None) -> bool:
        # As c/image: a blob already in the layout is taken as what its name says.
        try:
            st = self._blob_path(desc.digest).stat()
        except FileNotFoundError:
            return False
        return stat.S_ISREG(st.st_mode) and st.st_size == desc.size

    def open_blob(self, desc: Descriptor, layer: LayerContext | None) -> BlobWriter:
        path = self._blob_path(desc.digest)
        self._ensure_dir(path.parent)
        for directory in (path.parent, path.parent.parent):
            if directory.is_symlink():  # a planted blobs -> /etc must not take our writes
                raise TransportError(
                    f"{self._description}: {directory} is a symbolic link; towline writes "
                    "only into real directories of a layout: remove the link",
                    slug="unsafe_path",
                )
        existed = path.exists()

        def created() -> None:
            if not existed:
                with self._mutex:
                    self._written.blobs.append(path)

        sink = _native.BlobSink(path, desc.digest, desc.size, durable=self._durable)
        return _TrackedWriter(sink, created)

    def _put_json_blob(self, raw: bytes) -> str:
        digest = compute_digest(raw)
        desc = Descriptor(OCI_MANIFEST, digest, len(raw))
        if not self.try_reuse_blob(desc, None):
            writer = self.open_blob(desc, None)
            try:
                writer.write(raw)
                writer.finish()
            except BaseException:
                writer.abort()
                raise
        return digest

    def put_manifest(self, raw: bytes, media_type: str) -> None:
        digest = self._put_json_blob(raw)
        with self._mutex:
            self._tops.append(_Top(digest, len(raw), media_type, self._ref_name))

    def put_index(self, raw: bytes, media_type: str, *, complete: bool) -> None:
        if not complete:
            return  # only the chosen instance was copied: it is the image (as c/image)
        digest = self._put_json_blob(raw)
        index = parse_manifest(raw, media_type)
        instances = {e.digest for e in index.manifests} if isinstance(index, ImageIndex) else set()
        with self._mutex:
            # Instances stay blobs of the index; the index is the entry (c/image).
            self._tops = [t for t in self._tops if t.digest not in instances]
            self._tops.append(_Top(digest, len(raw), media_type, self._ref_name))

    def commit(self) -> None:
        self._ensure_dir(self._root / "blobs")
        with _dir_lock(self._root):
            document = self._existing_index() or {"schemaVersion": 2, "mediaType": OCI_INDEX}
            entries = document.setdefault("manifests", [])
            with self._mutex:
                tops = list(self._tops)
            for top in tops:
                entry: dict[str, Any] = {
                    "mediaType": top.media_type,
                    "digest": top.digest,
                    "size": top.size,
                }
                if top.name:
                    entry["annotations"] = {REF_NAME_ANNOTATION: top.name}
                add_manifest(entries, entry)
            self._write_layout(json.dumps(document, separators=(",", ":")).encode())
        with self._mutex:
            self._tops.clear()
            self._written = _Written()

    def _write_layout(self, index: bytes) -> None:
        """``oci-layout`` (when missing), then ``index.json``; a failure takes the first back."""
        marker = self._root / "oci-layout"
        created = not marker.exists()
        try:
            if created:
                layout = json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode()
                write_file_atomic(marker, layout, durable=self._durable)
            write_file_atomic(self._root / "index.json", index, durable=self._durable)
        except BaseException as exc:
            if created:
                marker.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise TransportError(
                    f"{self._description}: cannot write {self._root / 'index.json'}: "
                    f"{exc.strerror}",
                    slug="io",
                ) from exc
            raise

    def abort(self) -> None:
        with self._mutex:
            written, self._written = self._written, _Written()
            self._tops.clear()
        for path in written.blobs:
            path.unlink(missing_ok=True)
        # Deepest first: parallel blob writers record the directories they made in any order.
        for directory in sorted(written.dirs, key=lambda d: len(d.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty: someone else wrote there too
                directory.rmdir()
