"""Reading members of a tar archive in place, never extracting it.

An uncompressed archive is indexed once by the native core
(``_native.tar_index``) and read with ``os.pread`` at each member's offset, so
several layers can be read at once. A compressed archive (``.tar.gz``,
``.tar.zst``…) is read as a stream (``_native.TarStream``): a first pass lists
the members and keeps the small JSON documents (``manifest.json`` and configs);
layers are then streamed in archive order, and a member behind the stream's
position opens a new pass. No temporary copy of the archive is made.

Member names are compared after Go's ``path.Clean``, and the first member of a
name wins, as in containers/image. A symbolic or hard link is followed once,
and must end at a regular file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from towline import _native
from towline.errors import TowlineError, TransportError
from towline.quoting import go_quote
from towline.transports.base import BlobSink, ProgressCallback
from towline.transports.docker_archive_format import (
    MANIFEST_JSON,
    MANIFEST_JSON_LIMIT,
    clean_path,
    escapes,
    refuse_escape,
)

__all__ = ["CHUNK", "ArchiveMembers", "Member", "open_members"]

#: Bytes handed to a sink at once.
CHUNK = 1 << 20
#: JSON kept from the first pass over a compressed archive (configs beside manifest.json).
_KEPT_JSON_BUDGET = 32 << 20
_CONFIG_CANDIDATE_LIMIT = 4 << 20
#: Bytes of each member's start remembered, enough to tell its compression.
HEAD_SIZE = 8
_KINDS = {"dir": "directory", "symlink": "symbolic link", "other": "special file"}


@dataclass(frozen=True)
class Member:
    """One tar member: its position in the archive (first is 0), cleaned name, kind, size."""

    ordinal: int
    name: str
    kind: str
    size: int
    offset: int
    link: str


class ArchiveMembers(Protocol):
    """Members of one archive, by name."""

    @property
    def parallel(self) -> bool:
        """Whether :meth:`copy` may run on several threads at once."""

    def lookup(self, name: str, what: str) -> Member:
        """The regular file ``name`` (cleaned) denotes, following one link."""

    def read(self, member: Member, limit: int, what: str) -> bytes:
        """A small member whole; refused when larger than ``limit``."""

    def head(self, member: Member) -> bytes:
        """The first bytes of a member (up to :data:`HEAD_SIZE`)."""

    def copy(self, member: Member, write: Callable[[bytes], object]) -> None:
        """Every byte of ``member``, in chunks of at most :data:`CHUNK`, to ``write``."""

    def close(self) -> None:
        """Release the file; safe twice."""


def open_members(path: Path, archive: str) -> ArchiveMembers:
    """The members of the tar at ``path``; ``archive`` names it in errors."""
    if not path.exists():
        raise TransportError(
            f"{archive}: {path} does not exist; check the path", slug="archive_not_found"
        )
    if not path.is_file():
        raise TransportError(
            f"{archive}: {path} is not a file; a docker-archive: is a tar file "
            "(for a directory, use dir: or oci:)",
            slug="invalid_archive",
        )
    try:
        compression = _native.sniff_archive(path)
        if compression == "none":
            return _IndexedMembers(path, archive)
        return _StreamedMembers(path, archive)
    except OSError as exc:
        raise TransportError(
            f"{archive}: cannot read {path}: {exc.strerror or exc}", slug="io"
        ) from exc
    except TransportError:
        raise
    except TowlineError as exc:
        raise _damaged(archive, exc) from exc


def _damaged(archive: str, exc: TowlineError) -> TransportError:
    return TransportError(
        f"{archive}: cannot read the archive: {exc}; it is damaged, truncated or not a tar "
        "(re-create or download it again)",
        slug=exc.slug if exc.slug != "error" else "bad_tar",
    )


def _truncated(archive: str, member: Member) -> TransportError:
    return TransportError(
        f"{archive}: {member.name} ends early: the archive is truncated (re-create or download "
        "it again)",
        slug="truncated",
    )


class _Catalog:
    """Members by cleaned name (the first of a name wins), and the one-link resolution."""

    def __init__(self, archive: str) -> None:
        self.archive = archive
        self.by_name: dict[str, Member] = {}

    def add(self, ordinal: int, name: str, kind: str, size: int, offset: int, link: str) -> Member:
        member = Member(ordinal, clean_path(name), kind, size, offset, link)
        self.by_name.setdefault(member.name, member)
        return member

    def lookup(self, name: str, what: str) -> Member:
        member = self._find(name, what)
        if member.kind in ("symlink", "hardlink"):
            link = member
            if link.kind == "symlink":
                target = posix_join(posix_dirname(link.name), link.link)
            else:
                target = link.link  # hard link names are relative to the archive root
            if escapes(clean_path(target)):
                raise refuse_escape(
                    self.archive, f"{named(what, name)} is a link to {go_quote(link.link)}, which"
                )
            member = self._find(target, f"the target of the link {link.name}:")
        if member.kind != "file":
            kind = _KINDS.get(member.kind, member.kind)
            raise TransportError(
                f"{self.archive}: {named(what, member.name)} is a {kind}, not a regular file; "
                "the archive is malformed",
                slug="invalid_archive",
            )
        return member

    def _find(self, name: str, what: str) -> Member:
        member = self.by_name.get(clean_path(name))
        if member is not None:
            return member
        if name != MANIFEST_JSON:
            hint = "the archive is incomplete (re-create it with `docker save`)"
        elif "oci-layout" in self.by_name and "index.json" in self.by_name:
            hint = "it is an OCI archive, not a `docker save` one: use oci-archive:"
        else:
            hint = "it is not a `docker save` archive"
        raise TransportError(
            f"{self.archive}: {named(what, name)} is missing from the archive: {hint}",
            slug="invalid_archive",
        )


def named(what: str, name: str) -> str:
    """``name`` in a message: quoted after the phrase ``what``, or bare when there is none."""
    return f"{what} {go_quote(name)}" if what else name


def posix_dirname(name: str) -> str:
    """The directory part of a member name."""
    return name.rpartition("/")[0]


def posix_join(directory: str, name: str) -> str:
    """``name`` relative to ``directory``; an absolute name stays absolute.

    So an absolute link target is refused as outside the archive (c/image would
    join it under the link's directory, and find nothing there).
    """
    if name.startswith("/") or not directory:
        return name
    return f"{directory}/{name}"


class _IndexedMembers(_Catalog):
    """An uncompressed archive: one native index, then ``pread`` at offsets."""

    parallel = True

    def __init__(self, path: Path, archive: str) -> None:
        super().__init__(archive)
        self._fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(self._fd).st_size
            try:
                entries = _native.tar_index(path)
            except TowlineError as exc:
                raise _damaged(archive, exc) from exc
            for ordinal, entry in enumerate(entries):
                member = self.add(
                    ordinal, entry.name, entry.kind, entry.size, entry.offset or 0, entry.link
                )
                if member.kind == "file" and member.offset + member.size > size:
                    raise _truncated(archive, member)
        except BaseException:
            self.close()
            raise

    def _pread(self, member: Member, length: int, at: int) -> bytes:
        if self._fd is None:
            raise TransportError(f"{self.archive}: the archive is closed", slug="closed")
        data = os.pread(self._fd, length, member.offset + at)
        if len(data) != length:
            raise _truncated(self.archive, member)
        return data

    def read(self, member: Member, limit: int, what: str) -> bytes:
        _check_limit(self.archive, member, limit, what)
        return self._pread(member, member.size, 0)

    def head(self, member: Member) -> bytes:
        return self._pread(member, min(HEAD_SIZE, member.size), 0)

    def copy(self, member: Member, write: Callable[[bytes], object]) -> None:
        done = 0
        while done < member.size:
            length = min(CHUNK, member.size - done)
            write(self._pread(member, length, done))
            done += length

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _check_limit(archive: str, member: Member, limit: int, what: str) -> None:
    if member.size > limit:
        raise TransportError(
            f"{archive}: {named(what, member.name)} is {member.size} bytes, more than the "
            f"{limit} allowed (as containers/image); the archive is malformed or hostile",
            slug="too_large",
        )


class _StreamedMembers(_Catalog):
    """A compressed archive: read as a stream, one pass per step back."""

    parallel = False

    def __init__(self, path: Path, archive: str) -> None:
        super().__init__(archive)
        self._path = path
        self._heads: dict[int, bytes] = {}
        self._kept: dict[int, bytes] = {}
        self._stream: _native.TarStream | None = None
        self._position = 0  # members the open stream has passed: the next one's ordinal
        self._lock = threading.Lock()
        self._first_pass()

    # === the first pass: names, sizes, heads, small JSON
    def _first_pass(self) -> None:
        budget = _KEPT_JSON_BUDGET
        stream = self._open()
        try:
            ordinal = 0
            while (entry := self._next(stream)) is not None:
                member = self.add(ordinal, entry.name, entry.kind, entry.size, 0, entry.link)
                ordinal += 1
                if member.kind != "file":
                    continue
                head = self._read_exactly(stream, member, min(HEAD_SIZE, member.size))
                self._heads[member.ordinal] = head
                keep = member.name == MANIFEST_JSON and member.size <= MANIFEST_JSON_LIMIT
                if not keep and _maybe_config(member, head) and member.size <= budget:
                    budget -= member.size
                    keep = True
                if keep:
                    rest = self._read_exactly(stream, member, member.size - len(head))
                    self._kept[member.ordinal] = head + rest
        finally:
            stream.close()

    def read(self, member: Member, limit: int, what: str) -> bytes:
        _check_limit(self.archive, member, limit, what)
        kept = self._kept.get(member.ordinal)
        if kept is not None:
            return kept
        chunks: list[bytes] = []
        self.copy(member, chunks.append)
        return b"".join(chunks)

    def head(self, member: Member) -> bytes:
        return self._heads.get(member.ordinal, b"")

    def copy(self, member: Member, write: Callable[[bytes], object]) -> None:
        with self._lock:
            stream = self._seek(member)
            try:
                done = 0
                while done < member.size:
                    chunk = self._read(stream, min(CHUNK, member.size - done))
                    if not chunk:
                        raise _truncated(self.archive, member)
                    write(chunk)
                    done += len(chunk)
            except BaseException:
                # A failed stream is unusable; the next copy starts a new pass.
                self._close_stream()
                raise

    def _seek(self, member: Member) -> _native.TarStream:
        """The stream positioned at the start of ``member``'s data."""
        if self._stream is None or member.ordinal < self._position:
            self._close_stream()
            self._stream = self._open()
            self._position = 0
        stream = self._stream
        while self._position <= member.ordinal:
            if self._next(stream) is None:
                raise _truncated(self.archive, member)
            self._position += 1
        return stream

    # === native calls, their errors as the archive's
    def _open(self) -> _native.TarStream:
        try:
            return _native.TarStream(self._path)
        except TowlineError as exc:
            raise _damaged(self.archive, exc) from exc

    def _next(self, stream: _native.TarStream) -> _native.TarMember | None:
        try:
            return stream.next()
        except TowlineError as exc:
            raise _damaged(self.archive, exc) from exc

    def _read(self, stream: _native.TarStream, length: int) -> bytes:
        try:
            return stream.read(length)
        except TowlineError as exc:
            raise _damaged(self.archive, exc) from exc

    def _read_exactly(self, stream: _native.TarStream, member: Member, length: int) -> bytes:
        parts: list[bytes] = []
        left = length
        while left > 0:
            chunk = self._read(stream, left)
            if not chunk:
                raise _truncated(self.archive, member)
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def close(self) -> None:
        self._close_stream()


def _maybe_config(member: Member, head: bytes) -> bool:
    # Configs are JSON objects, named <hex>.json (docker save) or blobs/<alg>/<hex> (Docker 25+).
    named = member.name.endswith(".json") or member.name.startswith("blobs/")
    return named and member.size <= _CONFIG_CANDIDATE_LIMIT and head.lstrip()[:1] == b"{"


def copy_to_sink(
    members: ArchiveMembers,
    member: Member,
    sink: BlobSink,
    progress: ProgressCallback | None,
) -> None:
    """Stream ``member`` into ``sink`` in chunks, reporting each to ``progress``."""

    def write(chunk: bytes) -> None:
        sink.write(chunk)
        if progress is not None:
            progress(len(chunk))

    members.copy(member, write)
