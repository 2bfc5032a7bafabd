"""Recovery at open: staging and orphans go only when nobody else uses the store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from towline.store import Store
from towline.store.layers import Trash

from . import pull, pull_layers, sha256, sink_blob


def _leave_debris(store: Store) -> dict[str, Path]:
    """What an interrupted pull leaves: staging, an unrecorded layer and blob."""
    staging_blob = store.blob_path(sha256(b"x")).with_name(".tmp-half")
    staging_blob.write_bytes(b"half a blob")
    staging_layer = store.root / "layers" / ".tmp-half"
    (staging_layer / "etc").mkdir(parents=True)
    (staging_layer / "etc" / "passwd").write_text("root")
    tmp_entry = store.tmp_dir / "storage123"
    tmp_entry.mkdir()
    (tmp_entry / "f").write_text("x")
    (orphan_layer,) = pull_layers(store, [b"orphan"], variant=b"orphan")
    return {
        "staging_blob": staging_blob,
        "staging_layer": staging_layer,
        "tmp_entry": tmp_entry,
        "orphan_layer": store.layer_path(orphan_layer.chain_id),
        "orphan_blob": store.blob_path(orphan_layer.blob_digest),
        "orphan_manifest": store.blob_path(sink_blob(store, b"unrecorded manifest")),
    }


def test_open_alone_clears_staging_and_orphans(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        kept = store.commit_image(**pull(store, [b"kept"], ["example.com/k:1"]))
        debris = _leave_debris(store)
    with Store(tmp_path) as store:
        for name, path in debris.items():
            assert not path.exists(), name
        assert list(store.tmp_dir.iterdir()) == []
        assert store.image(kept.id) == kept
        assert store.layer(kept.layers[0].chain_id) is not None
        for digest in (kept.manifest_digest, kept.config_digest, kept.layers[0].blob_digest):
            assert store.has_blob(digest)


def test_open_while_another_store_is_open_leaves_everything(tmp_path: Path) -> None:
    with Store(tmp_path) as first:
        debris = _leave_debris(first)
        with Store(tmp_path) as second:
            for name, path in debris.items():
                assert path.exists(), f"{name} may belong to a pull in flight"
            # The unrecorded layer and blobs are complete: a later commit adopts them.
            kwargs = pull(second, [b"orphan"], ["example.com/o:1"], variant=b"orphan")
            record = second.commit_image(**kwargs)
            assert second.layer_path(record.layers[0].chain_id) == debris["orphan_layer"]
    with Store(tmp_path) as store:
        assert store.layer(record.layers[0].chain_id) is not None, "adopted, so not an orphan"
        assert not debris["staging_layer"].exists()


def test_trash_of_an_uncommitted_removal_is_put_back(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        record = store.commit_image(**pull(store, [b"a", b"b"], ["example.com/a:1"]))
        # A removal that moved its files and then died before COMMIT.
        trash = Trash(store.tmp_dir, store._blobs, store._layers)
        for layer in record.layers:
            trash.move_layer(layer.chain_id)
            trash.move_blob(layer.blob_digest)
        trash.move_blob(record.manifest_digest)
        assert store.layer(record.layers[0].chain_id) is None
        # Another process opens the store meanwhile: restoring is safe under the write lock.
        with Store(tmp_path) as other:
            assert other.layer(record.layers[0].chain_id) == record.layers[0]
            assert all(other.layer(x.chain_id) is not None for x in record.layers)
            assert other.has_blob(record.manifest_digest)
            assert other.has_blob(record.layers[1].blob_digest)
            assert list(other.tmp_dir.iterdir()) == []


def test_trash_of_a_committed_removal_waits_for_recovery(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        trash_dir = store.tmp_dir / "trash-deadbeef"
        (trash_dir / ("layer-" + "1" * 64)).mkdir(parents=True)
        (trash_dir / ("blob-sha256-" + "2" * 64)).write_text("x")
        with Store(tmp_path) as other:
            assert trash_dir.exists(), "its owner may be deleting it right now"
            assert not other.layer_path("sha256:" + "1" * 64).exists(), "no row: not restored"
    with Store(tmp_path) as store:
        assert not trash_dir.exists()


def test_failed_removal_rolls_back_files_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(tmp_path) as store:
        record = store.commit_image(**pull(store, [b"a", b"b"], ["example.com/a:1"]))

        def fail(self: Trash, digest: str) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(Trash, "move_blob", fail)
        with pytest.raises(OSError, match="Input/output error"):
            store.remove_image(record.id)
        assert store.image(record.id) == record
        assert all(store.layer(x.chain_id) is not None for x in record.layers)
        assert list(store.tmp_dir.iterdir()) == []


def test_orphan_layer_is_renamed_before_it_is_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(tmp_path) as store:
        (orphan,) = pull_layers(store, [b"orphan"])
        path = store.layer_path(orphan.chain_id)
    seen: list[Path] = []
    import towline.store.layers as layers_module

    real = layers_module.remove_tree

    def spy(target: Path) -> None:
        seen.append(target)
        assert not os.path.lexists(path) or target != path, "never deleted at its final path"
        real(target)

    monkeypatch.setattr(layers_module, "remove_tree", spy)
    with Store(tmp_path):
        pass
    assert not path.exists()
    assert any(p.parent.name == "tmp" and p.name.startswith("orphan-") for p in seen)
