"""Content-addressed blobs: ``blobs/<alg>/<hex>``, exactly the bytes that were fetched.

A file at its final path is always complete and verified: writers (this module for small
blobs, the native sinks for layers) write a ``.tmp-*`` sibling, check the digest, fsync,
then rename it into place. A blob on disk may still be unknown to the database (a crash
between the rename and the commit); a later commit adopts it, recovery removes it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from towline.digest import SUPPORTED_ALGORITHMS, parse_digest
from towline.errors import DigestMismatchError, StoreError

__all__ = [
    "DIGEST_HEX_LENGTHS",
    "TMP_PREFIX",
    "BlobStore",
    "compute_digest",
    "fsync_dir",
    "split_digest",
]

# Algorithms a blob may be addressed by, with the length of their hex encoding: the ones
# towline (and its native sinks) can verify.
DIGEST_HEX_LENGTHS = SUPPORTED_ALGORITHMS

# Prefix of in-progress siblings; recovery removes them when nobody else has the store open.
TMP_PREFIX = ".tmp-"


def split_digest(digest: str) -> tuple[str, str]:
    """Split ``"alg:hex"`` into its parts; InvalidReferenceError names what is wrong."""
    parsed = parse_digest(digest)
    return parsed.algorithm, parsed.hex


def compute_digest(alg: str, data: bytes) -> str:
    """Return ``"alg:hex"`` of ``data`` for an algorithm split_digest accepted.

    blake3 needs the optional ``blake3`` package.
    """
    if alg != "blake3":
        return f"{alg}:{hashlib.new(alg, data).hexdigest()}"
    try:
        import blake3
    except ImportError as exc:
        raise StoreError(
            "cannot verify a blake3 digest: the blake3 package is not installed; pip install blake3"
        ) from exc
    return f"blake3:{blake3.blake3(data).hexdigest()}"


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """The ``blobs/`` tree of one store: paths, existence, reads and small atomic writes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        """Final path of ``digest``; its directory is created so a sink can stage beside it."""
        alg, hex_ = split_digest(digest)
        directory = self.root / alg
        directory.mkdir(parents=True, exist_ok=True)
        return directory / hex_

    def has(self, digest: str) -> bool:
        """True when the blob's file is present (it is then complete and verified)."""
        alg, hex_ = split_digest(digest)
        return (self.root / alg / hex_).is_file()

    def read(self, digest: str) -> bytes:
        """The blob's bytes; StoreError when it is not in the store."""
        alg, hex_ = split_digest(digest)
        path = self.root / alg / hex_
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise StoreError(
                f"blob {digest} is not in the store ({path}); pull the image again",
                slug="blob_unknown",
            ) from exc
        except OSError as exc:
            raise StoreError(f"cannot read blob {path}: {exc.strerror}") from exc

    def write(self, digest: str, data: bytes) -> Path:
        """Verify ``data`` against ``digest``, then write it atomically; return the path.

        An existing file is kept as is: it was verified when it was written.
        """
        alg, _ = split_digest(digest)
        actual = compute_digest(alg, data)
        if actual != digest:
            raise DigestMismatchError(
                f"blob content does not match its digest: expected {digest}, got {actual}; "
                "the source sent different bytes, pull again",
                expected=digest,
                actual=actual,
            )
        final = self.path(digest)
        if final.is_file():
            return final
        tmp = final.with_name(f"{TMP_PREFIX}{secrets.token_hex(8)}")
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, final)
            fsync_dir(final.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(
                f"cannot write blob {final}: {exc.strerror}; check free space and permissions"
            ) from exc
        return final

    def iter_digests(self) -> Iterator[tuple[str, Path]]:
        """Every complete blob on disk as ``(digest, path)``, skipping staging files."""
        for alg in DIGEST_HEX_LENGTHS:
            directory = self.root / alg
            if not directory.is_dir():
                continue
            for entry in directory.iterdir():
                if not entry.name.startswith(TMP_PREFIX):
                    yield f"{alg}:{entry.name}", entry

    def iter_staging(self) -> Iterator[Path]:
        """Every ``.tmp-*`` sibling left by a writer, in every algorithm directory."""
        if not self.root.is_dir():
            return
        for directory in self.root.iterdir():
            if directory.is_dir():
                yield from (e for e in directory.iterdir() if e.name.startswith(TMP_PREFIX))
