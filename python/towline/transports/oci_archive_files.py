"""The files of an OCI layout inside a tar, for ``oci-archive:``, read without extracting it.

c/image untars an archive to a temporary directory first; towline reads it in
place, through :mod:`towline.transports.tar_members` (:func:`open_archive` picks
the way): an uncompressed tar is an :class:`IndexedArchive`, read by offset and
by several threads at once; a compressed one a :class:`StreamedArchive`, whose
first pass keeps the small JSON members (index.json, manifests, configs: at most
4 MiB each, 64 MiB in all) and whose layers are streamed one at a time.

Members are named as an untar would leave them: ``./index.json`` and
``/index.json`` are ``index.json``, a later member of a name replaces an earlier
one, and a hard link is the file its target was when the link came (a link to
anything else, or from outside the layout, is ignored). Nothing is ever written,
so hostile names only fail to match.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from towline.errors import TowlineError, TransportError
from towline.transports.base import BlobSink, ProgressCallback
from towline.transports.oci_layout_source import (
    JSON_SIZE_LIMIT,
    LayoutFiles,
    missing_file,
    too_large,
)
from towline.transports.tar_members import Catalog, Member, StreamedTar, TarMembers, open_tar

__all__ = ["IndexedArchive", "StreamedArchive", "archive_error", "open_archive"]

#: All small JSON members a compressed archive's first pass keeps, together.
_JSON_CACHE_LIMIT = 64 << 20


def archive_error(exc: TowlineError, description: str) -> TransportError:
    """A native error about an archive, as a TransportError naming the transport reference."""
    return TransportError(f"{description}: {exc}", slug=exc.slug)


def open_archive(path: Path, description: str) -> LayoutFiles:
    """The layout in the tar at ``path``: indexed when uncompressed, else streamed."""
    if not path.is_file():
        problem = "is not a file" if path.exists() else "does not exist"
        raise TransportError(f"{description}: {path} {problem}", slug="not_found")
    members = open_tar(path, _LayoutRules(path, description))
    if isinstance(members, StreamedTar):
        return StreamedArchive(members)
    return IndexedArchive(members)


class _LayoutRules:
    """The :class:`~towline.transports.tar_members.TarRules` of a layout in a tar."""

    kept_budget = _JSON_CACHE_LIMIT

    def __init__(self, path: Path, description: str) -> None:
        self.description = description
        self._path = path

    def clean(self, name: str) -> str:
        # A leading "/" is dropped, as an untar would; ".." never names a layout file.
        return posixpath.normpath(name.lstrip("/"))

    def lookup(self, catalog: Catalog, name: str, what: str) -> Member:
        member = catalog.last(name)
        while member is not None and member.kind == "hardlink":
            target = self.clean(member.link)
            outside = target in (".", "..") or target.startswith("../")
            member = None if outside else catalog.last(target, before=member.ordinal)
        if member is None or member.kind != "file":
            raise missing_file(self.description, name, str(self._path))
        return member

    def keep(self, member: Member, head: bytes) -> bool:
        # JSON: index.json, a manifest, a config.
        return 0 < member.size <= JSON_SIZE_LIMIT and head[:1] == b"{"

    # === messages: a layout's (as a directory's), and a native error's with the reference
    def damaged(self, exc: TowlineError) -> TransportError:
        return archive_error(exc, self.description)

    def too_large(self, member: Member, limit: int, what: str) -> TransportError:
        return too_large(self.description, what or member.name, member.size, limit)

    def truncated(self, member: Member) -> TransportError:
        message = f"{member.name} runs past the end of {self._path}: truncated archive"
        return TransportError(f"{self.description}: {message}", slug="bad_tar")


class _ArchiveFiles:
    """:class:`~towline.transports.oci_layout_source.LayoutFiles` over a tar's members."""

    def __init__(self, members: TarMembers) -> None:
        self._members = members

    @property
    def parallel_reads(self) -> bool:
        return self._members.parallel

    def read(self, name: str, max_size: int) -> bytes:
        return self._members.read(self._members.lookup(name), max_size, name)

    def stream(
        self, name: str, size: int | None, sink: BlobSink, progress: ProgressCallback | None
    ) -> None:
        # Never more than promised: a longer member then fails the sink's digest check.
        self._members.stream(self._members.lookup(name), sink, progress, size)

    def close(self) -> None:
        self._members.close()


class IndexedArchive(_ArchiveFiles):
    """An uncompressed tar: members found by one index pass, read by offset (thread-safe)."""


class StreamedArchive(_ArchiveFiles):
    """A compressed tar, read in order: small JSON members kept, layers streamed on demand."""
