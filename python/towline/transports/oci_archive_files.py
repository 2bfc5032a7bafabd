"""The files of an OCI layout inside a tar, for ``oci-archive:``, read without extracting it.

c/image untars an archive to a temporary directory first; towline reads it in
place, through the native archive reader (:func:`open_archive` picks the way):

* :class:`IndexedArchive`: an uncompressed tar is indexed once
  (``_native.tar_index``: every member's offset), and files are read with
  ``os.pread`` at their offsets, so several blobs may be read at once;
* :class:`StreamedArchive`: a compressed tar cannot be seeked, and is not
  decompressed to disk either. A first pass (``_native.TarStream``) keeps the
  small JSON members (index.json, manifests, configs: at most 4 MiB each, 64 MiB
  in all) and notes where every member is; a layer is then streamed from a pass
  that skips to it, and the next one continues from there when it lies further
  on (a new pass when it lies behind). Blobs are read one at a time.

Member names are cleaned as an untar would (``./index.json`` is ``index.json``);
nothing is ever written, so hostile names only fail to match.
"""

from __future__ import annotations

import os
import posixpath
import threading
from collections.abc import Iterator
from pathlib import Path

from towline import _native
from towline.errors import TowlineError, TransportError
from towline.transports.base import BlobSink, ProgressCallback
from towline.transports.oci_layout_source import (
    JSON_SIZE_LIMIT,
    LayoutFiles,
    missing_file,
    pread_into,
    too_large,
)

__all__ = ["IndexedArchive", "StreamedArchive", "archive_error", "open_archive"]

#: All small JSON members a compressed archive's first pass keeps, together.
_JSON_CACHE_LIMIT = 64 << 20
_CHUNK = 1 << 20


def _clean(name: str) -> str | None:
    """A member's name as a layout path (``./index.json`` → ``index.json``); None if outside.

    A leading ``/`` is dropped, as an untar would; ``..`` never names a layout file.
    """
    cleaned = posixpath.normpath(name.lstrip("/"))
    if cleaned in (".", "..") or cleaned.startswith("../"):
        return None
    return cleaned


def archive_error(exc: TowlineError, description: str) -> TransportError:
    """A native error about an archive, as a TransportError naming the transport reference."""
    return TransportError(f"{description}: {exc}", slug=exc.slug)


def open_archive(path: Path, description: str) -> LayoutFiles:
    """The layout in the tar at ``path``: indexed when uncompressed, else streamed."""
    if not path.is_file():
        problem = "is not a file" if path.exists() else "does not exist"
        raise TransportError(f"{description}: {path} {problem}", slug="not_found")
    try:
        compression = _native.sniff_archive(path)
        if compression == "none":
            return IndexedArchive(path, description)
        return StreamedArchive(path, description)
    except TransportError:
        raise
    except TowlineError as exc:
        raise archive_error(exc, description) from exc


class IndexedArchive:
    """An uncompressed tar: members found by one index pass, read by offset (thread-safe)."""

    parallel_reads = True

    def __init__(self, path: Path, description: str) -> None:
        self._path = path
        self._description = description
        members: dict[str, tuple[int, int]] = {}
        links: dict[str, str] = {}
        for member in _native.tar_index(path):
            name = _clean(member.name)
            if name is None:
                continue
            members.pop(name, None)  # a later member of that name replaces it, as on untar
            links.pop(name, None)
            if member.kind == "file" and member.offset is not None:
                members[name] = (member.offset, member.size)
            elif member.kind == "hardlink":
                links[name] = _clean(member.link) or ""
        for name, target in links.items():
            if target in members:
                members[name] = members[target]
        self._members = members
        self._fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        end = os.fstat(self._fd).st_size
        for name, (offset, size) in members.items():
            if offset + size > end:
                self.close()
                raise TransportError(
                    f"{description}: {name} runs past the end of {path}: truncated archive",
                    slug="bad_tar",
                )

    def _member(self, name: str) -> tuple[int, int, int]:
        found = self._members.get(name)
        if found is None or self._fd is None:
            raise missing_file(self._description, name, str(self._path))
        return self._fd, found[0], found[1]

    def read(self, name: str, max_size: int) -> bytes:
        fd, offset, size = self._member(name)
        if size > max_size:
            raise too_large(self._description, name, size, max_size)
        return os.pread(fd, size, offset)

    def stream(
        self, name: str, size: int | None, sink: BlobSink, progress: ProgressCallback | None
    ) -> None:
        fd, offset, actual = self._member(name)
        pread_into(fd, offset, actual if size is None else min(size, actual), sink, progress)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class _Collect:
    """A sink that keeps the bytes (a small member read from a stream)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.bytes_written = 0

    def write(self, data: bytes, /) -> None:
        self.parts.append(data)
        self.bytes_written += len(data)


class StreamedArchive:
    """A compressed tar, read in order: small JSON members kept, layers streamed on demand."""

    parallel_reads = False

    def __init__(self, path: Path, description: str) -> None:
        self._path = path
        self._description = description
        self._where: dict[str, tuple[int, int]] = {}  # name → (member position, size)
        self._json: dict[str, bytes] = {}
        self._stream: _native.TarStream | None = None
        self._position = -1  # of the member self._stream is in (its data partly read)
        self._lock = threading.Lock()
        self._scan()

    def _members(
        self, stream: _native.TarStream, start: int = 0
    ) -> Iterator[tuple[int, _native.TarMember]]:
        """The members still ahead in ``stream``, with their positions from ``start`` on."""
        position = start
        while True:
            try:
                member = stream.next()
            except TowlineError as exc:
                raise archive_error(exc, self._description) from exc
            if member is None:
                return
            yield position, member
            position += 1

    def _scan(self) -> None:
        stream = _native.TarStream(self._path)
        kept = 0
        try:
            for position, member in self._members(stream):
                name = _clean(member.name)
                if name is None:
                    continue
                self._json.pop(name, None)
                if member.kind == "hardlink":
                    target = _clean(member.link) or ""
                    if target in self._where:
                        self._where[name] = self._where[target]
                        if target in self._json:
                            self._json[name] = self._json[target]
                    continue
                if member.kind != "file":
                    self._where.pop(name, None)
                    continue
                self._where[name] = (position, member.size)
                small = member.size <= JSON_SIZE_LIMIT and kept + member.size <= _JSON_CACHE_LIMIT
                if small and member.size > 0:
                    head = self._read(stream, 1)
                    if head == b"{":  # JSON: index.json, a manifest, a config
                        self._json[name] = head + self._read(stream, member.size - 1)
                        kept += member.size
        finally:
            stream.close()

    def _read(self, stream: _native.TarStream, count: int) -> bytes:
        parts = []
        while count > 0:
            try:
                chunk = stream.read(min(count, _CHUNK))
            except TowlineError as exc:
                raise archive_error(exc, self._description) from exc
            if not chunk:
                break
            parts.append(chunk)
            count -= len(chunk)
        return b"".join(parts)

    def read(self, name: str, max_size: int) -> bytes:
        found = self._where.get(name)
        if found is None:
            raise missing_file(self._description, name, str(self._path))
        if found[1] > max_size:
            raise too_large(self._description, name, found[1], max_size)
        if name in self._json:
            return self._json[name]
        collected = _Collect()  # not kept in the first pass (not JSON-looking): read it again
        self.stream(name, max_size, collected, None)
        return b"".join(collected.parts)

    def stream(
        self, name: str, size: int | None, sink: BlobSink, progress: ProgressCallback | None
    ) -> None:
        found = self._where.get(name)
        if found is None:
            raise missing_file(self._description, name, str(self._path))
        target, actual = found
        with self._lock:
            try:
                self._feed(
                    name, target, actual if size is None else min(size, actual), sink, progress
                )
            except BaseException:
                self.close()  # a stream that failed only raises again: the next read reopens
                raise

    def _feed(
        self,
        name: str,
        target: int,
        length: int,
        sink: BlobSink,
        progress: ProgressCallback | None,
    ) -> None:
        stream = self._stream
        if stream is None or self._position >= target:
            self.close()  # behind us: start a new pass
            stream = self._stream = _native.TarStream(self._path)
            self._position = -1
        for position, _ in self._members(stream, start=self._position + 1):
            self._position = position
            if position == target:
                break
        else:
            raise TransportError(
                f"{self._description}: {name} is gone on a second read of {self._path}: "
                "the file changed while it was read",
                slug="bad_tar",
            )
        while length > 0:
            chunk = self._read(stream, min(length, _CHUNK))
            if not chunk:
                break  # short: the sink reports the size mismatch
            sink.write(chunk)
            length -= len(chunk)
            if progress is not None:
                progress(len(chunk))

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
