"""Pull policies, as libimage: always, missing, newer, never, and local IDs."""

from __future__ import annotations

import pytest

import towline
from support.images import build_image
from support.registry import PushedImage, RegistryServer, push_image

from .conftest import unique_layers

OPTS = towline.PullOptions(tls_verify=False)


def via(proxy_host: str, pushed: PushedImage) -> str:
    return f"{proxy_host}/{pushed.repo}:{pushed.tag}"


def requests(proxy) -> list[tuple[str, str]]:
    return [(e.method, e.path) for e in proxy.log]


def test_missing_uses_the_local_image_without_network(
    runtime: towline.Runtime, test_images: dict[str, PushedImage], fault_proxy
) -> None:
    name = via(fault_proxy.host, test_images["gzip"])
    [first] = runtime.pull(name, "missing", OPTS)
    fault_proxy.reset()
    [second] = runtime.pull(name, "missing", OPTS)
    assert second == first
    assert requests(fault_proxy) == []


def test_default_policy_is_missing(
    runtime: towline.Runtime, test_images: dict[str, PushedImage], fault_proxy
) -> None:
    name = via(fault_proxy.host, test_images["gzip"])
    runtime.pull(name, options=OPTS)
    fault_proxy.reset()
    runtime.pull(name, options=OPTS)
    assert requests(fault_proxy) == []


def test_always_pulls_again_but_reuses_layers(
    runtime: towline.Runtime, test_images: dict[str, PushedImage], fault_proxy
) -> None:
    name = via(fault_proxy.host, test_images["gzip"])
    runtime.pull(name, "always", OPTS)
    fault_proxy.reset()
    runtime.pull(name, "always", OPTS)
    paths = [p for m, p in requests(fault_proxy) if m == "GET"]
    assert any("/manifests/" in p for p in paths)
    assert not any(p.endswith(x.digest) for x in test_images["gzip"].layers for p in paths)


def test_never_without_a_local_image(
    runtime: towline.Runtime, test_images: dict[str, PushedImage], fault_proxy
) -> None:
    name = via(fault_proxy.host, test_images["gzip"])
    with pytest.raises(towline.ImageUnknownError, match="image not known"):
        runtime.pull(name, "never", OPTS)
    assert requests(fault_proxy) == []
    runtime.pull(name, "missing", OPTS)
    assert runtime.pull(name, "never", OPTS)[0].names == [name]


def test_newer_checks_the_digest_with_head_only(
    runtime: towline.Runtime, test_images: dict[str, PushedImage], fault_proxy
) -> None:
    name = via(fault_proxy.host, test_images["gzip"])
    runtime.pull(name, "missing", OPTS)
    fault_proxy.reset()
    runtime.pull(name, "newer", OPTS)
    # HEAD does not count against registry pull quotas; nothing else was needed.
    assert [m for m, p in requests(fault_proxy) if "/manifests/" in p] == ["HEAD"]
    assert not [p for m, p in requests(fault_proxy) if "/blobs/" in p]


def test_newer_pulls_when_the_tag_moved_and_keeps_the_old_image(
    runtime: towline.Runtime, registry: RegistryServer, push_unique
) -> None:
    old = push_unique(repo="unique/moving")
    [first] = runtime.pull(old.reference, "newer", OPTS)
    new_image = build_image(unique_layers("moved"))
    push_image(registry, "unique/moving", "latest", new_image)
    [second] = runtime.pull(old.reference, "newer", OPTS)
    assert second.id != first.id
    assert second.names == [old.reference]
    # As podman: the old image stays, untagged.
    kept = {i.id: i for i in runtime.list_images()}
    assert kept[first.id].names == []


def test_newer_with_the_registry_unreachable_uses_the_local_image(
    runtime: towline.Runtime, test_images: dict[str, PushedImage], fault_proxy
) -> None:
    name = via(fault_proxy.host, test_images["gzip"])
    [local] = runtime.pull(name, "missing", OPTS)
    fault_proxy.stop()
    [again] = runtime.pull(name, "newer", towline.PullOptions(tls_verify=False, max_retries=0))
    assert again == local


def test_always_after_a_tag_moved_retags(
    runtime: towline.Runtime, registry: RegistryServer, push_unique
) -> None:
    old = push_unique(repo="unique/retag")
    [first] = runtime.pull(old.reference, "always", OPTS)
    push_image(registry, "unique/retag", "latest", build_image(unique_layers("retagged")))
    [second] = runtime.pull(old.reference, "always", OPTS)
    assert second.id != first.id
    assert {i.id for i in runtime.list_images()} == {first.id, second.id}


def test_local_id_lookups(runtime: towline.Runtime, test_images: dict[str, PushedImage]) -> None:
    [image] = runtime.pull(test_images["docker"].reference, options=OPTS)
    assert runtime.pull(image.id, "missing", OPTS) == [image]
    assert runtime.pull("sha256:" + image.id, "newer", OPTS) == [image]
    with pytest.raises(towline.PolicyError, match="pull policy is always but image has been"):
        runtime.pull(image.id, "always", OPTS)
    with pytest.raises(towline.ImageUnknownError):
        runtime.pull("sha256:" + "0" * 64, "missing", OPTS)
    with pytest.raises(towline.InvalidReferenceError, match="no 64-byte hexadecimal value"):
        runtime.pull("sha256:abc", "missing", OPTS)
    assert runtime.lookup_image(image.id[:12])[0] == image


def test_a_custom_platform_turns_missing_into_newer(
    runtime: towline.Runtime, test_images: dict[str, PushedImage], fault_proxy
) -> None:
    name = via(fault_proxy.host, test_images["multiarch"])
    runtime.pull(name, "missing", towline.PullOptions(tls_verify=False, platform="linux/arm64"))
    fault_proxy.reset()
    [image] = runtime.pull(
        name, "missing", towline.PullOptions(tls_verify=False, platform="linux/arm64")
    )
    assert image.platform == "linux/arm64/v8"
    assert [m for m, p in requests(fault_proxy) if "/manifests/" in p] == ["HEAD"]


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("ifmissing", "missing"), ("IfNewer", "newer"), ("true", "always"), ("false", "never")],
)
def test_policy_aliases(runtime: towline.Runtime, given: str, canonical: str) -> None:
    if canonical == "never":
        with pytest.raises(towline.ImageUnknownError):
            runtime.pull("127.0.0.1:1/nothing", given, OPTS)
    else:
        with pytest.raises(towline.TransportError):
            runtime.pull(
                "127.0.0.1:1/nothing", given, towline.PullOptions(tls_verify=False, max_retries=0)
            )


def test_unknown_policy(runtime: towline.Runtime) -> None:
    with pytest.raises(towline.PolicyError, match='unsupported pull policy "sometimes"'):
        runtime.pull("alpine", "sometimes", OPTS)
