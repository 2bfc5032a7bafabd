"""The store's SQLite schema, its numbered migrations and connection settings.

The database is the one truth of the store: an image exists when its row is committed,
never before. ``PRAGMA user_version`` holds the number of the last migration applied;
opening a store applies the missing ones in one transaction, so two processes opening a
fresh store at once cannot both create it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from towline.errors import StoreError

__all__ = [
    "BUSY_TIMEOUT_MS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "connect",
    "migrate",
    "read_transaction",
    "write_transaction",
]

# Long enough to wait out another process's commit (milliseconds), short enough that a
# wedged writer is reported instead of hanging a pull forever.
BUSY_TIMEOUT_MS = 60_000

_V1 = (
    """
    CREATE TABLE images (
        id                  TEXT PRIMARY KEY,
        digest              TEXT NOT NULL,
        manifest_digest     TEXT NOT NULL,
        manifest_media_type TEXT NOT NULL,
        config_digest       TEXT NOT NULL,
        list_digest         TEXT,
        platform            TEXT NOT NULL,
        created             TEXT NOT NULL,
        pulled              REAL NOT NULL,
        size                INTEGER NOT NULL
    ) STRICT
    """,
    # The rowid orders names and digests by the time they were added.
    """
    CREATE TABLE image_names (
        name     TEXT NOT NULL UNIQUE,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    ) STRICT
    """,
    "CREATE INDEX image_names_by_image ON image_names(image_id)",
    """
    CREATE TABLE image_digests (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        digest   TEXT NOT NULL,
        UNIQUE (image_id, digest)
    ) STRICT
    """,
    "CREATE INDEX image_digests_by_digest ON image_digests(digest)",
    # The parent reference is deferred so that a chain of unreferenced layers can be
    # deleted in one transaction in any order.
    """
    CREATE TABLE layers (
        chain_id          TEXT PRIMARY KEY,
        diff_id           TEXT NOT NULL,
        parent            TEXT REFERENCES layers(chain_id) DEFERRABLE INITIALLY DEFERRED,
        blob_digest       TEXT NOT NULL,
        compressed_size   INTEGER NOT NULL,
        uncompressed_size INTEGER NOT NULL,
        media_type        TEXT NOT NULL
    ) STRICT
    """,
    "CREATE INDEX layers_by_diff_id ON layers(diff_id)",
    "CREATE INDEX layers_by_blob ON layers(blob_digest)",
    # The blob columns are per image: one layer can be reached through blobs compressed
    # in different ways (gzip and zstd instances of one index share their config).
    """
    CREATE TABLE image_layers (
        image_id        TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        idx             INTEGER NOT NULL,
        chain_id        TEXT NOT NULL REFERENCES layers(chain_id),
        blob_digest     TEXT NOT NULL,
        compressed_size INTEGER NOT NULL,
        media_type      TEXT NOT NULL,
        PRIMARY KEY (image_id, idx)
    ) STRICT
    """,
    "CREATE INDEX image_layers_by_chain ON image_layers(chain_id)",
    "CREATE INDEX image_layers_by_blob ON image_layers(blob_digest)",
)

# Leases (store/leases.py): what unfinished writers are about to commit. The rows of a
# holder that died stay until a deleter finds its token unlocked and deletes them.
_V2 = (
    """
    CREATE TABLE leases (
        id      TEXT PRIMARY KEY,
        pid     INTEGER NOT NULL,
        created REAL NOT NULL
    ) STRICT
    """,
    """
    CREATE TABLE lease_resources (
        lease_id TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
        kind     TEXT NOT NULL CHECK (kind IN ('layer', 'blob')),
        name     TEXT NOT NULL,
        PRIMARY KEY (lease_id, kind, name)
    ) STRICT
    """,
)

# Migration N (1-based) brings the schema from version N-1 to N. Append only; never edit
# a migration that has shipped.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)


def connect(db_path: Path) -> sqlite3.Connection:
    """Open the database in WAL mode with foreign keys on and a busy timeout.

    The connection is in autocommit mode: callers open transactions explicitly
    (``BEGIN`` for a consistent read, ``BEGIN IMMEDIATE`` for a write).
    """
    try:
        conn = sqlite3.connect(
            db_path,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot open the store database {db_path}: {exc}; check the path and its permissions"
        ) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(
                f"the store database {db_path} cannot use WAL mode (got {mode!r}); "
                "put the store on a local filesystem"
            )
        # FULL makes a commit durable before remove_image deletes files, so a power loss
        # cannot bring back rows whose files are gone.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(
            f"cannot set up the store database {db_path}: {exc}; "
            "check that the file is a towline database and not corrupted"
        ) from exc
    except StoreError:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection, db_path: Path) -> int:
    """Apply the missing migrations in one write transaction; return the schema version.

    A database written by a newer towline (a higher ``user_version``) is refused rather
    than guessed at.
    """
    try:
        with write_transaction(conn):
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the store database {db_path} has schema version {version}, newer than "
                    f"this towline knows ({SCHEMA_VERSION}); upgrade towline or use another --root"
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[number - 1]:
                    conn.execute(statement)
                # PRAGMA takes no parameters; number is an int computed here.
                conn.execute(f"PRAGMA user_version = {number}")
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot upgrade the store database {db_path}: {exc}; "
            "check that the file is a towline database and not corrupted"
        ) from exc
    return SCHEMA_VERSION


@contextmanager
def write_transaction(
    conn: sqlite3.Connection, *, durable: bool = True
) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back if the body raises.

    IMMEDIATE takes the database's write lock up front, so two writers serialise at the
    start instead of one failing with "database is locked" at its first write. With
    ``durable=False`` the commit is visible to every connection at once but not fsynced
    (for rows that a power loss makes moot anyway, such as leases, whose holders it kills).
    """
    if not durable:
        level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            with write_transaction(conn) as inner:
                yield inner
        finally:
            # PRAGMA takes no parameters; level is an int read just above.
            conn.execute(f"PRAGMA synchronous = {level}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction: every query in it sees the same committed snapshot (WAL)."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")
