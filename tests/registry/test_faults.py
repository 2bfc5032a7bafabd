"""Retries, 429, Range resume and redirects, through the fault proxy in front of the registry."""

from __future__ import annotations

import logging

import pytest

from support.fault_proxy import BLOB_PATH, FaultProxy
from support.registry import PushedImage, RegistryServer
from towline.errors import TransportError

from .conftest import ClientFactory, ExtraImages, HashingSink, Sleeps

MANIFEST_PATH = r"^/v2/test/gzip/manifests/latest$"


def requests_to(proxy: FaultProxy, pattern: str) -> list[str]:
    import re

    return [e.path for e in proxy.log if re.search(pattern, e.path)]


# === Range resume


def test_a_dropped_blob_resumes_with_a_range_request(
    fault_proxy: FaultProxy, extra_images: ExtraImages, make_client: ClientFactory, sleeps: Sleeps
) -> None:
    image = extra_images.big
    layer = image.layers[0]
    fault_proxy.drop_after(BLOB_PATH, 1_000_000)
    sink = HashingSink()
    progress: list[int] = []
    make_client(fault_proxy.host).copy_blob(
        image.repo, layer.digest, layer.size, sink, progress=progress.append
    )
    assert (sink.digest, sink.bytes_written, sum(progress)) == (
        layer.digest,
        layer.size,
        layer.size,
    )
    gets = [e for e in fault_proxy.log if "/blobs/" in e.path]
    assert [e.headers.get("range") for e in gets] == [None, "bytes=1000000-"]
    assert [e.status for e in gets] == [200, 206]
    assert len(sleeps.delays) == 1  # the pause before reconnecting


def test_a_blob_that_breaks_repeatedly_with_progress_keeps_resuming(
    fault_proxy: FaultProxy, extra_images: ExtraImages, make_client: ClientFactory
) -> None:
    image = extra_images.big
    layer = image.layers[0]
    fault_proxy.drop_after(BLOB_PATH, 1_100_000, times=2)
    sink = HashingSink()
    make_client(fault_proxy.host).copy_blob(image.repo, layer.digest, layer.size, sink)
    assert (sink.digest, sink.bytes_written) == (layer.digest, layer.size)
    ranges = [e.headers.get("range") for e in fault_proxy.log if "/blobs/" in e.path]
    assert ranges == [None, "bytes=1100000-", "bytes=2200000-"]


def test_a_blob_that_breaks_without_progress_is_given_up(
    fault_proxy: FaultProxy, extra_images: ExtraImages, make_client: ClientFactory
) -> None:
    image = extra_images.big
    layer = image.layers[0]
    fault_proxy.drop_after(BLOB_PATH, 1000, times=None)
    sink = HashingSink()
    with pytest.raises(TransportError, match="broke again after 1000 bytes") as info:
        make_client(fault_proxy.host).copy_blob(image.repo, layer.digest, layer.size, sink)
    assert info.value.slug == "connection"
    assert sink.bytes_written == 2000  # each byte once, nothing beyond what arrived


def test_a_200_answer_to_a_range_request_asks_the_caller_to_restart(
    fault_proxy: FaultProxy, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    image = test_images["gzip"]
    layer = image.layers[0]
    blob = image.artifact.blobs[layer.digest]  # type: ignore[union-attr]
    fault_proxy.respond(BLOB_PATH, 200, body=blob)
    sink = HashingSink(prefill=blob[:100])  # as if an earlier body broke after 100 bytes
    with pytest.raises(TransportError, match="server did not process a Range: header") as info:
        make_client(fault_proxy.host).copy_blob(image.repo, layer.digest, layer.size, sink)
    assert info.value.slug == "range_not_supported"
    assert sink.bytes_written == 100
    assert fault_proxy.log[-1].headers["range"] == "bytes=100-"


def test_a_206_starting_elsewhere_is_refused(
    fault_proxy: FaultProxy, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    image = test_images["gzip"]
    layer = image.layers[0]
    fault_proxy.respond(
        BLOB_PATH, 206, headers={"Content-Range": f"bytes 0-9/{layer.size}"}, body=b"x" * 10
    )
    with pytest.raises(TransportError, match="does not continue the blob") as info:
        make_client(fault_proxy.host).copy_blob(
            image.repo, layer.digest, layer.size, HashingSink(prefill=b"y" * 50)
        )
    assert info.value.slug == "invalid_range"


# === retries and 429


def test_429_is_waited_out_using_retry_after(
    fault_proxy: FaultProxy,
    test_images: dict[str, PushedImage],
    make_client: ClientFactory,
    sleeps: Sleeps,
) -> None:
    image = test_images["gzip"]
    fault_proxy.respond(MANIFEST_PATH, 429, headers={"Retry-After": "1"})
    fetched = make_client(fault_proxy.host).get_manifest(image.repo, "latest")
    assert fetched.digest == image.manifest_digest
    assert [e.status for e in fault_proxy.log if "/manifests/" in e.path] == [429, 200]
    assert sleeps.delays == [1.0]


def test_429_really_sleeps_one_second(
    fault_proxy: FaultProxy, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    import time

    fault_proxy.respond(MANIFEST_PATH, 429, headers={"Retry-After": "1"})
    started = time.monotonic()
    make_client(fault_proxy.host, sleep=time.sleep).get_manifest("test/gzip", "latest")
    assert 1.0 <= time.monotonic() - started < 5.0


def test_429_five_times_is_reported(
    fault_proxy: FaultProxy,
    test_images: dict[str, PushedImage],
    make_client: ClientFactory,
    sleeps: Sleeps,
) -> None:
    fault_proxy.respond(MANIFEST_PATH, 429, times=None)
    with pytest.raises(TransportError, match="too many requests to registry") as info:
        make_client(fault_proxy.host).get_manifest("test/gzip", "latest")
    assert info.value.slug == "too_many_requests"
    assert len(requests_to(fault_proxy, "/manifests/")) == 5
    assert sleeps.delays == [2.0, 4.0, 8.0, 16.0]


def test_503_is_retried_and_logged(
    fault_proxy: FaultProxy,
    test_images: dict[str, PushedImage],
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    image = test_images["gzip"]
    fault_proxy.respond(MANIFEST_PATH, 503, times=2)
    with caplog.at_level(logging.WARNING, logger="towline.registry"):
        fetched = make_client(fault_proxy.host).get_manifest(image.repo, "latest")
    assert fetched.digest == image.manifest_digest
    assert [e.status for e in fault_proxy.log if "/manifests/" in e.path] == [503, 503, 200]
    assert caplog.messages[0].startswith("Failed, retrying in 0s ... (1/3). Error: ")
    assert caplog.messages[1].startswith("Failed, retrying in 0s ... (2/3). Error: ")
    assert "503 Service Unavailable" in caplog.messages[0]


def test_503_until_retries_run_out(
    fault_proxy: FaultProxy, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    fault_proxy.respond(MANIFEST_PATH, 503, times=None)
    with pytest.raises(
        TransportError, match="received unexpected HTTP status: 503 Service Unavailable"
    ):
        make_client(fault_proxy.host, max_retries=2).get_manifest("test/gzip", "latest")
    assert len(requests_to(fault_proxy, "/manifests/")) == 3


def test_500_is_not_retried(
    fault_proxy: FaultProxy, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    fault_proxy.respond(MANIFEST_PATH, 500)
    with pytest.raises(TransportError) as info:
        make_client(fault_proxy.host).get_manifest("test/gzip", "latest")
    assert str(info.value) == (
        f"reading manifest latest in {fault_proxy.host}/test/gzip: "
        "received unexpected HTTP status: 500 Internal Server Error"
    )
    assert len(requests_to(fault_proxy, "/manifests/")) == 1


def test_a_blob_request_answered_502_is_retried(
    fault_proxy: FaultProxy, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    image = test_images["gzip"]
    layer = image.layers[1]
    fault_proxy.respond(BLOB_PATH, 502)
    sink = HashingSink()
    make_client(fault_proxy.host).copy_blob(image.repo, layer.digest, layer.size, sink)
    assert sink.digest == layer.digest
    assert [e.status for e in fault_proxy.log if "/blobs/" in e.path] == [502, 200]


def test_a_config_body_cut_short_is_fetched_again(
    fault_proxy: FaultProxy, test_images: dict[str, PushedImage], make_client: ClientFactory
) -> None:
    image = test_images["gzip"]
    assert image.config_digest is not None
    fault_proxy.drop_after(BLOB_PATH, 10)
    config = make_client(fault_proxy.host).get_blob(image.repo, image.config_digest, 1 << 20)
    assert config == image.artifact.config  # type: ignore[union-attr]
    assert len(requests_to(fault_proxy, "/blobs/")) == 2


# === redirects


def test_a_cross_host_redirect_drops_authorization(
    auth_proxy: FaultProxy,
    other_host_proxy: FaultProxy,
    basic_auth_registry: RegistryServer,
    test_images: dict[str, PushedImage],
    make_client: ClientFactory,
) -> None:
    # Blobs are redirected to 127.0.0.2, a proxy in front of the open registry, which
    # holds the same (deterministic) blobs; like a CDN, it must not see the credentials.
    image = basic_auth_registry.pushed["gzip"]
    layer = image.layers[0]
    auth_proxy.redirect_blobs_to(other_host_proxy.host)
    client = make_client(auth_proxy.host, credentials=("alice", "s3cret"))
    client.get_manifest(image.repo, "latest")
    sink = HashingSink()
    client.copy_blob(image.repo, layer.digest, layer.size, sink)
    assert sink.digest == layer.digest
    redirected = [e for e in auth_proxy.log if "/blobs/" in e.path]
    assert [e.status for e in redirected] == [307]
    assert redirected[0].headers["authorization"].startswith("Basic ")
    followed = [e for e in other_host_proxy.log if "/blobs/" in e.path]
    assert [e.status for e in followed] == [200]
    assert "authorization" not in followed[0].headers
