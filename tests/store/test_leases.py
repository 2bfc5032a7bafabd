"""Leases (issue 7, finding 13): what an unfinished writer holds survives every deletion
path of other stores, and a holder's death frees it.

Two ``Store`` objects on one root stand for two processes (each has its own flock and
SQLite connection); the dead-lease tests use a real process killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from towline.errors import StoreError
from towline.store import Store

from . import check_consistent, pull, pull_layers, sink_blob

TESTS_DIR = Path(__file__).resolve().parents[1]
PYTHON_DIR = TESTS_DIR.parent / "python"

# Runs in the child. argv: root. Writes an unrecorded layer and blob, adopts the base
# layer of the committed image, holds all of it in a lease, then waits to be killed.
CHILD = textwrap.dedent(
    """
    import sys, time
    from store import pull_layers
    from towline.store import Store

    store = Store(sys.argv[1])
    lease = store.lease()
    [orphan] = pull_layers(store, [b"orphan"], variant=b"orphan")
    [base] = pull_layers(store, [b"base"])
    lease.add(layers=[orphan.chain_id, base.chain_id], blobs=[orphan.blob_digest, base.blob_digest])
    print("LEASED", orphan.chain_id, orphan.blob_digest, flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    with Store(tmp_path) as first, Store(tmp_path) as second:
        yield first, second


def lease_rows(root: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(f"file:{root / 'towline.db'}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT l.id, r.kind, r.name FROM leases l"
            " LEFT JOIN lease_resources r ON r.lease_id = l.id ORDER BY l.id, r.kind, r.name"
        ).fetchall()
    finally:
        conn.close()


def test_remove_image_keeps_what_another_stores_lease_holds(stores: tuple[Store, Store]) -> None:
    first, second = stores
    old = first.commit_image(**pull(first, [b"base", b"old"], ["example.com/old:1"]))
    base, top = old.layers
    with second.lease() as lease:
        lease.add(layers=[base.chain_id], blobs=[base.blob_digest])
        first.remove_image(old.id)
        assert second.is_unpacked(base.chain_id) and second.has_blob(base.blob_digest)
        assert not first.is_unpacked(top.chain_id) and not first.has_blob(top.blob_digest)
        # The holder commits what it held: the layer row comes back with its image.
        kwargs = pull(second, [b"base", b"new"], ["example.com/new:1"], label="new")
        new = second.commit_image(**kwargs, lease=lease)
    assert new.layers[0] == base
    check_consistent(second)
    assert lease_rows(second.root) == []


def test_discard_keeps_what_another_lease_holds_and_not_its_own(
    stores: tuple[Store, Store],
) -> None:
    first, second = stores
    with first.lease() as mine, second.lease() as theirs:
        [layer] = pull_layers(first, [b"both"])
        [only_mine] = pull_layers(first, [b"mine"], variant=b"mine")
        mine.add(
            layers=[layer.chain_id, only_mine.chain_id],
            blobs=[layer.blob_digest, only_mine.blob_digest],
        )
        theirs.add(layers=[layer.chain_id], blobs=[layer.blob_digest])
        first.discard_unreferenced(mine.layers, mine.blobs, lease=mine)
        assert first.is_unpacked(layer.chain_id) and first.has_blob(layer.blob_digest)
        assert not first.is_unpacked(only_mine.chain_id)
        assert not first.has_blob(only_mine.blob_digest)
        theirs.release()
        first.discard_unreferenced(mine.layers, mine.blobs, lease=mine)
        assert not first.is_unpacked(layer.chain_id) and not first.has_blob(layer.blob_digest)


def test_a_lease_of_another_thread_of_the_same_store_counts(tmp_path: Path) -> None:
    # flock belongs to the open file description: one Store, two pulls, still two holders.
    with Store(tmp_path) as store, store.lease() as other:
        digest = sink_blob(store, b"in flight")
        other.add(blobs=[digest])
        store.discard_unreferenced([], [digest])
        assert store.has_blob(digest)


def test_a_released_lease_leaves_nothing_and_refuses_more(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        lease = store.lease()
        lease.add(blobs=[sink_blob(store, b"x")])
        assert lease.path.exists() and lease_rows(tmp_path)
        lease.release()
        lease.release()
        assert not lease.path.exists()
        assert lease_rows(tmp_path) == []
        with pytest.raises(StoreError, match="released; take a new one"):
            lease.add(blobs=[sink_blob(store, b"y")])


def _kill_child_holding_a_lease(root: Path) -> tuple[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PYTHON_DIR), str(TESTS_DIR)])}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    child.send_signal(signal.SIGKILL)
    _, err = child.communicate()
    assert line.startswith("LEASED"), err
    _, chain_id, digest = line.split()
    return chain_id, digest


def test_a_dead_lease_does_not_block_cleanup(tmp_path: Path) -> None:
    with Store(tmp_path) as store:  # open throughout: no recovery runs at the child's open
        old = store.commit_image(**pull(store, [b"base", b"old"], ["example.com/old:1"]))
        orphan_chain, orphan_blob = _kill_child_holding_a_lease(tmp_path)
        assert [p.name for p in store.tmp_dir.iterdir()] != [], "the dead lease's token"
        assert lease_rows(tmp_path)
        store.remove_image(old.id)
        store.discard_unreferenced([orphan_chain], [orphan_blob])
        assert not store.is_unpacked(old.layers[0].chain_id), "rmi ignored the dead lease"
        assert not store.has_blob(old.layers[0].blob_digest)
        assert not store.is_unpacked(orphan_chain) and not store.has_blob(orphan_blob)
        assert lease_rows(tmp_path) == [], "the dead lease is deleted by who found it"
        assert list(store.tmp_dir.iterdir()) == []


def test_recovery_ignores_and_deletes_dead_leases(tmp_path: Path) -> None:
    orphan_chain, orphan_blob = _kill_child_holding_a_lease(tmp_path)
    with Store(tmp_path) as store:
        assert not store.is_unpacked(orphan_chain) and not store.has_blob(orphan_blob)
        assert lease_rows(tmp_path) == []
        check_consistent(store, recovered=True)


def test_recovery_keeps_what_a_live_lease_holds(tmp_path: Path) -> None:
    # A lease outliving its store (closed first) still holds: recovery must not guess.
    store = Store(tmp_path)
    lease = store.lease()
    [layer] = pull_layers(store, [b"held"])
    lease.add(layers=[layer.chain_id], blobs=[layer.blob_digest])
    store.close()
    try:
        with Store(tmp_path) as reopened:
            assert reopened.is_unpacked(layer.chain_id) and reopened.has_blob(layer.blob_digest)
            assert lease.path.exists()
    finally:
        lease.release()
    assert not lease.path.exists()
    with Store(tmp_path) as reopened:
        assert not reopened.is_unpacked(layer.chain_id), "released: now an orphan"
        assert lease_rows(tmp_path) == []
