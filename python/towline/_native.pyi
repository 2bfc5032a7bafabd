"""Typed stub of towline's native core (Rust, ``rust/src``); checked by mypy.stubtest.

Every call that touches bytes releases the GIL. Errors are raised as classes of
:mod:`towline.errors`: :class:`~towline.errors.DigestMismatchError` (slugs
``digest_mismatch``, ``diff_id_mismatch``, ``size_mismatch``),
:class:`~towline.errors.InvalidLayerError` (``unsupported_compression``,
``corrupt_stream``, ``unsafe_path``, ``bad_tar``, ``decompression_bomb``,
``limit_exceeded``) and :class:`~towline.errors.StoreError` (``io``).
"""

from os import PathLike
from types import TracebackType
from typing import Literal, TypedDict, final

__version__: str

__all__ = ["BlobSink", "LayerSink", "__version__", "apply_layers", "build_profile", "hash_file"]

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
