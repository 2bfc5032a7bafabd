"""Leases: what unfinished writers are about to commit, reserved against every deletion.

As containerd's leases. A writer (a pull) takes a :class:`Lease` and adds to it each
layer (ChainID) and blob (digest) it is going to write or adopt, *before* it looks for
the file; it commits its image, then releases the lease. Every path that deletes files
(a failed pull's discard, image removal, recovery at open) skips what the live leases of
other writers hold, so a file that a writer has found or is writing is never taken away
before its commit makes it referenced.

Leases are rows (``leases``, ``lease_resources``), so every process sees them. Adding to
a lease and deleting files both take SQLite's write lock: a deleter sees either the
lease (and keeps the file) or a writer that has not looked yet (which then finds the
file gone and writes it again).

Each lease is tied to a token that dies with its holder: an exclusive ``flock`` on
``tmp/lease-<id>``, taken before the row is inserted and dropped after it is deleted.
A lease whose file is missing or can be locked belongs to a holder that died (killed,
crashed) or dropped it: it holds nothing, and the deleter that finds it deletes it, so a
crash never leaves files that cannot be cleaned up. ``flock`` belongs to the open file
description, so the lease of another thread of this process is told apart like another
process's.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

from towline.errors import StoreError
from towline.store.blobs import split_digest

__all__ = ["LEASE_PREFIX", "Holds", "Lease", "is_alive", "live_holds", "token_path"]

# Name prefix of the token files in tmp/.
LEASE_PREFIX = "lease-"

_log = logging.getLogger(__name__)

Transaction = Callable[[], AbstractContextManager[sqlite3.Connection]]


class Holds(NamedTuple):
    """What the live leases hold: lease IDs, layer ChainIDs and blob digests."""

    leases: frozenset[str]
    layers: frozenset[str]
    blobs: frozenset[str]


def token_path(tmp_dir: Path, lease_id: str) -> Path:
    """The file whose ``flock`` keeps lease ``lease_id`` alive."""
    return tmp_dir / f"{LEASE_PREFIX}{lease_id}"


def is_alive(path: Path) -> bool:
    """True while some open file description holds the lease token at ``path`` locked."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError as exc:
        # Unknowable: keeping a file too long is harmless, deleting a held one is not.
        _log.warning("cannot check lease %s (%s); treating it as live", path, exc.strerror)
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError as exc:
        _log.warning("cannot check lease %s (%s); treating it as live", path, exc.strerror)
        return True
    finally:
        os.close(fd)
    return False


def live_holds(conn: sqlite3.Connection, tmp_dir: Path, *, exclude: str | None = None) -> Holds:
    """What the live leases other than ``exclude`` hold; dead leases found are deleted.

    Call inside a write transaction, before deleting files: no lease can then gain a
    resource until the caller commits.
    """
    live: list[str] = []
    dead: list[str] = []
    for (lease_id,) in conn.execute("SELECT id FROM leases").fetchall():
        if lease_id != exclude:
            (live if is_alive(token_path(tmp_dir, lease_id)) else dead).append(lease_id)
    if dead:
        conn.executemany("DELETE FROM leases WHERE id = ?", [(i,) for i in dead])
        for lease_id in dead:
            # If the caller rolls back, the rows come back without a token: still dead.
            token_path(tmp_dir, lease_id).unlink(missing_ok=True)
    layers: set[str] = set()
    blobs: set[str] = set()
    for lease_id in live:
        for kind, name in conn.execute(
            "SELECT kind, name FROM lease_resources WHERE lease_id = ?", (lease_id,)
        ):
            (layers if kind == "layer" else blobs).add(name)
    return Holds(frozenset(live), frozenset(layers), frozenset(blobs))


def _take_token(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StoreError(
            f"cannot create the lease file {path}: {exc.strerror}; "
            "check the permissions of the store's tmp/ directory"
        ) from exc
    try:
        # The file is new and its lease not yet recorded, so nobody else can hold it.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise StoreError(
            f"cannot lock the lease file {path}: {exc.strerror}; "
            "put the store on a filesystem that supports flock"
        ) from exc
    return fd


class Lease:
    """Layers and blobs one writer is about to commit, kept from every deletion path.

    Take it with :meth:`towline.store.Store.lease`; :meth:`add` each resource before
    looking for (or writing) its file; :meth:`release` once the image is committed or
    discarded (a ``with`` block does that). Thread-safe.
    """

    def __init__(self, tmp_dir: Path, transaction: Transaction) -> None:
        """Record a new lease; ``transaction`` opens a write transaction on the store."""
        self.id = secrets.token_hex(16)
        self.path = token_path(tmp_dir, self.id)
        self._transaction = transaction
        self._layers: dict[str, None] = {}
        self._blobs: dict[str, None] = {}
        self._mutex = threading.Lock()
        # The token first: a row whose token is not held would look dead to deleters.
        self._fd: int | None = _take_token(self.path)
        try:
            with transaction() as conn:
                conn.execute(
                    "INSERT INTO leases (id, pid, created) VALUES (?, ?, ?)",
                    (self.id, os.getpid(), time.time()),
                )
        except BaseException:
            self._drop_token()
            raise

    @property
    def layers(self) -> tuple[str, ...]:
        """ChainIDs held, in the order they were added."""
        with self._mutex:
            return tuple(self._layers)

    @property
    def blobs(self) -> tuple[str, ...]:
        """Blob digests held, in the order they were added."""
        with self._mutex:
            return tuple(self._blobs)

    def add(self, *, layers: Iterable[str] = (), blobs: Iterable[str] = ()) -> None:
        """Hold these layers and blobs until :meth:`release`; what is held already is skipped.

        Returns once the hold is committed: from then on no other store deletes them.
        """
        with self._mutex:
            if self._fd is None:
                raise StoreError(f"lease {self.id} is released; take a new one with Store.lease()")
            new = [("layer", c) for c in dict.fromkeys(layers) if c not in self._layers]
            new += [("blob", d) for d in dict.fromkeys(blobs) if d not in self._blobs]
            if not new:
                return
            for _, name in new:
                split_digest(name)
            with self._transaction() as conn:
                conn.executemany(
                    "INSERT OR IGNORE INTO lease_resources (lease_id, kind, name) VALUES (?, ?, ?)",
                    [(self.id, kind, name) for kind, name in new],
                )
            for kind, name in new:
                (self._layers if kind == "layer" else self._blobs)[name] = None

    def release(self) -> None:
        """Stop holding anything; a no-op when released already. Never raises StoreError."""
        with self._mutex:
            if self._fd is None:
                return
            try:
                with self._transaction() as conn:
                    conn.execute("DELETE FROM leases WHERE id = ?", (self.id,))
            except StoreError as exc:
                # Once the token is dropped below the rows are a dead lease, which the next
                # deleter removes: nothing stays reserved, so the caller need not fail.
                _log.warning(
                    "could not delete lease %s: %s; it is ignored from now on", self.id, exc
                )
            finally:
                self._drop_token()

    def _drop_token(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # Unlinked while still locked, so the token never lingers as litter in tmp/.
            self.path.unlink(missing_ok=True)
            os.close(fd)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._fd is None else "live"
        return f"<Lease {self.id} {state}: {len(self._layers)} layers, {len(self._blobs)} blobs>"
