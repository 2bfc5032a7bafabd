"""Layers: OCI ChainIDs, layer rows, reference counts, and crash-safe deletion.

An unpacked layer lives at ``layers/<hex>/`` where ``<hex>`` is its OCI ChainID, so two
images with a common base share the base's directories. A layer is referenced by the
``image_layers`` rows of the images using it; when the last one goes, the layer row goes
in the same transaction and its directory right after.

Deleting files is the one place where the database and the filesystem must change
together. :class:`Trash` renames doomed files into ``tmp/trash-*`` *inside* the write
transaction (so a concurrent commit, which takes the same write lock, either sees the
files gone or sees them still referenced), then deletes them after the commit. A crash
before the commit leaves rows whose files sit in the trash: :func:`restore_abandoned`
moves them back on the next open. A directory is never deleted at its final path, so a
half-deleted layer can never be mistaken for a complete one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import sqlite3
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from towline.errors import StoreError
from towline.store.blobs import DIGEST_HEX_LENGTHS, TMP_PREFIX, BlobStore, split_digest
from towline.store.leases import live_holds, token_path
from towline.store.records import LayerRecord

__all__ = [
    "LayerDirs",
    "Trash",
    "chain_ids",
    "check_chain",
    "delete_layers",
    "insert_layers",
    "read_layer",
    "recover",
    "refcount",
    "remove_tree",
    "restore_abandoned",
    "unreferenced_blobs",
    "unreferenced_layers",
]

TRASH_PREFIX = "trash-"
# Names of entries inside a trash directory: "layer-<hex>" or "blob-<alg>-<hex>".
_TRASH_ENTRY = re.compile(
    r"layer-(?P<layer>[0-9a-f]{64})|blob-(?P<alg>[a-z0-9]+)-(?P<hex>[0-9a-f]+)"
)


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """OCI ChainIDs of a layer stack, bottom to top.

    ``chain(L0) = diff_id(L0)``; ``chain(Ln) = "sha256:" + sha256(chain(Ln-1) + " " +
    diff_id(Ln))`` (image-spec config.md). Not c/storage's layer ID, which joins with "+".
    """
    result: list[str] = []
    for diff_id in diff_ids:
        split_digest(diff_id)
        if not result:
            result.append(diff_id)
        else:
            joined = f"{result[-1]} {diff_id}".encode()
            result.append("sha256:" + hashlib.sha256(joined).hexdigest())
    return result


def check_chain(layers: Sequence[LayerRecord]) -> None:
    """Raise StoreError unless each record's chain_id and parent follow from the diff_ids."""
    expected = chain_ids([layer.diff_id for layer in layers])
    parent: str | None = None
    for index, (layer, chain_id) in enumerate(zip(layers, expected, strict=True)):
        if layer.chain_id != chain_id or layer.parent != parent:
            raise StoreError(
                f"layer {index} (diff_id {layer.diff_id}) has chain_id {layer.chain_id} and "
                f"parent {layer.parent}, expected {chain_id} and {parent}; "
                "build the records with towline.store.chain_ids()",
                slug="invalid_layer_chain",
            )
        split_digest(layer.blob_digest)
        parent = chain_id


class LayerDirs:
    """The ``layers/`` tree of one store: one directory per ChainID hex."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, chain_id: str) -> Path:
        """Final directory of a layer (the sinks stage in ``layers/.tmp-*`` beside it)."""
        alg, hex_ = split_digest(chain_id)
        if alg != "sha256":
            raise StoreError(f"invalid chain ID {chain_id!r}: ChainIDs are sha256 digests")
        return self.root / hex_

    def has(self, chain_id: str) -> bool:
        """True when the layer's directory is present (then it is complete)."""
        return self.path(chain_id).is_dir()

    def iter_layers(self) -> Iterator[tuple[str, Path]]:
        """Every complete layer directory as ``(chain_id, path)``."""
        for entry in self.root.iterdir():
            if not entry.name.startswith(TMP_PREFIX) and len(entry.name) == 64:
                yield f"sha256:{entry.name}", entry

    def iter_staging(self) -> Iterator[Path]:
        """Every ``.tmp-*`` sibling a sink left behind."""
        return (e for e in self.root.iterdir() if e.name.startswith(TMP_PREFIX))


# === rows and reference counts


def insert_layers(conn: sqlite3.Connection, layers: Iterable[LayerRecord]) -> None:
    """Insert the layer rows not yet present; an existing row keeps its first blob."""
    conn.executemany(
        "INSERT OR IGNORE INTO layers (chain_id, diff_id, parent, blob_digest, "
        "compressed_size, uncompressed_size, media_type) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                layer.chain_id,
                layer.diff_id,
                layer.parent,
                layer.blob_digest,
                layer.compressed_size,
                layer.uncompressed_size,
                layer.media_type,
            )
            for layer in layers
        ],
    )


def read_layer(conn: sqlite3.Connection, chain_id: str) -> LayerRecord | None:
    """The layer row for ``chain_id``, or None."""
    row = conn.execute(
        "SELECT chain_id, diff_id, parent, blob_digest, compressed_size, uncompressed_size, "
        "media_type FROM layers WHERE chain_id = ?",
        (chain_id,),
    ).fetchone()
    return None if row is None else LayerRecord(*row)


def refcount(conn: sqlite3.Connection, chain_id: str) -> int:
    """How many images use the layer."""
    row = conn.execute(
        "SELECT count(DISTINCT image_id) FROM image_layers WHERE chain_id = ?", (chain_id,)
    ).fetchone()
    return int(row[0])


def unreferenced_layers(conn: sqlite3.Connection, candidates: Iterable[str]) -> list[str]:
    """The candidate layers that no image uses any more."""
    return [c for c in dict.fromkeys(candidates) if refcount(conn, c) == 0]


def unreferenced_blobs(conn: sqlite3.Connection, candidates: Iterable[str]) -> list[str]:
    """The candidate blobs that no image refers to (manifest, list, config or layer)."""
    result = []
    for digest in dict.fromkeys(candidates):
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM image_digests WHERE digest = ?1)"
            " OR EXISTS (SELECT 1 FROM images WHERE manifest_digest = ?1"
            "            OR config_digest = ?1 OR list_digest = ?1 OR digest = ?1)"
            " OR EXISTS (SELECT 1 FROM image_layers WHERE blob_digest = ?1)",
            (digest,),
        ).fetchone()
        if not row[0]:
            result.append(digest)
    return result


def delete_layers(conn: sqlite3.Connection, dead: Sequence[str], touched: Sequence[str]) -> None:
    """Delete the ``dead`` layer rows; re-point ``touched`` layers whose blob lost its users.

    A kept layer's ``blob_digest`` then names the blob of an image that still uses it, so
    the store never reports a blob it is about to delete.
    """
    conn.executemany("DELETE FROM layers WHERE chain_id = ?", [(c,) for c in dead])
    conn.executemany(
        "UPDATE layers SET (blob_digest, compressed_size, media_type) = ("
        "  SELECT il.blob_digest, il.compressed_size, il.media_type FROM image_layers il"
        "  WHERE il.chain_id = layers.chain_id ORDER BY il.rowid LIMIT 1)"
        " WHERE chain_id = ?1"
        " AND NOT EXISTS (SELECT 1 FROM image_layers il"
        "   WHERE il.chain_id = ?1 AND il.blob_digest = layers.blob_digest)"
        " AND EXISTS (SELECT 1 FROM image_layers il WHERE il.chain_id = ?1)",
        [(c,) for c in dict.fromkeys(touched)],
    )


# === deletion


def remove_tree(path: Path) -> None:
    """Delete a file or directory tree, including read-only directories from layer tars.

    Directories without owner write/search permission are opened up first (unprivileged
    users cannot otherwise empty them); symlinks are never followed.
    """
    if not path.is_dir() or path.is_symlink():
        path.unlink(missing_ok=True)
        return
    _ensure_owner_rwx(path)
    for top, dirnames, _ in os.walk(path):
        for name in dirnames:
            _ensure_owner_rwx(Path(top, name))
    shutil.rmtree(path)


def _ensure_owner_rwx(path: Path) -> None:
    mode = os.lstat(path).st_mode
    if stat.S_ISDIR(mode) and mode & stat.S_IRWXU != stat.S_IRWXU:
        os.chmod(path, stat.S_IMODE(mode) | stat.S_IRWXU)


class Trash:
    """Files moved out of their final paths by one removal, until commit or rollback."""

    def __init__(self, tmp_dir: Path, blobs: BlobStore, layers: LayerDirs) -> None:
        self.dir = tmp_dir / f"{TRASH_PREFIX}{secrets.token_hex(8)}"
        self._blobs = blobs
        self._layers = layers
        self._moved: list[tuple[Path, Path]] = []

    def _move(self, final: Path, name: str) -> None:
        if not os.path.lexists(final):
            return
        if not self._moved:
            self.dir.mkdir()
        target = self.dir / name
        os.rename(final, target)
        self._moved.append((final, target))

    def move_layer(self, chain_id: str) -> None:
        """Move a layer directory into the trash (nothing if it is already gone)."""
        self._move(self._layers.path(chain_id), f"layer-{split_digest(chain_id)[1]}")

    def move_blob(self, digest: str) -> None:
        """Move a blob file into the trash (nothing if it is already gone)."""
        alg, hex_ = split_digest(digest)
        self._move(self._blobs.root / alg / hex_, f"blob-{alg}-{hex_}")

    def restore(self) -> None:
        """Put every moved file back (the transaction rolled back)."""
        for final, target in reversed(self._moved):
            _put_back(target, final)
        self._moved.clear()
        if self.dir.exists():
            remove_tree(self.dir)

    def purge(self) -> None:
        """Delete the moved files for good (the transaction committed)."""
        self._moved.clear()
        if self.dir.exists():
            remove_tree(self.dir)


def _put_back(target: Path, final: Path) -> None:
    if not os.path.lexists(target):
        # Already put back by restore_abandoned in another process.
        return
    # A sink may have renamed a fresh copy into place meanwhile; the two are identical by
    # construction (content addressed), so the trashed one is dropped.
    if os.path.lexists(final):
        remove_tree(target)
    else:
        os.rename(target, final)


def restore_abandoned(
    conn: sqlite3.Connection, tmp_dir: Path, blobs: BlobStore, layers: LayerDirs
) -> int:
    """Move back trashed files whose rows survived a crash; return how many were restored.

    Call inside a write transaction: it then cannot overlap a live removal (which holds
    the write lock from the move into the trash to its commit). Trash whose rows are gone
    belongs to a committed removal and is left for :meth:`Store` recovery to delete.
    """
    restored = 0
    for trash in tmp_dir.glob(f"{TRASH_PREFIX}*"):
        try:
            entries = list(trash.iterdir())
        except FileNotFoundError:
            # Purged by the removal that owns it, which has committed.
            continue
        before = restored
        for entry in entries:
            match = _TRASH_ENTRY.fullmatch(entry.name)
            if match is None:
                continue
            if match["layer"]:
                chain_id = f"sha256:{match['layer']}"
                if read_layer(conn, chain_id) is not None:
                    _put_back(entry, layers.path(chain_id))
                    restored += 1
            elif DIGEST_HEX_LENGTHS.get(match["alg"]) == len(match["hex"]):
                digest = f"{match['alg']}:{match['hex']}"
                if not unreferenced_blobs(conn, [digest]):
                    _put_back(entry, blobs.path(digest))
                    restored += 1
        if restored > before:
            # Gone (its owner restored it too) or still holding entries whose rows are
            # gone: either way recovery deletes what is left.
            with contextlib.suppress(OSError):
                trash.rmdir()
    return restored


def recover(conn: sqlite3.Connection, tmp_dir: Path, blobs: BlobStore, layers: LayerDirs) -> None:
    """Delete what interrupted runs left: tmp/, ``.tmp-*`` siblings, orphan layers and blobs.

    Only safe while no other store is open (the caller holds the exclusive lock): then
    nothing in tmp/, no staging sibling and no unrecorded file is still being written.
    Call :func:`restore_abandoned` first, so trashed files of live rows are back in place.
    Leases of dead holders go too; a lease still live (a store closed before its lease
    was released) keeps its token and what it holds.
    """
    try:
        holds = live_holds(conn, tmp_dir)
        tokens = {token_path(tmp_dir, lease_id) for lease_id in holds.leases}
        for entry in [*tmp_dir.iterdir(), *blobs.iter_staging(), *layers.iter_staging()]:
            if entry not in tokens:
                remove_tree(entry)
        known = {row[0] for row in conn.execute("SELECT chain_id FROM layers")}
        known |= holds.layers
        for chain_id, path in list(layers.iter_layers()):
            if chain_id not in known:
                # Renamed first so a crash mid-delete never leaves a partial layer at a
                # path a later commit would adopt as complete.
                staged = tmp_dir / f"orphan-{path.name}"
                os.rename(path, staged)
                remove_tree(staged)
        on_disk = dict(blobs.iter_digests())
        for digest in unreferenced_blobs(conn, on_disk):
            if digest not in holds.blobs:
                on_disk[digest].unlink(missing_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot clean up {tmp_dir.parent} after an interrupted run: {exc}; "
            "fix the permissions of that path"
        ) from exc
