"""The ``dir:`` transport: one image as files in a directory, c/image's ``directory`` format.

``manifest.json`` is the top-level manifest (an index, with ``--all``, whose
instances are ``<hex>.manifest.json``), every blob is a file named by its sha256
hex, and ``version`` says ``Directory Transport Version: 1.1``. Images read from
here are stored unnamed, as libimage does for every path-based transport.

As a destination it writes into a staging directory beside ``PATH`` and, at
:meth:`DirDestination.commit`, puts it in ``PATH``'s place; so an aborted copy
changes nothing. As c/image, it refuses a ``PATH`` that is neither empty nor a
previous ``dir:`` image.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from towline import _native
from towline.digest import parse_digest
from towline.errors import InvalidReferenceError, TransportError
from towline.manifest import (
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    compute_digest,
    detect_media_type,
    parse_manifest,
)
from towline.transports.base import (
    BlobSink,
    BlobWriter,
    DestinationCapabilities,
    LayerContext,
    ProgressCallback,
    SourceCapabilities,
    TransportContext,
)
from towline.transports.oci_layout_dest import fsync_dir, make_sibling_dir, write_file_atomic
from towline.transports.oci_layout_source import JSON_SIZE_LIMIT, DirectoryFiles

__all__ = ["VERSION", "DirDestination", "DirReference", "DirSource", "parse"]

#: The ``version`` file's exact content.
VERSION = b"Directory Transport Version: 1.1\n"


def _hex_of(digest: str, description: str) -> str:
    """The file name of a blob: its sha256 hex, once the digest is known to be exactly one."""
    try:
        parsed = parse_digest(digest)
    except InvalidReferenceError as exc:
        raise TransportError(f"{description}: {exc}", slug="invalid_digest") from exc
    if parsed.algorithm != "sha256":
        raise TransportError(
            f"{description}: blob {digest}: the dir: format names blobs by sha256 only; "
            "copy to oci: instead",
            slug="unsupported_digest",
        )
    return parsed.hex


@dataclass(frozen=True)
class DirReference:
    """``dir:PATH``: the image in directory PATH."""

    path: str
    transport: str = "dir"

    def __str__(self) -> str:
        return f"dir:{self.path}"

    def new_source(self, context: TransportContext) -> DirSource:
        return DirSource(Path(self.path), str(self))

    def new_destination(self, context: TransportContext) -> DirDestination:
        return DirDestination(Path(self.path), str(self), durable=context.options.durable)


def parse(rest: str) -> DirReference:
    """The reference of ``dir:<rest>``."""
    if not rest:
        raise InvalidReferenceError("invalid dir: reference: the path is empty; use dir:PATH")
    return DirReference(rest)


# === reading


class DirSource:
    """The image in a ``dir:`` directory; blobs are read with ``pread``, in parallel."""

    capabilities = SourceCapabilities(parallel_reads=True)

    def __init__(self, root: Path, description: str) -> None:
        self._files = DirectoryFiles(root, description)
        self._description = description

    @property
    def description(self) -> str:
        return self._description

    def image_names(self) -> list[str]:
        # libimage: path-based transports are stored by ID (a path is no image name).
        return []

    def get_manifest(self, digest: str | None = None) -> tuple[bytes, str]:
        name = "manifest.json"
        if digest is not None:
            name = f"{_hex_of(digest, self._description)}.manifest.json"
        raw = self._files.read(name, JSON_SIZE_LIMIT)
        return raw, detect_media_type(raw, None)

    def read_blob(self, digest: str, max_size: int) -> bytes:
        return self._files.read(_hex_of(digest, self._description), max_size)

    def get_blob(
        self,
        digest: str,
        size: int | None,
        sink: BlobSink,
        progress: ProgressCallback | None = None,
    ) -> None:
        self._files.stream(_hex_of(digest, self._description), size, sink, progress)

    def close(self) -> None:
        self._files.close()


# === writing


def _check_replaceable(path: Path, description: str) -> None:
    """c/image ``newImageDestination``: only an empty directory or a previous image is replaced."""
    if not path.exists():
        return
    if not path.is_dir():
        raise TransportError(f"{description}: {path} exists and is not a directory", slug="io")
    if not any(path.iterdir()):
        return
    version = path / "version"
    try:
        content = version.read_bytes() if version.is_file() else None
    except OSError:
        content = None
    if content != VERSION:
        raise TransportError(
            f"{description}: {path} is not a containers image directory, don't want to "
            "overwrite important data: give an empty or new directory",
            slug="not_image_directory",
        )


def replace_directory(staging: Path, target: Path, *, durable: bool) -> None:
    """Put ``staging`` where ``target`` is (keeping ``target``'s mode); the old one goes.

    Two renames: if the second fails (or is interrupted), the first is undone. The
    directory itself is replaced, so ``target`` cannot be a mount point (EBUSY: the
    copy fails and leaves it as it was).
    """
    if not target.exists():
        os.rename(staging, target)
    else:
        os.chmod(staging, stat.S_IMODE(target.stat().st_mode))
        aside = make_sibling_dir(target, "old")
        try:
            os.rename(target, aside / "old")
            try:
                os.rename(staging, target)
            except BaseException:
                os.rename(aside / "old", target)
                raise
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    if durable:
        fsync_dir(target.parent)


class DirDestination:
    """A ``dir:`` directory receiving one image (or, with ``--all``, one index and its images)."""

    capabilities = DestinationCapabilities(
        manifest_types=(), index_types=(OCI_INDEX, DOCKER_MANIFEST_LIST), parallel_writes=True
    )

    def __init__(self, path: Path, description: str, *, durable: bool = True) -> None:
        # The real directory: a symlink to it stays one, pointing at the new contents.
        self._path = Path(os.path.realpath(path))
        self._description = description
        self._durable = durable
        _check_replaceable(self._path, description)
        self._staging: Path | None = None  # made when the first file is written
        self._parents: list[Path] = []
        self._closed = False
        self._manifests: dict[str, bytes] = {}  # by digest, in the order put
        self._index: bytes | None = None
        self._mutex = threading.Lock()
        self._stage_lock = threading.Lock()

    @property
    def description(self) -> str:
        return self._description

    def _stage(self) -> Path:
        with self._stage_lock:
            if self._closed:
                raise TransportError(
                    f"{self._description}: the destination is closed", slug="closed"
                )
            if self._staging is None:
                # As c/image's MkdirAll; what this creates goes again on abort.
                self._parents = [p for p in self._path.parents if not p.exists()]
                try:
                    self._path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise TransportError(
                        f"{self._description}: cannot create {self._path.parent}: {exc.strerror}",
                        slug="io",
                    ) from exc
                self._staging = make_sibling_dir(self._path, "new")
            return self._staging

    def begin_image(self, manifest: ImageManifest, config_raw: bytes, config: ImageConfig) -> None:
        """Nothing to prepare: blobs go to the staging directory."""

    def try_reuse_blob(self, desc: Descriptor, layer: LayerContext | None) -> bool:
        # Only what this copy already wrote (and verified): a layer shared by two platforms.
        return (self._stage() / _hex_of(desc.digest, self._description)).is_file()

    def open_blob(self, desc: Descriptor, layer: LayerContext | None) -> BlobWriter:
        path = self._stage() / _hex_of(desc.digest, self._description)
        return _native.BlobSink(path, desc.digest, desc.size, durable=self._durable)

    def put_manifest(self, raw: bytes, media_type: str) -> None:
        with self._mutex:
            self._manifests[compute_digest(raw)] = raw

    def put_index(self, raw: bytes, media_type: str, *, complete: bool) -> None:
        if not complete:
            return  # only the chosen instance was copied: it is the image
        index = parse_manifest(raw, media_type)
        if isinstance(index, ImageIndex):
            with self._mutex:
                self._index = raw

    def commit(self) -> None:
        staging = self._stage()
        with self._mutex:
            manifests, index = dict(self._manifests), self._index
        files: dict[str, bytes] = {}
        if index is not None:
            files["manifest.json"] = index
            for digest, raw in manifests.items():
                files[f"{_hex_of(digest, self._description)}.manifest.json"] = raw
        elif len(manifests) == 1:
            files["manifest.json"] = next(iter(manifests.values()))
        else:
            raise TransportError(
                f"{self._description}: a dir: directory holds one image, not "
                f"{len(manifests)}: copy each image to its own directory",
                slug="one_image_only",
            )
        files["version"] = VERSION
        _check_replaceable(self._path, self._description)  # again: it may have changed since
        try:
            for name, data in files.items():
                write_file_atomic(staging / name, data, durable=self._durable)
            replace_directory(staging, self._path, durable=self._durable)
        except OSError as exc:
            raise TransportError(
                f"{self._description}: cannot write {self._path}: {exc.strerror or exc}",
                slug="io",
            ) from exc
        with self._stage_lock:
            self._staging, self._parents, self._closed = None, [], True

    def abort(self) -> None:
        with self._stage_lock:
            staging, parents = self._staging, self._parents
            self._staging, self._parents, self._closed = None, [], True
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for parent in parents:  # deepest first
            with contextlib.suppress(OSError):  # not empty: someone else wrote there too
                parent.rmdir()
