"""ChainIDs, layer records and the chain checks made at commit."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from towline.errors import InvalidReferenceError, StoreError
from towline.store import Store, chain_ids

from . import pull, pull_layers, sha256


def test_chain_ids_follow_the_oci_formula() -> None:
    a, b, c = (sha256(x) for x in (b"a", b"b", b"c"))
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_ids([a, b, c]) == [a, ab, abc]
    assert chain_ids([]) == []


def test_chain_ids_differ_from_c_storage_layer_ids() -> None:
    # c/storage joins parent and diff_id with "+" and hashes hex only; OCI uses " ".
    a, b = sha256(b"a"), sha256(b"b")
    plus = hashlib.sha256((a.split(":")[1] + "+" + b.split(":")[1]).encode()).hexdigest()
    assert chain_ids([a, b])[1] != "sha256:" + plus


def test_chain_ids_reject_bad_diff_ids() -> None:
    with pytest.raises(InvalidReferenceError, match="invalid digest"):
        chain_ids(["sha256:nothex"])


def test_layer_needs_row_and_directory(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        (layer,) = pull_layers(store, [b"one"])
        assert store.layer_path(layer.chain_id).is_dir()
        assert store.layer(layer.chain_id) is None, "a dir without a row is not a layer yet"
        store.commit_image(**pull(store, [b"one"], ["example.com/a:1"]))
        assert store.layer(layer.chain_id) == layer
        store.layer_path(layer.chain_id).rename(tmp_path / "elsewhere")
        assert store.layer(layer.chain_id) is None, "a row without its dir is not usable"


def test_layer_path_requires_sha256_chain_id(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        assert store.layer_path("sha256:" + "1" * 64) == store.root / "layers" / ("1" * 64)
        with pytest.raises(StoreError, match="ChainIDs are sha256"):
            store.layer_path("sha512:" + "1" * 128)


def test_commit_checks_the_chain(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        kwargs = pull(store, [b"one", b"two"], ["example.com/a:1"])
        bottom, top = kwargs["layers"]
        for broken in (
            [bottom, dataclasses.replace(top, parent=None)],
            [dataclasses.replace(bottom, chain_id=top.chain_id), top],
            [top, bottom],
        ):
            with pytest.raises(StoreError, match="chain_ids"):
                store.commit_image(**{**kwargs, "layers": broken})
        assert store.list_images() == []


def test_commit_requires_every_layer_dir(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        kwargs = pull(store, [b"one", b"two"], ["example.com/a:1"])
        top = kwargs["layers"][1]
        store.layer_path(top.chain_id).rename(tmp_path / "gone")
        with pytest.raises(StoreError, match="is not unpacked at") as info:
            store.commit_image(**kwargs)
        assert top.chain_id in str(info.value)
        assert store.list_images() == []
        assert store.layer(kwargs["layers"][0].chain_id) is None, "nothing half committed"


@pytest.mark.parametrize("which", ["manifest_digest", "config_digest", "list_digest"])
def test_commit_requires_manifest_config_and_list_blobs(tmp_path: Path, which: str) -> None:
    with Store(tmp_path) as store:
        kwargs = pull(store, [b"one"], ["example.com/a:1"], via_list=b'{"manifests": []}')
        store.blob_path(kwargs[which]).unlink()
        with pytest.raises(StoreError, match=f"blob {kwargs[which]} is not in the store"):
            store.commit_image(**kwargs)
        assert store.list_images() == []
