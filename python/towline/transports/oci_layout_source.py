"""Reading an OCI image layout, wherever its files are: a directory, or a tar (``oci-archive:``).

:class:`LayoutSource` checks ``oci-layout`` (version 1.0.0), reads ``index.json``,
chooses the entry a reference selects (c/image ``getManifestDescriptor``, with its
messages) and serves manifests and blobs from ``blobs/<alg>/<hex>`` through a
:class:`LayoutFiles`; :class:`DirectoryFiles` is the directory one (``dir:`` uses it too).

Nothing here trusts a layout: every digest becomes a path only after
:func:`towline.digest.parse_digest` accepted it (no ``..``, no ``/``), JSON is read
with :func:`towline.untrusted_json.load_object` under a 4 MiB cap, a blob is read
only if it is a regular file, and blob bytes are handed, unread, to the sink the
copy gives (which verifies them).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from towline.digest import parse_digest
from towline.errors import InvalidReferenceError, ManifestUnknownError, TransportError
from towline.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ImageIndex,
    detect_media_type,
    parse_manifest,
    verify_digest,
)
from towline.quoting import go_quote
from towline.transports.base import BlobSink, ProgressCallback, SourceCapabilities
from towline.untrusted_json import UntrustedJSONError, load_object

if TYPE_CHECKING:
    from towline.transports.oci_layout import LayoutSpec

__all__ = [
    "JSON_SIZE_LIMIT",
    "LAYOUT_VERSION",
    "REF_NAME_ANNOTATION",
    "DirectoryFiles",
    "LayoutFiles",
    "LayoutSource",
    "blob_name",
    "check_layout_version",
    "choose_descriptor",
    "load_index",
    "missing_file",
    "pread_into",
    "read_json",
    "too_large",
    "valid_ref_name",
]

#: Largest index.json, manifest or config read from a layout (as c/image).
JSON_SIZE_LIMIT = 4 << 20
LAYOUT_VERSION = "1.0.0"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
_CHUNK = 1 << 20
# Media types a ref.name may select (c/image getManifestDescriptor).
_SELECTABLE = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
# The image-spec's ref.name grammar, as c/image oci/internal refRegexp.
_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF_NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*", re.ASCII)


def valid_ref_name(name: str) -> bool:
    """True when ``name`` may be an ``org.opencontainers.image.ref.name``."""
    return _REF_NAME_RE.fullmatch(name) is not None


def blob_name(digest: str, description: str) -> str:
    """``blobs/<alg>/<hex>`` for a digest that is exactly a digest (never a path escape)."""
    try:
        parsed = parse_digest(digest)
    except InvalidReferenceError as exc:
        raise TransportError(f"{description}: {exc}", slug="invalid_digest") from exc
    return f"blobs/{parsed.algorithm}/{parsed.hex}"


class LayoutFiles(Protocol):
    """The files of a layout, wherever they are (a directory, a tar)."""

    @property
    def parallel_reads(self) -> bool:
        """:meth:`stream` may run on several threads at once."""

    def read(self, name: str, max_size: int) -> bytes:
        """The whole file ``name`` (``index.json``, ``blobs/sha256/…``), at most ``max_size`` bytes.

        MUST raise :class:`TransportError` (slug ``blob_unknown``) when it is missing
        and (slug ``too_large``) when it is larger, before reading it.
        """

    def stream(
        self, name: str, size: int | None, sink: BlobSink, progress: ProgressCallback | None
    ) -> None:
        """Feed ``name`` into ``sink`` in 1 MiB chunks, never more than ``size`` bytes."""

    def close(self) -> None:
        """Release open files; safe twice."""


def missing_file(description: str, name: str, where: str) -> TransportError:
    """``name`` is not in the layout at ``where``."""
    what = "blob" if name.startswith("blobs/") else "file"
    return TransportError(
        f"{description}: {what} {name} is missing from {where}; the image there is "
        "incomplete: write it again (skopeo copy … or towline copy …)",
        slug="blob_unknown",
    )


def too_large(description: str, name: str, size: int, limit: int) -> TransportError:
    """A file larger than a JSON document may be."""
    return TransportError(
        f"{description}: {name} is {size} bytes, more than the {limit} allowed for it; "
        "the layout is damaged or hostile",
        slug="too_large",
    )


class DirectoryFiles:
    """A layout (or ``dir:`` image) in a directory; reads use ``pread``, so threads may share it."""

    parallel_reads = True

    def __init__(self, root: Path, description: str) -> None:
        self._root = root
        self._description = description
        if not root.is_dir():
            problem = "is not a directory" if root.exists() else "does not exist"
            raise TransportError(f"{description}: {root} {problem}", slug="not_found")

    @contextlib.contextmanager
    def _open(self, name: str) -> Iterator[tuple[int, int]]:
        path = self._root / name
        try:
            # O_NONBLOCK: a FIFO planted as a blob must not hang the open.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError as exc:
            raise missing_file(self._description, name, str(self._root)) from exc
        except OSError as exc:
            raise TransportError(
                f"{self._description}: cannot read {path}: {exc.strerror}", slug="io"
            ) from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise TransportError(
                    f"{self._description}: {path} is not a regular file", slug="invalid_layout"
                )
            yield fd, st.st_size
        finally:
            os.close(fd)

    def read(self, name: str, max_size: int) -> bytes:
        with self._open(name) as (fd, size):
            if size > max_size:
                raise too_large(self._description, name, size, max_size)
            return _pread_all(fd, size, self._description, name)

    def stream(
        self, name: str, size: int | None, sink: BlobSink, progress: ProgressCallback | None
    ) -> None:
        with self._open(name) as (fd, actual):
            # Never more than promised: a longer file then fails the sink's digest check.
            pread_into(fd, 0, actual if size is None else min(size, actual), sink, progress)

    def close(self) -> None:
        """Nothing stays open between reads."""


def _pread_all(fd: int, size: int, description: str, name: str) -> bytes:
    data = os.pread(fd, size, 0)
    if len(data) != size:
        raise TransportError(f"{description}: {name} was cut short while reading", slug="io")
    return data


def pread_into(
    fd: int, offset: int, length: int, sink: BlobSink, progress: ProgressCallback | None
) -> None:
    """Feed ``length`` bytes of ``fd`` from ``offset`` into ``sink``, 1 MiB at a time."""
    end = offset + length
    while offset < end:
        chunk = os.pread(fd, min(_CHUNK, end - offset), offset)
        if not chunk:
            break  # a short file: the sink reports the size mismatch
        sink.write(chunk)
        offset += len(chunk)
        if progress is not None:
            progress(len(chunk))


def read_json(files: LayoutFiles, name: str, description: str) -> dict[str, Any]:
    """``name`` parsed as an untrusted JSON object of at most 4 MiB."""
    raw = files.read(name, JSON_SIZE_LIMIT)
    try:
        return load_object(raw)
    except UntrustedJSONError as exc:
        raise TransportError(f"{description}: {name} {exc}", slug="invalid_layout") from exc


def check_layout_version(files: LayoutFiles, description: str) -> None:
    """Refuse a layout whose ``oci-layout`` is not ``{"imageLayoutVersion": "1.0.0"}``."""
    version = read_json(files, "oci-layout", description).get("imageLayoutVersion")
    if version != LAYOUT_VERSION:
        raise TransportError(
            f"{description}: oci-layout says imageLayoutVersion {json.dumps(version)}; "
            f"towline reads and writes layouts of version {LAYOUT_VERSION} only",
            slug="invalid_layout",
        )


def load_index(files: LayoutFiles, description: str) -> tuple[dict[str, Any], ImageIndex]:
    """``index.json`` as a document (to write back) and as a checked index."""
    raw = files.read("index.json", JSON_SIZE_LIMIT)
    try:
        document = load_object(raw)
        index = parse_manifest(raw, OCI_INDEX)
    except (UntrustedJSONError, TransportError) as exc:
        raise TransportError(f"{description}: index.json: {exc}", slug="invalid_layout") from exc
    if not isinstance(index, ImageIndex):
        raise TransportError(
            f"{description}: index.json is a {index.media_type}, not an image index",
            slug="invalid_layout",
        )
    return document, index


def choose_descriptor(index: ImageIndex, spec: LayoutSpec, description: str) -> Descriptor:
    """The entry of ``index.json`` ``spec`` selects, as c/image ``getManifestDescriptor``."""
    entries = index.manifests
    if spec.index is not None:
        if spec.index >= len(entries):
            raise ManifestUnknownError(
                f"{description}: index {spec.index} is too large, only {len(entries)} "
                "entries available"
            )
        return entries[spec.index]
    names = [
        e.annotations[REF_NAME_ANNOTATION] for e in entries if REF_NAME_ANNOTATION in e.annotations
    ]
    if spec.image:
        unsupported = []
        for entry in entries:
            if entry.annotations.get(REF_NAME_ANNOTATION) == spec.image:
                if entry.media_type in _SELECTABLE:
                    return entry
                unsupported.append(entry.media_type)
        if unsupported:
            listed = " ".join(go_quote(t) for t in unsupported)
            raise TransportError(
                f"{description}: reference {go_quote(spec.image)} matches unsupported "
                f"manifest MIME types [{listed}]",
                slug="unsupported_manifest",
            )
        raise ManifestUnknownError(
            f"{description}: no descriptor found for reference {go_quote(spec.image)}"
            f" (names in the layout: {', '.join(names) if names else 'none'})"
        )
    if len(entries) == 1:
        return entries[0]
    if not entries:
        raise ManifestUnknownError(
            f"{description}: the layout holds no image (index.json is empty)"
        )
    raise TransportError(
        f"{description}: more than one image in oci, choose an image: add :REF "
        f"(names: {', '.join(names) if names else 'none'}) or :@INDEX (0 to {len(entries) - 1})",
        slug="more_than_one_image",
    )


class LayoutSource:
    """One image (or index) of a layout, chosen on open; ``names`` gives its store names.

    ``index`` is the layout's index.json and ``descriptor`` the entry chosen from it.
    """

    def __init__(
        self,
        files: LayoutFiles,
        spec: LayoutSpec,
        description: str,
        names: Callable[[Descriptor], list[str]],
    ) -> None:
        self._files = files
        self._description = description
        self._names = names
        try:
            check_layout_version(files, description)
            self.index = load_index(files, description)[1]
            self.descriptor = choose_descriptor(self.index, spec, description)
        except BaseException:
            files.close()
            raise
        self.capabilities = SourceCapabilities(parallel_reads=files.parallel_reads)

    @property
    def description(self) -> str:
        return self._description

    def image_names(self) -> list[str]:
        return self._names(self.descriptor)

    def get_manifest(self, digest: str | None = None) -> tuple[bytes, str]:
        if digest is None:
            top = self.descriptor
            raw = self._read(top.digest, JSON_SIZE_LIMIT)
            # The copy verifies instances; the top level is checked against index.json here.
            verify_digest(raw, top.digest, f"manifest {top.digest} of {self._description}")
            return raw, detect_media_type(raw, top.media_type)
        raw = self._read(digest, JSON_SIZE_LIMIT)
        return raw, detect_media_type(raw, None)

    def read_blob(self, digest: str, max_size: int) -> bytes:
        return self._read(digest, max_size)

    def get_blob(
        self,
        digest: str,
        size: int | None,
        sink: BlobSink,
        progress: ProgressCallback | None = None,
    ) -> None:
        self._files.stream(blob_name(digest, self._description), size, sink, progress)

    def _read(self, digest: str, max_size: int) -> bytes:
        return self._files.read(blob_name(digest, self._description), max_size)

    def close(self) -> None:
        self._files.close()
