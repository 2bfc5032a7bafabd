"""RegistryClient against a real docker-registry on 127.0.0.1: ping, manifests, blobs, tags."""

from __future__ import annotations

import json

import pytest

from support.fault_proxy import FaultProxy
from support.images import Image
from support.registry import PushedImage, RegistryServer, free_port
from towline.errors import DigestMismatchError, ManifestUnknownError, TransportError
from towline.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    ImageIndex,
    ImageManifest,
    compute_digest,
    parse_image_config,
    parse_manifest,
)
from towline.registry.client import MANIFEST_SIZE_LIMIT

from .conftest import TAGS, ClientFactory, ExtraImages, HashingSink, Sleeps


def test_ping_falls_back_to_http_only_without_tls_verification(
    registry: RegistryServer, make_client: ClientFactory
) -> None:
    client = make_client(registry.host)
    client.ping()
    client.ping()  # cached: no second round trip
    assert client.base_url == registry.url


def test_ping_over_https_to_a_plain_http_registry_says_what_to_do(
    registry: RegistryServer, make_client: ClientFactory
) -> None:
    client = make_client(registry.host, tls_verify=True)
    with pytest.raises(TransportError) as info:
        client.get_manifest("test/gzip", "latest")
    message = str(info.value)
    assert message.startswith(f"pinging container registry {registry.host}: ")
    assert "pass tls_verify=False (--tls-verify=false on the command line)" in message
    assert info.value.slug == "ping"


def test_ping_to_a_closed_port_is_retried_then_reported(
    make_client: ClientFactory, sleeps: Sleeps
) -> None:
    host = f"127.0.0.1:{free_port()}"
    client = make_client(host, max_retries=2)
    with pytest.raises(TransportError, match=f"pinging container registry {host}: .*refused"):
        client.ping()
    # Each attempt tries https then http; the round is retried twice (not each scheme).
    assert len(sleeps.delays) == 2


def test_ping_rejects_statuses_other_than_200_and_401(
    fault_proxy: FaultProxy, make_client: ClientFactory
) -> None:
    fault_proxy.respond("^/v2/$", 404, times=None)
    client = make_client(fault_proxy.host)
    with pytest.raises(
        TransportError,
        match=f"pinging container registry {fault_proxy.host}: "
        "received unexpected HTTP status: 404 Not Found",
    ):
        client.ping()


def test_requests_carry_the_distribution_headers(
    fault_proxy: FaultProxy, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    client = make_client(fault_proxy.host)
    image = test_images["gzip"]
    client.get_manifest(image.repo, image.tag)
    client.copy_blob(image.repo, image.layers[0].digest, image.layers[0].size, HashingSink())
    manifest_get, blob_get = fault_proxy.log[-2:]
    for entry in (manifest_get, blob_get):
        assert entry.headers["user-agent"].startswith("towline/")
        assert entry.headers["docker-distribution-api-version"] == "registry/2.0"
    assert manifest_get.headers["accept"] == MANIFEST_ACCEPT
    assert blob_get.headers["accept-encoding"] == "identity"
    assert "range" not in blob_get.headers


@pytest.mark.parametrize(
    ("name", "media_type", "kind"),
    [
        ("gzip", OCI_MANIFEST, ImageManifest),
        ("zstd", OCI_MANIFEST, ImageManifest),
        ("docker", DOCKER_MANIFEST, ImageManifest),
        ("multiarch", OCI_INDEX, ImageIndex),
    ],
)
def test_manifest_of_each_media_type(
    registry: RegistryServer,
    test_images: dict[str, PushedImage],
    make_client: ClientFactory,
    name: str,
    media_type: str,
    kind: type,
) -> None:
    image = test_images[name]
    fetched = make_client(registry.host).get_manifest(image.repo, image.tag)
    assert fetched.media_type == media_type
    assert fetched.digest == image.manifest_digest
    assert fetched.raw == image.artifact.manifest
    assert isinstance(parse_manifest(fetched.raw, fetched.media_type), kind)


def test_docker_manifest_list(
    registry: RegistryServer, extra_images: ExtraImages, make_client: ClientFactory
) -> None:
    image = extra_images.docker_list
    fetched = make_client(registry.host).get_manifest(image.repo, image.tag)
    assert fetched.media_type == DOCKER_MANIFEST_LIST
    parsed = parse_manifest(fetched.raw, fetched.media_type)
    assert isinstance(parsed, ImageIndex)
    assert [m.media_type for m in parsed.manifests] == [DOCKER_MANIFEST, DOCKER_MANIFEST]


def test_pull_by_digest_then_the_instance_of_an_index(
    registry: RegistryServer, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    client = make_client(registry.host)
    index = test_images["multiarch"]
    fetched = client.get_manifest(index.repo, index.manifest_digest)
    assert fetched.digest == index.manifest_digest
    parsed = parse_manifest(fetched.raw, fetched.media_type)
    assert isinstance(parsed, ImageIndex)
    arm = next(m for m in parsed.manifests if (m.platform or {}).get("architecture") == "arm")
    instance = client.get_manifest(index.repo, arm.digest)
    assert instance.digest == arm.digest
    manifest = parse_manifest(instance.raw, instance.media_type)
    assert isinstance(manifest, ImageManifest)
    config = parse_image_config(client.get_blob(index.repo, manifest.config.digest, 1 << 20))
    assert config.platform == "linux/arm/v7"


def test_a_manifest_that_does_not_match_its_digest_is_refused(
    fault_proxy: FaultProxy, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    image = test_images["gzip"]
    other = test_images["zstd"].artifact.manifest
    fault_proxy.respond(
        f"/manifests/{image.manifest_digest}$",
        200,
        headers={"Content-Type": OCI_MANIFEST},
        body=other,
    )
    with pytest.raises(DigestMismatchError) as info:
        make_client(fault_proxy.host).get_manifest(image.repo, image.manifest_digest)
    assert info.value.expected == image.manifest_digest
    assert info.value.actual == compute_digest(other)
    assert image.manifest_digest in str(info.value)
    assert compute_digest(other) in str(info.value)


def test_docker_content_digest_is_cross_checked_for_tags(
    fault_proxy: FaultProxy, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    image = test_images["gzip"]
    fault_proxy.respond(
        "/manifests/latest$",
        200,
        headers={
            "Content-Type": OCI_MANIFEST,
            "Docker-Content-Digest": test_images["zstd"].manifest_digest,
        },
        body=image.artifact.manifest,
    )
    with pytest.raises(DigestMismatchError, match="Docker-Content-Digest"):
        make_client(fault_proxy.host).get_manifest(image.repo, "latest")


def test_manifest_unknown_uses_podmans_words(
    registry: RegistryServer, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    client = make_client(registry.host)
    with pytest.raises(ManifestUnknownError) as info:
        client.get_manifest("test/gzip", "nope")
    assert (
        str(info.value) == f"reading manifest nope in {registry.host}/test/gzip: manifest unknown"
    )
    with pytest.raises(ManifestUnknownError, match=r"reading manifest latest in .*/no/such/repo"):
        client.get_manifest("no/such/repo", "latest")
    with pytest.raises(ManifestUnknownError):
        client.head_manifest("test/gzip", "nope")


def test_head_manifest_returns_the_digest(
    registry: RegistryServer, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    image = test_images["multiarch"]
    assert make_client(registry.host).head_manifest(image.repo, "latest") == image.manifest_digest


def test_schema1_and_oversized_manifests_are_refused(
    fault_proxy: FaultProxy, make_client: ClientFactory
) -> None:
    schema1 = json.dumps({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}).encode()
    fault_proxy.respond(
        "/manifests/old$",
        200,
        headers={"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"},
        body=schema1,
    )
    fault_proxy.respond("/manifests/huge$", 200, body=b" " * (MANIFEST_SIZE_LIMIT + 1))
    client = make_client(fault_proxy.host)
    with pytest.raises(TransportError, match="Docker schema1 manifests are not supported") as info:
        client.get_manifest("test/gzip", "old")
    assert str(info.value).startswith(f"reading manifest old in {fault_proxy.host}/test/gzip: ")
    with pytest.raises(TransportError, match="4194304-byte limit") as info:
        client.get_manifest("test/gzip", "huge")
    assert info.value.slug == "too_large"


def test_get_blob_verifies_and_bounds_the_config(
    fault_proxy: FaultProxy, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    image = test_images["docker"]
    assert image.config_digest is not None
    assert isinstance(image.artifact, Image)
    client = make_client(fault_proxy.host)
    assert client.get_blob(image.repo, image.config_digest, 1 << 20) == image.artifact.config
    with pytest.raises(TransportError, match="limit") as info:
        client.get_blob(image.repo, image.config_digest, 10)
    assert info.value.slug == "too_large"
    fault_proxy.respond(f"/blobs/{image.config_digest}$", 200, body=b'{"os": "evil"}')
    with pytest.raises(DigestMismatchError) as mismatch:
        client.get_blob(image.repo, image.config_digest, 1 << 20)
    assert mismatch.value.expected == image.config_digest


def test_unknown_blob(
    registry: RegistryServer, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    missing = "sha256:" + "0" * 64
    with pytest.raises(TransportError) as info:
        make_client(registry.host).get_blob("test/gzip", missing, 100)
    assert info.value.slug == "blob_unknown"
    assert str(info.value) == (
        f"fetching blob {missing} from {registry.host}/test/gzip: blob unknown to registry"
    )


def test_copy_blob_streams_every_layer_exactly(
    registry: RegistryServer, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    client = make_client(registry.host)
    image = test_images["zstd"]
    for layer in image.layers:
        sink = HashingSink()
        seen: list[int] = []
        client.copy_blob(image.repo, layer.digest, layer.size, sink, progress=seen.append)
        assert (sink.digest, sink.bytes_written, sum(seen)) == (
            layer.digest,
            layer.size,
            layer.size,
        )


def test_copy_blob_uses_megabyte_chunks(
    registry: RegistryServer, extra_images: ExtraImages, make_client: ClientFactory
) -> None:
    layer = extra_images.big.layers[0]
    sink = HashingSink()
    make_client(registry.host).copy_blob(extra_images.big.repo, layer.digest, layer.size, sink)
    assert sink.digest == layer.digest
    assert max(sink.writes) <= 1024 * 1024
    assert len(sink.writes) >= 4  # ~3 MiB in chunks of at most 1 MiB


def test_copy_blob_refuses_more_bytes_than_the_descriptor_says(
    registry: RegistryServer, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    layer = test_images["gzip"].layers[0]
    sink = HashingSink()
    with pytest.raises(DigestMismatchError) as info:
        make_client(registry.host).copy_blob("test/gzip", layer.digest, layer.size - 1, sink)
    assert info.value.slug == "size_mismatch"
    assert sink.bytes_written <= layer.size - 1
    with pytest.raises(DigestMismatchError, match="fewer bytes"):
        make_client(registry.host).copy_blob(
            "test/gzip", layer.digest, layer.size + 1, HashingSink()
        )


def test_list_tags_of_a_real_repository(
    registry: RegistryServer, extra_images: ExtraImages, make_client: ClientFactory
) -> None:
    client = make_client(registry.host)
    assert sorted(client.list_tags(extra_images.tags_repo)) == TAGS
    # distribution 2.8 ignores ?n= on tag lists (pagination came in v3): one page
    assert sorted(client.list_tags(extra_images.tags_repo, page_size=2)) == TAGS


def test_list_tags_follows_link_pagination(
    fault_proxy: FaultProxy, make_client: ClientFactory
) -> None:
    def page(tags: list[str]) -> bytes:
        return json.dumps({"name": "app", "tags": tags}).encode()

    # Scripted pages: relative and absolute next links; only path+query are followed.
    fault_proxy.respond(
        r"/tags/list\?n=2$",
        200,
        headers={"Link": '</v2/app/tags/list?n=2&last=b>; rel="next"'},
        body=page(["a", "b"]),
    )
    fault_proxy.respond(
        r"last=b$",
        200,
        headers={"Link": '<https://elsewhere.example/v2/app/tags/list?n=2&last=d>; rel="next"'},
        body=page(["c", "d"]),
    )
    fault_proxy.respond(r"last=d$", 200, body=page(["e"]))
    assert make_client(fault_proxy.host).list_tags("app", page_size=2) == ["a", "b", "c", "d", "e"]
    assert [e.path for e in fault_proxy.log if "/tags/list" in e.path] == [
        "/v2/app/tags/list?n=2",
        "/v2/app/tags/list?n=2&last=b",
        "/v2/app/tags/list?n=2&last=d",
    ]


def test_list_tags_refuses_a_pagination_loop(
    fault_proxy: FaultProxy, make_client: ClientFactory
) -> None:
    fault_proxy.respond(
        "/tags/list",
        200,
        times=None,
        headers={"Link": '</v2/app/tags/list>; rel="next"'},
        body=b'{"tags": ["a"]}',
    )
    with pytest.raises(TransportError, match="pagination loops back"):
        make_client(fault_proxy.host).list_tags("app")


def test_list_tags_of_an_unknown_repository(
    registry: RegistryServer, make_client: ClientFactory
) -> None:
    with pytest.raises(ManifestUnknownError, match=r"listing tags of .*/no/such/repo"):
        make_client(registry.host).list_tags("no/such/repo")


def test_invalid_tags_are_reported(fault_proxy: FaultProxy, make_client: ClientFactory) -> None:
    digest = "sha256:" + "a" * 64
    fault_proxy.respond("/tags/list", 200, body=json.dumps({"tags": ["ok", "", digest]}).encode())
    assert make_client(fault_proxy.host).list_tags("x") == ["ok"]
    fault_proxy.respond("/tags/list", 200, body=b'{"tags": ["-bad"]}')
    with pytest.raises(TransportError, match="registry returned invalid tag '-bad'"):
        make_client(fault_proxy.host).list_tags("x")
