"""Schema, migrations and connection settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from towline.errors import StoreError
from towline.store import Store
from towline.store.schema import MIGRATIONS, SCHEMA_VERSION, connect, migrate


def test_fresh_store_is_migrated_wal_with_foreign_keys(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        conn = sqlite3.connect(store.root / "towline.db")
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        finally:
            conn.close()
    assert {"images", "image_names", "image_digests", "layers", "image_layers"} <= tables
    for name in ("blobs", "layers", "tmp", "lock", "towline.db"):
        assert (tmp_path / name).exists()


def test_a_version_1_store_gains_the_lease_tables(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "towline.db")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Store(tmp_path) as store, store.lease() as lease:
        lease.add(blobs=["sha256:" + "0" * 64])
    conn = sqlite3.connect(tmp_path / "towline.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
        assert conn.execute("SELECT count(*) FROM leases").fetchone()[0] == 0
    finally:
        conn.close()


def test_connection_enforces_foreign_keys(tmp_path: Path) -> None:
    conn = connect(tmp_path / "db")
    try:
        migrate(conn, tmp_path / "db")
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO image_names (name, image_id) VALUES ('a/b:c', 'nope')")
    finally:
        conn.close()


def test_reopen_keeps_data_and_does_not_migrate_twice(tmp_path: Path) -> None:
    with Store(tmp_path):
        pass
    with Store(tmp_path) as store:
        assert store.list_images() == []


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    with Store(tmp_path):
        pass
    conn = sqlite3.connect(tmp_path / "towline.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this towline knows") as info:
        Store(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_not_a_database_is_reported(tmp_path: Path) -> None:
    (tmp_path / "towline.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"towline\.db") as info:
        Store(tmp_path)
    assert "\n" not in str(info.value)


def test_unwritable_root_is_reported(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot create the store at"):
        Store(tmp_path / "file" / "root")
