"""The local image store: SQLite metadata, content-addressed blobs, unpacked layers.

Layout of a store root (DESIGN.md "Store layout")::

    towline.db          SQLite (WAL): the one truth
    blobs/<alg>/<hex>   compressed blobs, manifests, configs, exactly as fetched
    layers/<hex>/       one unpacked layer per ChainID
    tmp/                trash and lease tokens; cleared on open when no one else uses the store
    lock                inter-process lock file

The root and the directories under it are private (0700, see :mod:`.permissions`).

Files come first, rows second: the native sinks rename complete, verified files into
place, then :meth:`Store.commit_image` records them in one transaction. A crash in
between leaves files nobody references (harmless, adoptable, removed by recovery), never
a row without its files. Removal is the reverse, made safe by :class:`~.layers.Trash`.
Between a writer's first look at a file and its commit, the file is held by the writer's
:class:`~.leases.Lease`, which every deletion respects.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from towline.errors import ImageUnknownError, StoreError
from towline.store import layers as layerdb
from towline.store.blobs import BlobStore, split_digest
from towline.store.layers import LayerDirs, Trash
from towline.store.leases import Holds, Lease, live_holds
from towline.store.lock import StoreLock
from towline.store.permissions import make_private
from towline.store.records import (
    ImageRecord,
    LayerRecord,
    check_name,
    move_names,
    parse_image_id,
    read_image,
    repository_of,
    write_image,
)
from towline.store.schema import connect, migrate, read_transaction, write_transaction

__all__ = ["MIN_ID_PREFIX", "Store"]

# Shortest hex prefix accepted as an image ID abbreviation; shorter strings are names.
MIN_ID_PREFIX = 3

_HEX = re.compile(r"[0-9a-f]+")

_log = logging.getLogger(__name__)


class Store:
    """One store root, open for reading and writing until :meth:`close`.

    Safe to share between threads of one process and to open from several processes at
    once: commits serialise on SQLite's write lock, readers see committed snapshots.
    """

    def __init__(self, root: Path | str) -> None:
        """Create the layout if needed, migrate the schema and recover from crashes."""
        self.root = Path(root).expanduser().absolute()
        self.tmp_dir = self.root / "tmp"
        self._blobs = BlobStore(self.root / "blobs")
        self._layers = LayerDirs(self.root / "layers")
        self._mutex = threading.RLock()
        try:
            # blobs/sha256 exists from the start, so a failed pull leaves no trace at all.
            make_private(self.root, ("blobs", "blobs/sha256", "layers", "tmp"))
        except OSError as exc:
            raise StoreError(
                f"cannot create the store at {self.root}: {exc.strerror}; "
                "choose another --root or fix the permissions"
            ) from exc
        self._lock = StoreLock(self.root / "lock")
        db_path = self.root / "towline.db"
        try:
            exclusive = self._lock.try_exclusive()
            if not exclusive:
                # Waits while another process runs its recovery.
                self._lock.acquire_shared()
            self._conn = connect(db_path)
        except BaseException:
            self._lock.release()
            raise
        try:
            migrate(self._conn, db_path)
            with write_transaction(self._conn) as conn:
                layerdb.restore_abandoned(conn, self.tmp_dir, self._blobs, self._layers)
            if exclusive:
                # Nobody else has the store open, so nothing on disk is being written.
                layerdb.recover(self._conn, self.tmp_dir, self._blobs, self._layers)
                self._lock.acquire_shared()
        except BaseException as exc:
            self._conn.close()
            self._lock.release()
            if isinstance(exc, OSError | sqlite3.Error):
                raise StoreError(
                    f"cannot open the store at {self.root}: {exc}; "
                    "check the path and its permissions"
                ) from exc
            raise
        self._closed = False

    def close(self) -> None:
        """Close the database and drop the lock; the store object is unusable afterwards."""
        with self._mutex:
            if not self._closed:
                self._closed = True
                self._conn.close()
                self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _database(self) -> Iterator[None]:
        """Serialise this process's threads on the connection; report SQLite failures."""
        with self._mutex:
            if self._closed:
                raise StoreError(f"the store at {self.root} is closed; open a new Store")
            try:
                yield
            except sqlite3.Error as exc:
                raise StoreError(
                    f"the store database {self.root / 'towline.db'} failed: {exc}; "
                    "if another towline process is stuck, stop it, else check the disk"
                ) from exc

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """One consistent snapshot of the committed state."""
        with self._database(), read_transaction(self._conn) as conn:
            yield conn

    @contextmanager
    def _lease_writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction for lease rows, which need no fsync (see :mod:`.leases`)."""
        with self._database(), write_transaction(self._conn, durable=False) as conn:
            yield conn

    @contextmanager
    def _writing(self) -> Iterator[tuple[sqlite3.Connection, Trash]]:
        """A write transaction plus a trash for the files it deletes.

        On failure the trashed files go back *before* the rollback releases the write
        lock, so no other process sees rows without their files; after the commit they
        are deleted for good.
        """
        with self._database():
            trash = Trash(self.tmp_dir, self._blobs, self._layers)
            try:
                with write_transaction(self._conn) as conn:
                    try:
                        yield conn, trash
                    except BaseException:
                        trash.restore()
                        raise
            except BaseException:
                # The COMMIT itself failed: nothing was deleted, so nothing may stay trashed.
                trash.restore()
                raise
        try:
            trash.purge()
        except OSError as exc:
            # The removal is committed; what is left in tmp/ goes at the next recovery.
            _log.warning("could not delete %s: %s; it is removed on a later open", trash.dir, exc)

    # === files handed to (and read from) the sinks

    def lease(self) -> Lease:
        """Take a new lease: what is added to it stays on disk until it is released.

        A writer adds each layer and blob to its lease before it looks for the file or
        writes it, and releases the lease after :meth:`commit_image` (or after
        :meth:`discard_unreferenced` when it fails). No deletion of this or any other
        store (discard, :meth:`remove_image`, recovery) removes what a live lease holds;
        a lease dies with its process.
        """
        return Lease(self.tmp_dir, self._lease_writing)

    def blob_path(self, digest: str) -> Path:
        """Final path of a blob; its directory exists so a sink can stage ``.tmp-*`` beside it."""
        return self._blobs.path(digest)

    def layer_path(self, chain_id: str) -> Path:
        """Final directory of the layer with this ChainID (sinks stage in ``layers/.tmp-*``)."""
        return self._layers.path(chain_id)

    def has_blob(self, digest: str) -> bool:
        """True when the blob file is present (complete and verified, maybe not committed)."""
        return self._blobs.has(digest)

    def read_blob(self, digest: str) -> bytes:
        """The bytes of a stored blob (manifest, config...); StoreError when absent."""
        return self._blobs.read(digest)

    def write_blob(self, digest: str, data: bytes) -> Path:
        """Verify a small blob against its digest and write it atomically; return its path."""
        return self._blobs.write(digest, data)

    # === lookups

    def layer(self, chain_id: str) -> LayerRecord | None:
        """The layer if it is committed in the database and its directory is present."""
        record = self.layer_record(chain_id)
        return record if record is not None and self.is_unpacked(chain_id) else None

    def layer_record(self, chain_id: str) -> LayerRecord | None:
        """The committed layer row, whether or not the layer is unpacked."""
        with self._reading() as conn:
            return layerdb.read_layer(conn, chain_id)

    def is_unpacked(self, chain_id: str) -> bool:
        """True when the layer's directory is in place (complete: it was renamed there)."""
        return self._layers.has(chain_id)

    def image(self, image_id: str) -> ImageRecord | None:
        """The image with this full ID (64 hex, ``sha256:`` allowed), or None."""
        hex_ = parse_image_id(image_id)
        with self._reading() as conn:
            return read_image(conn, hex_)

    def lookup_name(self, name: str) -> ImageRecord | None:
        """The image carrying exactly this normalized name (``host/path:tag``), or None."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT image_id FROM image_names WHERE name = ?", (name,)
            ).fetchone()
            return None if row is None else read_image(conn, row[0])

    def lookup_digest(
        self, repo_name: str, digest: str, *, platform: str | None = None
    ) -> ImageRecord | None:
        """An image of repository ``host/path`` that has ``digest`` among its digests.

        As c/common's repo@digest lookup: the image must carry some name in that
        repository. Several images can share a list digest (one per platform); then the
        one for ``platform`` wins, then the one whose own manifest has the digest, then
        the most recently pulled.
        """
        with self._reading() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT image_id FROM image_digests WHERE digest = ?", (digest,)
                )
            ]
            records = [r for r in (read_image(conn, i) for i in ids) if r is not None]
        matches = [r for r in records if any(repository_of(n) == repo_name for n in r.names)]
        if not matches:
            return None
        return max(
            matches,
            key=lambda r: (r.platform == platform, r.manifest_digest == digest, r.pulled),
        )

    def lookup_id_prefix(self, prefix: str) -> ImageRecord | None:
        """The one image whose ID starts with ``prefix`` (``sha256:`` allowed), or None.

        Prefixes shorter than :data:`MIN_ID_PREFIX` or not lowercase hex are not IDs and
        give None. A prefix shared by several images raises ImageUnknownError.
        """
        hex_ = prefix.removeprefix("sha256:")
        if not MIN_ID_PREFIX <= len(hex_) <= 64 or not _HEX.fullmatch(hex_):
            return None
        with self._reading() as conn:
            # GLOB is case-sensitive, so SQLite can answer it from the primary key.
            ids = [
                r[0] for r in conn.execute("SELECT id FROM images WHERE id GLOB ?", (hex_ + "*",))
            ]
            if len(ids) > 1:
                raise ImageUnknownError(
                    f"{prefix}: image ID prefix is ambiguous: matches {len(ids)} images; "
                    "give more characters of the ID",
                    slug="ambiguous_id",
                )
            return read_image(conn, ids[0]) if ids else None

    def list_images(self) -> list[ImageRecord]:
        """Every image, most recently pulled first."""
        with self._reading() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM images ORDER BY pulled DESC, id")]
            return [r for r in (read_image(conn, i) for i in ids) if r is not None]

    # === writes

    def commit_image(
        self,
        *,
        image_id: str,
        names: Sequence[str],
        manifest_digest: str,
        manifest_media_type: str,
        config_digest: str,
        list_digest: str | None,
        platform: str,
        created: str,
        layers: Sequence[LayerRecord],
        require_unpacked: bool = True,
        lease: Lease | None = None,
    ) -> ImageRecord:
        """Record a pulled image, its layers and names in one transaction; return it.

        Every layer directory and the manifest, config (and list) blobs must already be in
        place; with ``require_unpacked=False`` a layer may instead be present as its blob
        only (a pull with ``unpack=False``; it is unpacked when first needed). A missing
        file raises StoreError with slug ``blob_unknown`` or ``layer_unknown``: write it
        again and retry. An image with the same ID is merged: its names and digests are
        extended and the new manifest becomes current; files of the old record that no
        image uses any more are deleted unless a lease other than ``lease`` (the
        committing writer's) holds them. Names move: a name held by another image is
        taken from it, and that image stays, untagged.
        """
        hex_ = parse_image_id(image_id)
        new_names = [check_name(n) for n in names]
        manifest_digests = (
            [manifest_digest] if list_digest is None else [list_digest, manifest_digest]
        )
        for digest in (*manifest_digests, config_digest):
            split_digest(digest)
        layerdb.check_chain(layers)
        chain = [layer.chain_id for layer in layers]
        incoming = ImageRecord(
            id=hex_,
            names=tuple(new_names),
            digest=manifest_digests[0],
            digests=tuple(manifest_digests),
            manifest_digest=manifest_digest,
            manifest_media_type=manifest_media_type,
            config_digest=config_digest,
            list_digest=list_digest,
            platform=platform,
            created=created,
            pulled=time.time(),
            layers=tuple(layers),
            size=sum(layer.uncompressed_size for layer in layers),
        )
        with self._writing() as (conn, trash):
            # Checked under the write lock: a concurrent removal either already moved
            # these files away (we fail) or will see them referenced (it keeps them).
            self._check_files(hex_, [*manifest_digests, config_digest], layers, require_unpacked)
            existing = read_image(conn, hex_)
            if existing is not None and [x.chain_id for x in existing.layers] != chain:
                raise StoreError(
                    f"image with ID {hex_!r} already exists, but uses a different top layer; "
                    f"remove it (towline rmi {hex_[:12]}) and pull again"
                )
            layerdb.insert_layers(conn, layers)
            write_image(conn, incoming)
            if existing is not None:
                # A merge can swap the layer blobs (gzip vs zstd instance of one config).
                old_blobs = [x.blob_digest for x in existing.layers]
                self._drop_unused(trash, chain, old_blobs, exclude=lease)
            record = read_image(conn, hex_)
        assert record is not None
        return record

    def _check_files(
        self,
        image_id: str,
        blobs: Iterable[str],
        layers: Iterable[LayerRecord],
        require_unpacked: bool,
    ) -> None:
        for digest in blobs:
            if not self._blobs.has(digest):
                raise StoreError(
                    f"cannot commit image {image_id[:12]} to {self.root}: blob {digest} is not "
                    "in the store; write it with write_blob() first, or pull again",
                    slug="blob_unknown",
                )
        for layer in layers:
            chain_id = layer.chain_id
            if not require_unpacked and self._blobs.has(layer.blob_digest):
                continue
            if not self._layers.has(chain_id):
                raise StoreError(
                    f"cannot commit image {image_id[:12]} to {self.root}: layer {chain_id} is "
                    f"not unpacked at {self._layers.path(chain_id)} (removed concurrently?); "
                    "pull the image again",
                    slug="layer_unknown",
                )

    def _drop_unused(
        self,
        trash: Trash,
        chain: Iterable[str],
        blobs: Iterable[str],
        *,
        exclude: Lease | None = None,
    ) -> None:
        """Of the given layers and blobs, delete the rows and trash the files nobody uses.

        Runs inside :meth:`_writing`, after the rows that referenced them are gone. Files
        held by a live lease other than ``exclude`` stay: their writer commits them again
        (its commit re-inserts the layer row), or discards them when it fails.
        """
        holds = self._held_by_others(exclude)
        touched = list(chain)
        dead_layers = layerdb.unreferenced_layers(self._conn, touched)
        candidates = list(blobs)
        for chain_id in dead_layers:
            record = layerdb.read_layer(self._conn, chain_id)
            if record is not None:
                candidates.append(record.blob_digest)
        layerdb.delete_layers(self._conn, dead_layers, touched)
        for chain_id in dead_layers:
            if chain_id not in holds.layers:
                trash.move_layer(chain_id)
        for digest in layerdb.unreferenced_blobs(self._conn, candidates):
            if digest not in holds.blobs:
                trash.move_blob(digest)

    def _held_by_others(self, lease: Lease | None) -> Holds:
        """What the live leases other than ``lease`` hold; call in a write transaction."""
        return live_holds(self._conn, self.tmp_dir, exclude=None if lease is None else lease.id)

    def discard_unreferenced(
        self, chain_ids: Iterable[str], blobs: Iterable[str], *, lease: Lease | None = None
    ) -> None:
        """Delete layer dirs and blobs that no committed image references.

        A failed pull calls this for what its ``lease`` holds (before releasing it), so
        the store is left as it was. What another live lease holds is kept: a concurrent
        pull has adopted it and is about to commit it. Checked under the write lock,
        where leases are added too.
        """
        with self._writing() as (conn, trash):
            holds = self._held_by_others(lease)
            for chain_id in dict.fromkeys(chain_ids):
                if chain_id not in holds.layers and layerdb.read_layer(conn, chain_id) is None:
                    trash.move_layer(chain_id)
            for digest in layerdb.unreferenced_blobs(conn, blobs):
                if digest not in holds.blobs:
                    trash.move_blob(digest)

    def add_names(self, image_id: str, names: Sequence[str]) -> ImageRecord:
        """Give the image more names (tag), moving each from any image that holds it."""
        hex_ = parse_image_id(image_id)
        new_names = [check_name(n) for n in names]
        with self._writing() as (conn, _):
            if conn.execute("SELECT 1 FROM images WHERE id = ?", (hex_,)).fetchone() is None:
                raise ImageUnknownError(f"{image_id}: image not known")
            move_names(conn, hex_, new_names)
            record = read_image(conn, hex_)
        assert record is not None
        return record

    def remove_name(self, name: str) -> ImageRecord:
        """Take a name off its image (untag) and return the image, which stays in the store."""
        with self._writing() as (conn, _):
            row = conn.execute(
                "DELETE FROM image_names WHERE name = ? RETURNING image_id", (name,)
            ).fetchone()
            if row is None:
                raise ImageUnknownError(f"{name}: image not known")
            record = read_image(conn, row[0])
        assert record is not None
        return record

    def remove_image(self, image_id: str) -> ImageRecord:
        """Delete an image with all its names; then its layers and blobs no one else uses.

        Rows go in one transaction; files are moved into ``tmp/`` inside it and deleted
        after the commit, except those a live lease holds (an in-flight pull uses them).
        Returns the record as it was before the removal.
        """
        hex_ = parse_image_id(image_id)
        with self._writing() as (conn, trash):
            record = read_image(conn, hex_)
            if record is None:
                raise ImageUnknownError(f"{image_id}: image not known")
            conn.execute("DELETE FROM images WHERE id = ?", (hex_,))
            blobs = [*record.digests, record.manifest_digest, record.config_digest]
            blobs += [x.blob_digest for x in record.layers]
            if record.list_digest is not None:
                blobs.append(record.list_digest)
            self._drop_unused(trash, [x.chain_id for x in record.layers], blobs)
        return record
