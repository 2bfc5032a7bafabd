"""The members of a tar archive, read in place and never extracted: the archive transports' reader.

:func:`open_tar` picks the way from the file's first bytes:

* :class:`IndexedTar`: an uncompressed tar is indexed once by the native core
  (``_native.tar_index``: every member's offset), and members are read with
  ``os.pread`` at their offsets, so several may be read at once;
* :class:`StreamedTar`: a compressed tar cannot be seeked, and is not
  decompressed to disk either. A first pass (``_native.TarStream``) lists the
  members, remembers the first bytes of each file (its head) and keeps the small
  ones the transport asks for, within a budget; a member is then streamed from a
  pass that skips to it, and the next one continues from there when it lies
  further on (a new pass when it lies behind). Members are read one at a time.

What differs between transports is given by their :class:`TarRules`: how member
names are cleaned, how a name and its links are resolved, what a first pass
keeps, and the wording of errors. Nothing is ever written, so hostile names only
fail to match, or are refused by the rules.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from towline import _native
from towline.errors import TowlineError, TransportError
from towline.transports.base import BlobSink, ProgressCallback

__all__ = [
    "CHUNK",
    "HEAD_SIZE",
    "Catalog",
    "IndexedTar",
    "Member",
    "StreamedTar",
    "TarMembers",
    "TarRules",
    "link_target",
    "open_tar",
]

#: Bytes handed to a sink (or read from the stream) at once.
CHUNK = 1 << 20
#: Bytes of each member's start remembered, enough to tell its compression.
HEAD_SIZE = 8


@dataclass(frozen=True)
class Member:
    """One tar member: its position in the archive (first is 0), cleaned name, kind, size.

    ``offset`` is where its data starts in an uncompressed archive (0 when streamed);
    ``link`` is the target of a symbolic or hard link, as stored.
    """

    ordinal: int
    name: str
    kind: str
    size: int
    offset: int
    link: str


def link_target(member: Member) -> str:
    """Where a link points, as a name from the archive root.

    A symbolic link's target is relative to the link's directory, a hard link's to
    the root. An absolute target stays absolute, so that rules refuse it as outside
    the archive (c/image would join it under the link's directory, and find nothing).
    """
    directory = member.name.rpartition("/")[0]
    if member.kind != "symlink" or member.link.startswith("/") or not directory:
        return member.link
    return f"{directory}/{member.link}"


class Catalog:
    """Every member of an archive, in order, found by cleaned name."""

    def __init__(self, clean: Callable[[str], str]) -> None:
        self._clean = clean
        self._named: dict[str, list[Member]] = {}

    def add(self, ordinal: int, entry: _native.TarMember) -> Member:
        """Record the native member ``entry``, the archive's ``ordinal``-th."""
        member = Member(
            ordinal, self._clean(entry.name), entry.kind, entry.size, entry.offset or 0, entry.link
        )
        self._named.setdefault(member.name, []).append(member)
        return member

    def first(self, name: str) -> Member | None:
        """The first member named ``name`` (once cleaned), as c/image finds one."""
        found = self._named.get(self._clean(name))
        return found[0] if found else None

    def last(self, name: str, before: int | None = None) -> Member | None:
        """The last member named ``name`` (before the ``before``-th), as an untar leaves it."""
        for member in reversed(self._named.get(self._clean(name), ())):
            if before is None or member.ordinal < before:
                return member
        return None

    def __contains__(self, name: str) -> bool:
        return self._clean(name) in self._named


class TarRules(Protocol):
    """What a transport decides about its archives: names, links, what is kept, its messages."""

    #: The archive as messages name it (the transport reference).
    description: str
    #: Bytes a first pass over a compressed archive keeps, in all.
    kept_budget: int

    def clean(self, name: str) -> str:
        """A member name as lookups compare it (``./index.json`` is ``index.json``)."""

    def lookup(self, catalog: Catalog, name: str, what: str) -> Member:
        """The regular file ``name`` denotes, following links as the transport does.

        MUST raise :class:`TransportError` when there is none. ``what`` names it in messages.
        """

    def keep(self, member: Member, head: bytes) -> bool:
        """Whether a first pass keeps the regular file ``member`` (which starts with ``head``)."""

    def damaged(self, exc: TowlineError) -> TransportError:
        """The native core's error about the archive, as the transport words it."""

    def truncated(self, member: Member) -> TransportError:
        """``member``'s data ends early (or it is gone on a later pass)."""

    def too_large(self, member: Member, limit: int, what: str) -> TransportError:
        """``member`` is larger than ``limit``, the most a caller reads whole."""


def open_tar(path: Path, rules: TarRules) -> TarMembers:
    """The members of the tar at ``path``: indexed when it is uncompressed, else streamed."""
    try:
        compression = _native.sniff_archive(path)
    except TransportError:
        raise
    except TowlineError as exc:
        raise rules.damaged(exc) from exc
    if compression == "none":
        return IndexedTar(path, rules)
    return StreamedTar(path, rules)


class TarMembers(ABC):
    """The members of one archive: looked up by name, then read whole, by their head or streamed."""

    #: Whether :meth:`copy` and :meth:`stream` may run on several threads at once.
    parallel: bool

    def __init__(self, path: Path, rules: TarRules) -> None:
        self.path = path
        self.rules = rules
        self.catalog = Catalog(rules.clean)

    def lookup(self, name: str, what: str = "") -> Member:
        """The regular file ``name`` denotes, as the rules resolve names and links."""
        return self.rules.lookup(self.catalog, name, what)

    def read(self, member: Member, limit: int, what: str = "") -> bytes:
        """A small member whole; refused, before reading it, when larger than ``limit``."""
        if member.size > limit:
            raise self.rules.too_large(member, limit, what)
        return self._whole(member)

    def stream(
        self,
        member: Member,
        sink: BlobSink,
        progress: ProgressCallback | None,
        length: int | None = None,
    ) -> None:
        """:meth:`copy` into ``sink``, reporting each chunk to ``progress``."""

        def write(chunk: bytes) -> None:
            sink.write(chunk)
            if progress is not None:
                progress(len(chunk))

        self.copy(member, write, length)

    @abstractmethod
    def head(self, member: Member) -> bytes:
        """The first bytes of a member (up to :data:`HEAD_SIZE`)."""

    @abstractmethod
    def copy(
        self, member: Member, write: Callable[[bytes], object], length: int | None = None
    ) -> None:
        """All of ``member`` (or its first ``length`` bytes), in :data:`CHUNK` chunks, to ``write``.

        Raises the rules' :meth:`~TarRules.truncated` when the data ends early.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the file; safe twice."""

    @abstractmethod
    def _whole(self, member: Member) -> bytes:
        """Every byte of ``member``, at once."""


class IndexedTar(TarMembers):
    """An uncompressed archive: one native index, then ``pread`` at offsets (thread-safe)."""

    parallel = True

    def __init__(self, path: Path, rules: TarRules) -> None:
        super().__init__(path, rules)
        self._fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            end = os.fstat(self._fd).st_size
            try:
                entries = _native.tar_index(path)
            except TowlineError as exc:
                raise rules.damaged(exc) from exc
            for ordinal, entry in enumerate(entries):
                member = self.catalog.add(ordinal, entry)
                if member.kind == "file" and member.offset + member.size > end:
                    raise rules.truncated(member)
        except BaseException:
            self.close()
            raise

    def _pread(self, member: Member, length: int, at: int) -> bytes:
        if self._fd is None:
            raise TransportError(f"{self.rules.description}: the archive is closed", slug="closed")
        data = os.pread(self._fd, length, member.offset + at)
        if len(data) != length:
            raise self.rules.truncated(member)
        return data

    def _whole(self, member: Member) -> bytes:
        return self._pread(member, member.size, 0)

    def head(self, member: Member) -> bytes:
        return self._pread(member, min(HEAD_SIZE, member.size), 0)

    def copy(
        self, member: Member, write: Callable[[bytes], object], length: int | None = None
    ) -> None:
        end = member.size if length is None else min(length, member.size)
        done = 0
        while done < end:
            chunk = self._pread(member, min(CHUNK, end - done), done)
            write(chunk)
            done += len(chunk)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class StreamedTar(TarMembers):
    """A compressed archive, read in order: heads and small members kept, one pass per step back."""

    parallel = False

    def __init__(self, path: Path, rules: TarRules) -> None:
        super().__init__(path, rules)
        self._heads: dict[int, bytes] = {}
        self._kept: dict[int, bytes] = {}
        self._stream: _native.TarStream | None = None
        self._position = 0  # members the open stream has passed: the next one's ordinal
        self._lock = threading.Lock()
        self._first_pass()

    # === the first pass: names, sizes, heads, the small members the rules keep
    def _first_pass(self) -> None:
        budget = self.rules.kept_budget
        stream = self._open()
        try:
            ordinal = 0
            while (entry := self._next(stream)) is not None:
                member = self.catalog.add(ordinal, entry)
                ordinal += 1
                if member.kind != "file":
                    continue
                head = self._read_exactly(stream, member, min(HEAD_SIZE, member.size))
                self._heads[member.ordinal] = head
                if member.size <= budget and self.rules.keep(member, head):
                    budget -= member.size
                    rest = self._read_exactly(stream, member, member.size - len(head))
                    self._kept[member.ordinal] = head + rest
        finally:
            stream.close()

    def _whole(self, member: Member) -> bytes:
        kept = self._kept.get(member.ordinal)
        if kept is not None:
            return kept
        chunks: list[bytes] = []  # not kept by the first pass: read it again
        self.copy(member, chunks.append)
        return b"".join(chunks)

    def head(self, member: Member) -> bytes:
        return self._heads.get(member.ordinal, b"")

    # === later passes, one member at a time
    def copy(
        self, member: Member, write: Callable[[bytes], object], length: int | None = None
    ) -> None:
        left = member.size if length is None else min(length, member.size)
        with self._lock:
            try:
                stream = self._seek(member)
                while left > 0:
                    chunk = self._read(stream, min(CHUNK, left))
                    if not chunk:
                        raise self.rules.truncated(member)
                    write(chunk)
                    left -= len(chunk)
            except BaseException:
                # A failed stream only raises again: the next copy starts a new pass.
                self._close_stream()
                raise

    def _seek(self, member: Member) -> _native.TarStream:
        """The stream positioned at the start of ``member``'s data."""
        if self._stream is None or member.ordinal < self._position:
            self._close_stream()  # behind us: start a new pass
            self._stream = self._open()
            self._position = 0
        stream = self._stream
        while self._position <= member.ordinal:
            if self._next(stream) is None:
                raise self.rules.truncated(member)  # the file changed since the first pass
            self._position += 1
        return stream

    # === native calls, their errors as the archive's
    def _open(self) -> _native.TarStream:
        try:
            return _native.TarStream(self.path)
        except TowlineError as exc:
            raise self.rules.damaged(exc) from exc

    def _next(self, stream: _native.TarStream) -> _native.TarMember | None:
        try:
            return stream.next()
        except TowlineError as exc:
            raise self.rules.damaged(exc) from exc

    def _read(self, stream: _native.TarStream, length: int) -> bytes:
        try:
            return stream.read(length)
        except TowlineError as exc:
            raise self.rules.damaged(exc) from exc

    def _read_exactly(self, stream: _native.TarStream, member: Member, length: int) -> bytes:
        parts: list[bytes] = []
        left = length
        while left > 0:
            chunk = self._read(stream, min(CHUNK, left))
            if not chunk:
                raise self.rules.truncated(member)
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def close(self) -> None:
        self._close_stream()
