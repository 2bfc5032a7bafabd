"""Store round trips: commit, lookups by name / digest / ID prefix, names, removal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from towline.errors import ImageUnknownError, InvalidReferenceError, StoreError
from towline.store import ImageRecord, Store, repository_of

from . import MANIFEST_MEDIA_TYPE, config_bytes, pull, sha256

ALPINE = "docker.io/library/alpine:3.20"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "root") as opened:
        yield opened


def test_commit_round_trip(store: Store) -> None:
    kwargs = pull(store, [b"base", b"app"], [ALPINE], via_list=b'{"manifests":[]}')
    before = time.time()
    record = store.commit_image(**kwargs)
    assert isinstance(record, ImageRecord)
    assert record.id == kwargs["image_id"]
    assert record.config_digest == "sha256:" + record.id
    assert record.names == (ALPINE,)
    assert record.digest == kwargs["list_digest"], "pulled through a list: the list digest"
    assert record.digests == (kwargs["list_digest"], kwargs["manifest_digest"])
    assert record.manifest_digest == kwargs["manifest_digest"]
    assert record.manifest_media_type == MANIFEST_MEDIA_TYPE
    assert record.list_digest == kwargs["list_digest"]
    assert record.platform == "linux/amd64"
    assert record.created == "2024-01-02T03:04:05Z"
    assert before <= record.pulled <= time.time()
    assert record.layers == tuple(kwargs["layers"])
    assert record.top_layer == kwargs["layers"][-1].chain_id
    assert record.size == len(b"base") + len(b"app")
    assert store.image(record.id) == record
    assert store.image("sha256:" + record.id) == record
    assert store.lookup_name(ALPINE) == record
    assert store.list_images() == [record]


def test_records_survive_reopen(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        record = store.commit_image(**pull(store, [b"base"], [ALPINE]))
    with Store(tmp_path) as store:
        assert store.image(record.id) == record
        assert store.layer(record.layers[0].chain_id) == record.layers[0]
        assert store.read_blob(record.manifest_digest)


def test_image_without_list_has_manifest_digest(store: Store) -> None:
    kwargs = pull(store, [b"base"], [ALPINE])
    record = store.commit_image(**kwargs)
    assert record.digest == record.manifest_digest == kwargs["manifest_digest"]
    assert record.digests == (record.manifest_digest,)
    assert record.list_digest is None


def test_unknown_lookups(store: Store) -> None:
    assert store.image("f" * 64) is None
    assert store.lookup_name(ALPINE) is None
    assert store.lookup_digest("docker.io/library/alpine", sha256(b"x")) is None
    assert store.lookup_id_prefix("fff") is None
    with pytest.raises(ImageUnknownError, match="no 64-byte hexadecimal value"):
        store.image("abc")
    with pytest.raises(ImageUnknownError, match=f"^{'f' * 64}: image not known$"):
        store.remove_image("f" * 64)
    with pytest.raises(ImageUnknownError, match=f"^{ALPINE}: image not known$"):
        store.remove_name(ALPINE)
    with pytest.raises(ImageUnknownError, match="image not known"):
        store.add_names("f" * 64, [ALPINE])


# === names


def test_name_moves_and_old_image_stays_dangling(store: Store) -> None:
    old = store.commit_image(**pull(store, [b"v1"], [ALPINE, "docker.io/library/alpine:3"]))
    new = store.commit_image(**pull(store, [b"v2"], [ALPINE]))
    assert store.lookup_name(ALPINE) == new
    old_now = store.image(old.id)
    assert old_now is not None, "re-pulling a moved tag keeps the old image (as podman)"
    assert old_now.names == ("docker.io/library/alpine:3",)
    # Move the last name too: the old image becomes dangling but is kept.
    store.add_names(new.id, ["docker.io/library/alpine:3"])
    dangling = store.image(old.id)
    assert dangling is not None
    assert dangling.names == ()
    assert {r.id for r in store.list_images()} == {old.id, new.id}


def test_names_keep_insertion_order_and_are_unique(store: Store) -> None:
    record = store.commit_image(**pull(store, [b"x"], ["example.com/a:1", "example.com/a:2"]))
    record = store.add_names(record.id, ["example.com/a:0", "example.com/a:1"])
    assert record.names == ("example.com/a:1", "example.com/a:2", "example.com/a:0")


def test_remove_name_untags_only(store: Store) -> None:
    record = store.commit_image(**pull(store, [b"x"], ["example.com/a:1", "example.com/a:2"]))
    after = store.remove_name("example.com/a:1")
    assert after.id == record.id
    assert after.names == ("example.com/a:2",)
    assert store.lookup_name("example.com/a:1") is None
    assert store.remove_name("example.com/a:2").names == ()
    assert store.image(record.id) is not None
    assert store.layer(record.layers[0].chain_id) is not None


@pytest.mark.parametrize(
    "bad", ["alpine", "docker.io/library/alpine", " docker.io/a:b", "a b/c:d", "x/y@sha256:1"]
)
def test_unnormalized_names_are_refused(store: Store, bad: str) -> None:
    kwargs = pull(store, [b"x"], [bad])
    with pytest.raises((InvalidReferenceError, StoreError)):
        store.commit_image(**kwargs)
    assert store.list_images() == []


def test_repository_of() -> None:
    assert repository_of("docker.io/library/alpine:3.20") == "docker.io/library/alpine"
    assert repository_of("localhost:5000/a/b:tag") == "localhost:5000/a/b"
    assert repository_of("localhost:5000/a@sha256:" + "0" * 64) == "localhost:5000/a"


# === digests


def test_lookup_digest_by_instance_or_list_digest(store: Store) -> None:
    kwargs = pull(store, [b"x"], [ALPINE], via_list=b"list")
    record = store.commit_image(**kwargs)
    repo = "docker.io/library/alpine"
    assert store.lookup_digest(repo, kwargs["manifest_digest"]) == record
    assert store.lookup_digest(repo, kwargs["list_digest"]) == record
    assert store.lookup_digest("docker.io/library/other", kwargs["manifest_digest"]) is None
    assert store.lookup_digest("docker.io/library/alpin", kwargs["manifest_digest"]) is None


def test_lookup_digest_needs_a_name_in_the_repository(store: Store) -> None:
    kwargs = pull(store, [b"x"], ["quay.io/a/b@" + "sha256:" + "0" * 64])
    # The digest name above is only a name; the record's digests come from the commit.
    record = store.commit_image(**kwargs)
    assert store.lookup_digest("quay.io/a/b", kwargs["manifest_digest"]) == record
    store.remove_name(record.names[0])
    assert store.lookup_digest("quay.io/a/b", kwargs["manifest_digest"]) is None


def test_list_digest_shared_by_two_platforms(store: Store) -> None:
    index = b'{"manifests": ["amd64", "arm64"]}'
    amd = store.commit_image(**pull(store, [b"amd"], [ALPINE], via_list=index))
    arm = store.commit_image(
        **pull(store, [b"arm"], [ALPINE], via_list=index, platform="linux/arm64")
    )
    repo, list_digest = "docker.io/library/alpine", sha256(index)
    store.add_names(amd.id, ["docker.io/library/alpine:amd"])
    assert store.lookup_digest(repo, list_digest, platform="linux/amd64") == store.image(amd.id)
    assert store.lookup_digest(repo, list_digest, platform="linux/arm64") == store.image(arm.id)
    found = store.lookup_digest(repo, list_digest)
    assert found is not None
    assert found.id == arm.id, "without a platform, the most recent pull"


def test_recommit_same_id_merges_names_and_digests(store: Store) -> None:
    first = pull(store, [b"x"], [ALPINE])
    original = store.commit_image(**first)
    # Same config (same layers, same diff_ids) through a zstd instance of an index.
    again = pull(store, [b"x"], ["docker.io/library/alpine:latest"], via_list=b"idx", variant=b"zs")
    assert again["image_id"] == original.id
    merged = store.commit_image(**again)
    assert merged.names == (ALPINE, "docker.io/library/alpine:latest")
    assert merged.digest == again["list_digest"]
    assert set(merged.digests) == {
        again["list_digest"],
        again["manifest_digest"],
        first["manifest_digest"],
    }
    assert merged.layers[0].blob_digest == again["layers"][0].blob_digest
    layer = store.layer(merged.layers[0].chain_id)
    assert layer is not None
    assert layer.blob_digest == again["layers"][0].blob_digest, "re-pointed at a kept blob"
    assert not store.has_blob(first["layers"][0].blob_digest), "the replaced blob is unused"
    assert store.has_blob(first["manifest_digest"]), "old manifest kept for repo@digest"
    assert store.lookup_digest("docker.io/library/alpine", first["manifest_digest"]) == merged
    assert merged.pulled >= original.pulled
    assert len(store.list_images()) == 1


# === ID prefixes


def _two_images_sharing_a_prefix(store: Store) -> tuple[ImageRecord, ImageRecord]:
    seen: dict[str, str] = {}
    for i in range(10_000):
        label = str(i)
        prefix = sha256(config_bytes([sha256(b"x")], label=label))[7:10]
        if prefix in seen:
            a = store.commit_image(**pull(store, [b"x"], ["example.com/p:a"], label=seen[prefix]))
            b = store.commit_image(**pull(store, [b"x"], ["example.com/p:b"], label=label))
            return a, b
        seen[prefix] = label
    raise AssertionError("no two IDs share 3 hex digits")


def test_id_prefix_unique_ambiguous_and_too_short(store: Store) -> None:
    a, b = _two_images_sharing_a_prefix(store)
    common = a.id[:3]
    with pytest.raises(ImageUnknownError, match=f"{common}: .*is ambiguous: matches 2 images"):
        store.lookup_id_prefix(common)
    unique_len = next(n for n in range(4, 65) if a.id[:n] != b.id[:n])
    assert store.lookup_id_prefix(a.id[:unique_len]) == store.image(a.id)
    assert store.lookup_id_prefix("sha256:" + a.id[:unique_len]) == store.image(a.id)
    assert store.lookup_id_prefix(a.id) == store.image(a.id)
    assert store.lookup_id_prefix(a.id[:2]) is None, "too short to be an ID prefix"
    assert store.lookup_id_prefix("") is None
    assert store.lookup_id_prefix(a.id[:10].upper()) is None
    assert store.lookup_id_prefix("xyz") is None


# === removal and shared layers


def test_shared_layers_are_refcounted(store: Store) -> None:
    a = store.commit_image(**pull(store, [b"base", b"a"], ["example.com/a:1"]))
    b = store.commit_image(**pull(store, [b"base", b"b"], ["example.com/b:1"]))
    base = a.layers[0]
    assert b.layers[0] == base
    assert a.layers[1].chain_id != b.layers[1].chain_id

    removed = store.remove_image(a.id)
    assert removed == a
    assert store.image(a.id) is None
    assert store.lookup_name("example.com/a:1") is None
    assert store.layer(base.chain_id) == base, "still used by b"
    assert store.layer_path(base.chain_id).is_dir()
    assert store.has_blob(base.blob_digest)
    assert not store.layer_path(a.layers[1].chain_id).exists()
    assert not store.has_blob(a.layers[1].blob_digest)
    assert not store.has_blob(a.manifest_digest)
    assert not store.has_blob(a.config_digest)

    store.remove_image(b.id)
    assert store.layer(base.chain_id) is None
    assert not store.layer_path(base.chain_id).exists()
    assert not store.has_blob(base.blob_digest)
    assert list((store.root / "layers").iterdir()) == []
    assert list(store.tmp_dir.iterdir()) == [], "the trash is emptied after the commit"
    assert all(not p.is_file() for p in (store.root / "blobs").rglob("*"))


def test_shared_layer_from_differently_compressed_blobs(store: Store) -> None:
    gz = store.commit_image(**pull(store, [b"base"], ["example.com/gz:1"], label="gz"))
    zs = store.commit_image(
        **pull(store, [b"base"], ["example.com/zs:1"], label="zs", variant=b"zs")
    )
    chain = gz.layers[0].chain_id
    assert zs.layers[0].chain_id == chain
    assert zs.layers[0].blob_digest != gz.layers[0].blob_digest, "each image keeps its blob"
    store.remove_image(gz.id)
    layer = store.layer(chain)
    assert layer is not None
    assert layer.blob_digest == zs.layers[0].blob_digest, "points at a blob still kept"
    assert store.has_blob(zs.layers[0].blob_digest)
    assert not store.has_blob(gz.layers[0].blob_digest)


def test_remove_keeps_read_only_dirs_from_failing(store: Store) -> None:
    record = store.commit_image(**pull(store, [b"ro"], ["example.com/ro:1"]))
    path = store.layer_path(record.layers[0].chain_id)
    (path / "locked").mkdir()
    (path / "locked" / "file").write_text("x")
    (path / "locked").chmod(0o500)
    store.remove_image(record.id)
    assert not path.exists()


def test_closed_store_refuses_use(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.list_images()
