"""Typed stub of towline's native core (Rust, ``rust/src``); checked by mypy.stubtest.

Every call that touches bytes releases the GIL. Errors are raised as classes of
:mod:`towline.errors`: :class:`~towline.errors.DigestMismatchError` (slugs
``digest_mismatch``, ``diff_id_mismatch``, ``size_mismatch``),
:class:`~towline.errors.InvalidLayerError` (``unsupported_compression``,
``corrupt_stream``, ``unsafe_path``, ``bad_tar``, ``decompression_bomb``,
``limit_exceeded``) and :class:`~towline.errors.StoreError` (``io``).
Misuse (a bad argument, a closed stream) raises :class:`ValueError`.
"""

from collections.abc import Sequence
from os import PathLike
from types import TracebackType
from typing import Literal, TypedDict, final

__version__: str

__all__ = [
    "BlobSink",
    "LayerSink",
    "TarMember",
    "TarStream",
    "__version__",
    "apply_layers",
    "build_profile",
    "hash_file",
    "sniff_archive",
    "tar_index",
    "write_tar",
]

_Path = str | PathLike[str]

class _SinkResult(TypedDict):
    digest: str
    size: int
    diff_id: str | None
    uncompressed_size: int | None
    compression: Literal["none", "gzip", "zstd", "bzip2", "xz"] | None
    entries: int
    skipped_devices: int
    skipped_xattrs: int
    unpack_existed: bool

@final
class LayerSink:
    """Streams one layer blob: hash, decompress, hash (diff_id), untar; verify; rename.

    ``blob_path`` and ``unpack_dir`` (either may be None) are written through
    temporary siblings and renamed into place by :meth:`finish` only after the
    size, digest and diff_id checks pass; on any failure nothing is left behind.
    ``pipelined`` overlaps hashing with decompression/untar on a worker thread;
    ``durable`` fsyncs the blob and syncfs(2)-es the tree before the rename.
    ``devices`` is ``"create"``, ``"skip"`` or ``"refuse"`` (default: create when
    root, else skip); ``same_owner`` applies the archive's uid/gid (default: when
    root); ``max_ratio`` caps uncompressed/compressed bytes (0 disables).
    Errors of the stream itself are reported by :meth:`finish`, after the
    digest check, so a damaged transfer always shows as a digest mismatch.
    """

    def __new__(
        cls,
        blob_path: _Path | None,
        unpack_dir: _Path | None,
        expected_digest: str,
        expected_size: int | None,
        expected_diff_id: str | None = None,
        *,
        pipelined: bool = True,
        durable: bool = True,
        same_owner: bool | None = None,
        devices: Literal["create", "skip", "refuse"] | None = None,
        xattrs: bool = True,
        max_ratio: float = 1000.0,
        max_entries: int | None = None,
        decompressed_path: _Path | None = None,
    ) -> LayerSink: ...
    def write(self, data: bytes) -> None:
        """Appends the next chunk of the compressed blob."""
    def finish(self) -> _SinkResult:
        """Verifies size, digest and diff_id, then renames blob and tree into place."""
    def abort(self) -> None:
        """Discards everything written so far; safe to call twice."""
    @property
    def bytes_written(self) -> int:
        """Bytes accepted so far: where an HTTP Range request resumes."""
    def __enter__(self) -> LayerSink: ...
    def __exit__(
        self,
        *_exc: type[BaseException] | BaseException | TracebackType | None,
    ) -> bool: ...

@final
class BlobSink:
    """Streams a blob stored as is (config, manifest, mirrored layer), verified."""

    def __new__(
        cls,
        blob_path: _Path,
        expected_digest: str,
        expected_size: int | None = None,
        *,
        durable: bool = True,
    ) -> BlobSink: ...
    def write(self, data: bytes) -> None: ...
    def finish(self) -> _SinkResult: ...
    def abort(self) -> None: ...
    @property
    def bytes_written(self) -> int: ...
    def __enter__(self) -> BlobSink: ...
    def __exit__(
        self,
        *_exc: type[BaseException] | BaseException | TracebackType | None,
    ) -> bool: ...

def hash_file(path: _Path, algorithm: str = "sha256") -> str:
    """Returns "alg:hex" of a file (sha256, sha512 or blake3)."""

def apply_layers(
    layers: list[_Path],
    dest: _Path,
    *,
    same_owner: bool | None = None,
    devices: bool | None = None,
) -> dict[str, int]:
    """Merges unpacked layers (lowest first) into ``dest``, honouring whiteouts."""

def build_profile() -> Literal["release", "debug"]:
    """The cargo profile the extension was built with."""

# === archives (docker-archive:, oci-archive:, docker-daemon:)

_Compression = Literal["none", "gzip", "zstd", "bzip2", "xz"]
_MemberKind = Literal["file", "dir", "symlink", "hardlink", "other"]

@final
class TarMember:
    """One archive member: read-only, compared and hashed by value.

    ``name`` is the member name as stored (UTF-8, invalid bytes as U+FFFD), not
    cleaned: "./a", "a//b" and "a/" come back as written. ``kind`` is "other" for
    devices, FIFOs and sparse files. ``size`` counts data bytes (0 for anything
    but a regular file). ``offset`` is where the data starts in the uncompressed
    archive (from :func:`tar_index`; None from :class:`TarStream`). ``link`` is
    the target of a symlink or hardlink, else "".
    """

    def __new__(
        cls,
        name: str,
        kind: _MemberKind,
        size: int = 0,
        offset: int | None = None,
        link: str = "",
    ) -> TarMember: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> _MemberKind: ...
    @property
    def size(self) -> int: ...
    @property
    def offset(self) -> int | None: ...
    @property
    def link(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

def tar_index(path: _Path, *, max_members: int = 1_000_000) -> list[TarMember]:
    """Lists the members of an UNCOMPRESSED tar file, with the offset of each one's data.

    Reads only the headers and seeks over the data, so a multi-gigabyte archive is
    listed in milliseconds; read a member with a positioned read of ``size`` bytes
    at ``offset``. Headers are decoded as by the untar: PAX and GNU long names are
    capped (1 MiB), names at 4096 bytes, members at ``max_members``
    (``limit_exceeded``). What follows the end-of-archive marker is ignored; an
    archive that ends inside a member is ``bad_tar`` ("truncated"). A compressed
    file raises ValueError naming its compression: use :class:`TarStream` (or
    :func:`sniff_archive` first). The message of every error names the file.
    """

def sniff_archive(path: _Path) -> _Compression:
    """The compression of an archive file, from its first bytes ("none" is a plain tar).

    Raises :class:`~towline.errors.InvalidLayerError` (``unsupported_compression``)
    for anything else (zip, lz4, a file too short to be a tar...).
    """

@final
class TarStream:
    """Reads a tar file member by member; gzip, zstd, bzip2 and xz are sniffed and decoded.

    ``next()`` (or iterating) moves to the next member, skipping what was not
    read of the current one; ``read()`` returns its data. Headers are bounded as
    for :func:`tar_index` (``max_members`` too). What follows the end-of-archive
    marker is ignored (``docker save`` pads), but a member cut short is
    ``bad_tar`` ("truncated") or ``corrupt_stream``. After an error the stream
    only raises ValueError; open the file again to retry. Using it after
    :meth:`close` raises ValueError.
    """

    def __new__(cls, path: _Path, *, max_members: int = 1_000_000) -> TarStream: ...
    @property
    def compression(self) -> _Compression: ...
    def next(self) -> TarMember | None:
        """The next member; None at the end of the archive (and after)."""
    def read(self, size: int = 1048576) -> bytes:
        """Up to ``size`` bytes of the member's data (fewer only at its end); b"" once read."""
    def close(self) -> None:
        """Closes the file; safe to call twice."""
    def __iter__(self) -> TarStream: ...
    def __next__(self) -> TarMember: ...
    def __enter__(self) -> TarStream: ...
    def __exit__(
        self,
        *_exc: type[BaseException] | BaseException | TracebackType | None,
    ) -> bool: ...

def write_tar(
    path: _Path,
    entries: Sequence[tuple[str, bytes | _Path]],
    *,
    durable: bool = True,
) -> None:
    """Writes a new uncompressed tar at ``path``, atomically (staged sibling, then rename).

    Each entry is (name in the archive, content), in order: bytes are a regular
    file with that content; a path (str or PathLike) names a regular file whose
    content is copied (copy_file_range where possible; its size is taken when it
    is opened and exactly that many bytes must be read). A name ending in "/"
    with b"" is a directory. Output is deterministic: ustar headers, mode 0644
    files / 0755 directories, uid/gid 0, mtime 0, no user names; a PAX header
    only for a name ustar cannot hold (or a size of 8 GiB or more). Names that
    are empty, absolute, longer than 4096 bytes or hold a ".." component or a
    NUL raise ValueError before anything is written; on any failure nothing is
    left at ``path`` (an existing file there is kept). ``durable`` fsyncs the
    file and its directory.
    """
