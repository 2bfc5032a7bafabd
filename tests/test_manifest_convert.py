"""Manifest conversion between OCI and Docker v2s2: only media types change."""

from __future__ import annotations

import json

import pytest

from support.images import build_image, build_index
from towline.errors import TransportError
from towline.manifest import (
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    ImageIndex,
    ImageManifest,
    compute_digest,
    parse_manifest,
)
from towline.manifest_convert import convert_index, convert_manifest


def _manifest(media: str, compression: str = "gzip") -> ImageManifest:
    image = build_image([b"\0" * 1024], media=media, compression=compression)  # type: ignore[arg-type]
    parsed = parse_manifest(image.manifest, None)
    assert isinstance(parsed, ImageManifest)
    return parsed


@pytest.mark.parametrize(("source", "target"), [("oci", DOCKER_MANIFEST), ("docker", OCI_MANIFEST)])
def test_conversion_keeps_config_and_layer_digests(source: str, target: str) -> None:
    manifest = _manifest(source)
    converted = parse_manifest(convert_manifest(manifest, target), None)
    assert isinstance(converted, ImageManifest)
    assert converted.media_type == target
    assert converted.config.digest == manifest.config.digest
    assert [(x.digest, x.size) for x in converted.layers] == [
        (x.digest, x.size) for x in manifest.layers
    ]
    wanted = DOCKER_LAYER_GZIP if target == DOCKER_MANIFEST else OCI_LAYER_GZIP
    assert {x.media_type for x in converted.layers} == {wanted}


def test_conversion_back_and_forth_is_stable() -> None:
    manifest = _manifest("oci")
    docker = parse_manifest(convert_manifest(manifest, DOCKER_MANIFEST), None)
    assert isinstance(docker, ImageManifest)
    once = convert_manifest(docker, OCI_MANIFEST)
    again = parse_manifest(once, None)
    assert isinstance(again, ImageManifest)
    assert convert_manifest(again, OCI_MANIFEST) == once


def test_docker_output_is_in_go_field_order() -> None:
    raw = convert_manifest(_manifest("oci"), DOCKER_MANIFEST)
    assert list(json.loads(raw)) == ["schemaVersion", "mediaType", "config", "layers"]
    assert list(json.loads(raw)["config"]) == ["mediaType", "size", "digest"]


def test_zstd_layers_have_no_docker_equivalent() -> None:
    with pytest.raises(TransportError, match="has no equivalent") as caught:
        convert_manifest(_manifest("oci", "zstd"), DOCKER_MANIFEST)
    assert caught.value.slug == "manifest_conversion"


def test_an_index_becomes_a_list_pointing_at_the_converted_instances() -> None:
    images = [build_image([b"\0" * 10], platform=p) for p in ("linux/amd64", "linux/arm64")]
    index = parse_manifest(build_index(images).manifest, None)
    assert isinstance(index, ImageIndex)
    moved = {images[0].manifest_digest: ("sha256:" + "a" * 64, 42)}
    converted = parse_manifest(convert_index(index, DOCKER_MANIFEST_LIST, moved), None)
    assert isinstance(converted, ImageIndex)
    assert converted.media_type == DOCKER_MANIFEST_LIST
    assert [(x.digest, x.size) for x in converted.manifests] == [
        ("sha256:" + "a" * 64, 42),
        (images[1].manifest_digest, len(images[1].manifest)),
    ]
    assert {x.media_type for x in converted.manifests} == {DOCKER_MANIFEST}
    back = convert_index(converted, OCI_INDEX, {})
    assert compute_digest(back) != compute_digest(build_index(images).manifest)
