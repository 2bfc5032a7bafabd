"""The generic copy with the store as source and destination (``containers-storage:``).

Every other transport's tests go through the same copy; these pin what the store
itself does: names as c/storage gives them, reuse without a download, refusals
before any blob moves.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

import towline
from support.images import Image, build_image, build_index, sha256_digest
from support.registry import PushedImage, RegistryServer, push_named
from towline.manifest import DOCKER_MANIFEST, OCI_MANIFEST, parse_manifest

from .conftest import store_files, unique_layers

OPTS = towline.PullOptions(tls_verify=False)


def test_pull_from_containers_storage_is_a_lookup_with_the_same_image(
    runtime: towline.Runtime, push_unique: Callable[..., PushedImage]
) -> None:
    pushed = push_unique()
    [pulled] = runtime.pull(pushed.reference, options=OPTS)
    before = store_files(runtime.root)
    [again] = runtime.pull(f"containers-storage:{pushed.reference}", options=OPTS)
    assert again.id == pulled.id and again.names == pulled.names
    assert store_files(runtime.root) == before


def test_copy_from_a_registry_into_the_store_names_it_as_c_storage_does(
    runtime: towline.Runtime, push_unique: Callable[..., PushedImage]
) -> None:
    pushed = push_unique()
    result = runtime.copy(f"docker://{pushed.reference}", "containers-storage:copied", OPTS)
    assert result.image_ids == [pushed.config_digest.partition(":")[2]]
    assert result.manifest_digest == pushed.manifest_digest
    image, _ = runtime.lookup_image("docker.io/library/copied:latest")
    assert image.id == result.image_ids[0]
    assert [layer.digest for layer in image.layers] == [x.digest for x in pushed.layers]


def test_copy_within_the_store_adds_a_name_and_moves_no_blob(
    runtime: towline.Runtime, push_unique: Callable[..., PushedImage]
) -> None:
    pushed = push_unique()
    [pulled] = runtime.pull(pushed.reference, options=OPTS)
    before = store_files(runtime.root)
    runtime.copy(f"containers-storage:{pulled.id}", "containers-storage:quay.io/other/name:2")
    image, _ = runtime.lookup_image("quay.io/other/name:2")
    assert image.id == pulled.id
    assert set(image.names) == {*pulled.names, "quay.io/other/name:2"}
    assert store_files(runtime.root) == before


def test_all_platforms_into_the_store_is_refused_before_any_blob(
    runtime: towline.Runtime, registry: RegistryServer
) -> None:
    images = [
        build_image(unique_layers(f"all-{arch}"), platform=f"linux/{arch}")
        for arch in ("amd64", "arm64")
    ]
    pushed = push_named(registry, "copy/all-platforms", build_index(images))
    with pytest.raises(towline.TransportError, match="holds one image") as caught:
        runtime.copy(
            f"docker://{pushed.reference}", "containers-storage:x", OPTS, all_platforms=True
        )
    assert caught.value.slug == "index_not_supported"
    assert runtime.list_images() == []
    assert not [p for p in store_files(runtime.root) if p.startswith("layers/")]


def test_an_encrypted_layer_is_refused_before_any_download(
    runtime: towline.Runtime, registry: RegistryServer
) -> None:
    image = build_image(unique_layers("encrypted"))
    manifest = json.loads(image.manifest)
    manifest["layers"][0]["mediaType"] += "+encrypted"
    raw = json.dumps(manifest).encode()
    encrypted = Image(
        raw,
        image.config,
        image.blobs,
        sha256_digest(raw),
        image.config_digest,
        image.layers,
        image.media_type,
        image.platform,
    )
    pushed = push_named(registry, "copy/encrypted", encrypted)
    with pytest.raises(towline.TransportError, match="encrypted images are not supported"):
        runtime.pull(pushed.reference, options=OPTS)
    assert store_files(runtime.root) == {"blobs/sha256"}


def test_a_docker_manifest_is_stored_as_is_and_an_oci_one_too(
    runtime: towline.Runtime, registry: RegistryServer
) -> None:
    # The store keeps both formats (no conversion), as c/storage.
    for media in ("docker", "oci"):
        image = build_image(unique_layers(f"kept-{media}"), media=media)  # type: ignore[arg-type]
        pushed = push_named(registry, f"copy/kept-{media}", image)
        [pulled] = runtime.pull(pushed.reference, options=OPTS)
        assert pulled.digest == pushed.manifest_digest
        kind = parse_manifest(image.manifest, None).media_type
        assert kind == (DOCKER_MANIFEST if media == "docker" else OCI_MANIFEST)
