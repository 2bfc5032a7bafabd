"""Manifest, index and config parsing: media types, validation, digests (pure, no network)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from towline.errors import DigestMismatchError, TransportError
from towline.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1_SIGNED_MANIFEST,
    MANIFEST_ACCEPT,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    ImageIndex,
    ImageManifest,
    compute_digest,
    detect_media_type,
    is_digest,
    layer_compression,
    parse_image_config,
    parse_manifest,
    verify_digest,
)

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64
D3 = "sha512:" + "c" * 128


def desc(media_type: str, digest: object = D1, size: object = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def oci_manifest(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG),
        "layers": [desc(OCI_LAYER_GZIP, D2, 1234), desc(OCI_LAYER_ZSTD, D3, 5)],
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def raw(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_accept_lists_the_four_supported_types_single_images_first() -> None:
    parts = [p.strip() for p in MANIFEST_ACCEPT.split(",")]
    assert parts == [OCI_MANIFEST, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX]


def test_oci_manifest_parses_every_descriptor_field() -> None:
    doc = oci_manifest(annotations={"org.opencontainers.image.ref.name": "v1"})
    doc["layers"][0]["urls"] = ["https://example.com/layer"]
    doc["layers"][0]["annotations"] = {"a": "b"}
    parsed = parse_manifest(raw(doc), OCI_MANIFEST)
    assert isinstance(parsed, ImageManifest)
    assert parsed.media_type == OCI_MANIFEST
    assert parsed.config == Descriptor(OCI_CONFIG, D1, 10)
    assert parsed.layers[0] == Descriptor(
        OCI_LAYER_GZIP, D2, 1234, None, {"a": "b"}, ["https://example.com/layer"]
    )
    assert parsed.layers[1].digest == D3
    assert parsed.annotations == {"org.opencontainers.image.ref.name": "v1"}


def test_oci_manifest_without_media_type_uses_content_type_then_shape() -> None:
    doc = oci_manifest(mediaType=None)
    assert parse_manifest(raw(doc), OCI_MANIFEST + "; charset=utf-8").media_type == OCI_MANIFEST
    assert parse_manifest(raw(doc), None).media_type == OCI_MANIFEST
    assert parse_manifest(raw(doc), "application/octet-stream").media_type == OCI_MANIFEST


def test_body_media_type_wins_over_content_type() -> None:
    doc = oci_manifest(mediaType=DOCKER_MANIFEST)
    assert detect_media_type(raw(doc), OCI_MANIFEST) == DOCKER_MANIFEST


def test_docker_manifest() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": desc(DOCKER_CONFIG),
        "layers": [desc(DOCKER_LAYER_GZIP, D2)],
    }
    parsed = parse_manifest(raw(doc), DOCKER_MANIFEST)
    assert isinstance(parsed, ImageManifest)
    assert parsed.media_type == DOCKER_MANIFEST
    assert [layer.media_type for layer in parsed.layers] == [DOCKER_LAYER_GZIP]


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_MANIFEST_LIST])
def test_index_and_list_with_platforms(media_type: str) -> None:
    entry_type = OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            desc(entry_type, D1, platform={"os": "linux", "architecture": "amd64"}),
            desc(
                entry_type,
                D2,
                platform={"os": "linux", "architecture": "arm", "variant": "v7"},
            ),
            desc(entry_type, D1),  # OCI allows entries without a platform
        ],
    }
    parsed = parse_manifest(raw(doc), None)
    assert isinstance(parsed, ImageIndex)
    assert parsed.media_type == media_type
    assert [m.platform for m in parsed.manifests] == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm", "variant": "v7"},
        None,
    ]


def test_index_without_media_type_is_recognised_by_its_manifests() -> None:
    doc = {"schemaVersion": 2, "manifests": []}
    assert parse_manifest(raw(doc), None) == ImageIndex(OCI_INDEX, [])


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ({"schemaVersion": 1, "name": "x", "fsLayers": []}, None),
        ({"schemaVersion": 1, "name": "x"}, DOCKER_SCHEMA1_SIGNED_MANIFEST),
        ({"mediaType": DOCKER_SCHEMA1_SIGNED_MANIFEST}, None),
        ({"schemaVersion": 2}, "application/vnd.docker.distribution.manifest.v1+json"),
    ],
)
def test_schema1_is_refused_clearly(body: dict[str, Any], content_type: str | None) -> None:
    with pytest.raises(TransportError, match="Docker schema1 manifests are not supported") as info:
        parse_manifest(raw(body), content_type)
    assert info.value.slug == "invalid_manifest"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (raw({"schemaVersion": 2}), "cannot tell its type"),
        (raw(oci_manifest(mediaType="application/vnd.example+json")), "unsupported media type"),
        (raw(oci_manifest(schemaVersion=3)), "schemaVersion must be 2"),
        (raw(oci_manifest(schemaVersion=None)), "schemaVersion must be 2"),
        (raw(oci_manifest(config=None)), "config must be an object"),
        (raw(oci_manifest(layers=None)), "needs a layers list"),
        (raw(oci_manifest(layers={"a": 1})), "needs a layers list"),
        (raw(oci_manifest(manifests=[])), "must not have a manifests list"),
        (
            raw(oci_manifest(config=desc(OCI_CONFIG, "sha256:abc"))),
            "has 64 hex digits, this one has 3",
        ),
        (
            raw(oci_manifest(config=desc(OCI_CONFIG, "sha256:" + "A" * 64))),
            "must be lowercase hexadecimal",
        ),
        (
            raw(oci_manifest(config=desc(OCI_CONFIG, "md5:" + "a" * 32))),
            "unsupported digest algorithm",
        ),
        (raw(oci_manifest(config=desc(OCI_CONFIG, "nocolon"))), "algorithm:hex"),
        (raw(oci_manifest(config=desc(OCI_CONFIG, 12))), "is not a string"),
        (raw(oci_manifest(config=desc(OCI_CONFIG, size=-1))), "non-negative integer"),
        (raw(oci_manifest(config=desc(OCI_CONFIG, size=True))), "non-negative integer"),
        (raw(oci_manifest(config=desc(OCI_CONFIG, size="10"))), "non-negative integer"),
        # Hostile JSON (issue 7, finding 10): a one-line invalid_manifest, never a crash.
        (b"[" * 200_000, "manifest is not valid JSON (nested more than 100 levels deep)"),
        (raw(oci_manifest(config=desc(OCI_CONFIG, size=2**63))), "integer below 2^63"),
        (raw(oci_manifest(config=desc(OCI_CONFIG, size=2**70))), "does not fit in 64 bits"),
        (
            raw(oci_manifest(config=desc(OCI_CONFIG, size=98765))).replace(
                b"98765", b"1" + b"0" * 5000
            ),
            "does not fit in 64 bits",
        ),
        (raw(oci_manifest(config=desc(OCI_CONFIG, size=float("nan")))), "NaN is not a JSON"),
        (raw(oci_manifest(config=desc(OCI_CONFIG, size=float("inf")))), "Infinity is not a"),
        (raw(oci_manifest(config={"digest": D1, "size": 1})), "config has no mediaType"),
        (raw(oci_manifest(layers=[desc(OCI_LAYER_GZIP, urls="x")])), "layers[0] urls"),
        (raw(oci_manifest(layers=[desc(OCI_LAYER_GZIP, annotations={"a": 1})])), "annotations"),
        (raw(oci_manifest(annotations=[])), "annotations must be an object"),
        (raw(oci_manifest(mediaType=5)), "mediaType must be a string"),
        (
            raw({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "layers": []}),
            "must not have config or layers",
        ),
        (raw({"schemaVersion": 2, "mediaType": OCI_INDEX}), "needs a manifests list"),
        (
            raw(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_INDEX,
                    "manifests": [desc(OCI_MANIFEST, platform={"os": "linux"})],
                }
            ),
            "manifests[0] platform has no architecture",
        ),
    ],
)
def test_invalid_manifests_name_the_problem(document: bytes, message: str) -> None:
    with pytest.raises(TransportError, match="invalid manifest") as info:
        parse_manifest(document, None)
    assert message in str(info.value)
    assert info.value.slug == "invalid_manifest"


def test_config_parsing() -> None:
    config = {
        "created": "2024-01-02T03:04:05Z",
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
    }
    parsed = parse_image_config(raw(config))
    assert (parsed.os, parsed.architecture, parsed.variant) == ("linux", "arm64", "v8")
    assert parsed.platform == "linux/arm64/v8"
    assert parsed.diff_ids == [D1, D2]
    assert parsed.created == "2024-01-02T03:04:05Z"
    assert parsed.raw["config"] == {"Env": ["PATH=/bin"]}
    minimal = parse_image_config(
        raw({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": []}})
    )
    assert (minimal.variant, minimal.created, minimal.platform) == ("", None, "linux/amd64")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        ({"architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": []}}, "os is missing"),
        ({"os": "linux", "architecture": "amd64"}, "rootfs is missing"),
        ({"os": "linux", "architecture": "amd64", "rootfs": {"type": "x"}}, "rootfs.type"),
        ({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers"}}, "diff_ids"),
        (
            {
                "os": "linux",
                "architecture": "amd64",
                "rootfs": {"type": "layers", "diff_ids": ["x"]},
            },
            "rootfs.diff_ids[0]",
        ),
        ({"os": 1, "architecture": "amd64"}, "os must be a string"),
        # As Go's encoding/json (issue 7, finding 12): NaN and Infinity are not JSON.
        (b'{"os": "linux", "architecture": "amd64", "x": NaN}', "NaN is not a JSON value"),
        (b'{"os": "linux", "architecture": "amd64", "x": [-Infinity]}', "-Infinity is not a"),
        (b'{"os": "linux", "architecture": "amd64", "x": 1e999}', "does not fit in 64 bits"),
        (b'{"history": ' + b"[" * 100_000, "nested more than 100 levels deep"),
    ],
)
def test_invalid_configs(config: object, message: str) -> None:
    document = config if isinstance(config, bytes) else raw(config)
    with pytest.raises(TransportError, match="invalid image config") as info:
        parse_image_config(document)
    assert message in str(info.value)
    assert info.value.slug == "invalid_image_config"


def test_invalid_config_errors_name_the_config() -> None:
    with pytest.raises(TransportError) as info:
        parse_image_config(b'{"os": NaN}', "image config sha256:abc of docker://reg/app:1")
    assert str(info.value) == (
        "invalid image config sha256:abc of docker://reg/app:1: the document is not valid JSON "
        "(NaN is not a JSON value)"
    )
    assert info.value.slug == "invalid_image_config"


def test_digests() -> None:
    data = b"hello"
    expected = "sha256:" + hashlib.sha256(data).hexdigest()
    assert compute_digest(data) == expected
    assert compute_digest(data, "sha512") == "sha512:" + hashlib.sha512(data).hexdigest()
    assert verify_digest(data, expected, "blob") == expected
    assert is_digest(expected)
    assert not is_digest("latest")
    assert not is_digest(None)


def test_digest_mismatch_names_expected_and_actual() -> None:
    actual = compute_digest(b"tampered")
    with pytest.raises(DigestMismatchError) as info:
        verify_digest(b"tampered", D1, "manifest v1 of example.com/app")
    message = str(info.value)
    assert message.startswith("manifest v1 of example.com/app: digest mismatch")
    assert D1 in message
    assert actual in message
    assert (info.value.expected, info.value.actual) == (D1, actual)


def test_blake3_digest_verifies() -> None:
    import blake3  # a test dependency (the [test] extra)

    digest = "blake3:" + blake3.blake3(b"x").hexdigest()
    assert verify_digest(b"x", digest, "blob") == digest


def test_verify_rejects_malformed_expected_digest() -> None:
    with pytest.raises(TransportError, match='blob: invalid digest "sha256:zz"') as info:
        verify_digest(b"x", "sha256:zz", "blob")
    assert info.value.slug == "invalid_digest"


@pytest.mark.parametrize(
    ("media_type", "compression"),
    [
        (OCI_LAYER_GZIP, "gzip"),
        (OCI_LAYER_ZSTD, "zstd"),
        (OCI_LAYER_NONDISTRIBUTABLE_ZSTD, "zstd"),
        ("application/vnd.oci.image.layer.v1.tar", "none"),
        (DOCKER_LAYER_GZIP, "gzip"),
        (OCI_LAYER_GZIP + "+encrypted", "gzip"),
        ("application/vnd.example", None),
    ],
)
def test_layer_compression(media_type: str, compression: str | None) -> None:
    assert layer_compression(media_type) == compression
