"""Pulling the standard images: what lands in the store and what the Image says."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from tests.native.layers import tree

import towline
from support.images import STANDARD_ROOTFS
from support.registry import PushedImage

# Image names are what the registry serves; the fixtures push them once per session.
# Progress lines, events, shared layers, platform choice and unpack=False run once per
# source transport (docker included) in test_pull_sources.py; what only a registry shows
# (requests on the wire, pulling with the network down) stays here.


@pytest.mark.parametrize("name", ["gzip", "zstd", "docker"])
def test_pull_unpacks_the_image(
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    insecure: towline.PullOptions,
    tmp_path: Path,
    name: str,
) -> None:
    pushed = test_images[name]
    [image] = runtime.pull(pushed.reference, options=insecure)
    assert image.id == pushed.config_digest.removeprefix("sha256:")
    assert image.names == [pushed.reference]
    assert image.digest == pushed.manifest_digest
    assert image.platform == "linux/amd64"
    assert [x.diff_id for x in image.layers] == [x.diff_id for x in pushed.layers]
    assert [x.digest for x in image.layers] == [x.digest for x in pushed.layers]
    assert image.config["rootfs"]["diff_ids"] == [x.diff_id for x in pushed.layers]
    image.unpack(tmp_path / "rootfs")
    got = tree(tmp_path / "rootfs")
    assert {k: (v[0], v[2]) for k, v in got.items()} == {
        k: (v[0], v[2]) for k, v in STANDARD_ROOTFS.items()
    }
    assert runtime.list_images() == [image]


def test_progress_events_report_bytes(
    runtime: towline.Runtime, test_images: dict[str, PushedImage]
) -> None:
    seen: list[towline.ProgressEvent] = []
    pushed = test_images["zstd"]
    runtime.pull(
        pushed.reference, options=towline.PullOptions(tls_verify=False, progress=seen.append)
    )
    for layer in pushed.layers:
        mine = [e for e in seen if e.digest == layer.digest]
        assert mine[0].kind == "start" and mine[0].total == layer.size
        assert mine[-1].kind == "done" and mine[-1].done == layer.size


def test_shared_layers_are_downloaded_once(
    runtime: towline.Runtime, test_images: dict[str, PushedImage], fault_proxy
) -> None:
    a, b = test_images["shared-a"], test_images["shared-b"]
    options = towline.PullOptions(tls_verify=False)
    runtime.pull(a.reference.replace(a.reference.split("/")[0], fault_proxy.host), options=options)
    fault_proxy.reset()
    [image] = runtime.pull(
        b.reference.replace(b.reference.split("/")[0], fault_proxy.host), options=options
    )
    blob_gets = [e.path for e in fault_proxy.log if "/blobs/" in e.path and e.method == "GET"]
    new_layers = {x.digest for x in b.layers} - {x.digest for x in a.layers}
    # Only the layer b does not share with a, and b's config.
    assert sorted(p.rsplit("/", 1)[1] for p in blob_gets) == sorted([*new_layers, b.config_digest])
    assert len(image.layers) == len(b.layers)


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        (None, "linux/amd64"),
        ("linux/arm64", "linux/arm64/v8"),
        ("linux/arm64/v8", "linux/arm64/v8"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/aarch64", "linux/arm64/v8"),
    ],
)
def test_platform_choice_from_an_index(
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    platform: str | None,
    expected: str,
) -> None:
    pushed = test_images["multiarch"]
    [image] = runtime.pull(
        pushed.reference, options=towline.PullOptions(tls_verify=False, platform=platform)
    )
    assert image.platform == expected
    assert image.digest == pushed.manifest_digest  # the list digest, as podman records it
    assert pushed.manifest_digest in image.digests
    assert image.manifest_digest == pushed.platforms[expected].manifest_digest


def test_platform_not_in_the_index_lists_what_is(
    runtime: towline.Runtime, test_images: dict[str, PushedImage]
) -> None:
    pushed = test_images["multiarch"]
    with pytest.raises(towline.PlatformNotFoundError) as info:
        runtime.pull(
            pushed.reference, options=towline.PullOptions(tls_verify=False, platform="linux/s390x")
        )
    message = str(info.value)
    assert 'architecture "s390x"' in message
    for platform in ("linux/amd64", "linux/arm64/v8", "linux/arm/v7"):
        assert platform in message
    assert runtime.list_images() == []


def test_platform_mismatch_is_a_warning(runtime: towline.Runtime, push_unique) -> None:
    pushed = push_unique(platform="linux/arm64")
    out = io.StringIO()
    [image] = runtime.pull(
        pushed.reference, options=towline.PullOptions(tls_verify=False, writer=out)
    )
    assert image.platform == "linux/arm64"
    assert (
        "WARNING: image platform (linux/arm64) does not match the expected platform (linux/amd64)"
        in out.getvalue()
    )


def test_pull_by_digest_names_the_image_by_digest(
    runtime: towline.Runtime, test_images: dict[str, PushedImage]
) -> None:
    pushed = test_images["gzip"]
    [image] = runtime.pull(pushed.digest_reference, options=towline.PullOptions(tls_verify=False))
    assert image.names == [pushed.digest_reference]
    found, _ = runtime.lookup_image(pushed.digest_reference)
    assert found == image


def test_tag_and_digest_keeps_the_digest(
    runtime: towline.Runtime, test_images: dict[str, PushedImage]
) -> None:
    pushed = test_images["gzip"]
    name = pushed.reference.replace(":latest", ":no-such-tag") + "@" + pushed.manifest_digest
    [image] = runtime.pull(name, options=towline.PullOptions(tls_verify=False))
    assert image.names == [pushed.digest_reference]


def test_docker_transport_prefix(
    runtime: towline.Runtime, test_images: dict[str, PushedImage]
) -> None:
    pushed = test_images["gzip"]
    [image] = runtime.pull(
        "docker://" + pushed.reference, options=towline.PullOptions(tls_verify=False)
    )
    assert image.names == [pushed.reference]
    assert runtime.events[-1].name == "docker://" + pushed.reference


def test_all_tags(runtime: towline.Runtime, registry, push_unique) -> None:
    first = push_unique(repo="unique/alltags", tag="one")
    second = push_unique(repo="unique/alltags", tag="two")
    images = runtime.pull(
        f"{registry.host}/unique/alltags",
        options=towline.PullOptions(tls_verify=False, all_tags=True),
    )
    assert sorted(n for i in images for n in i.names) == sorted([first.reference, second.reference])


def test_pull_without_unpack_keeps_blobs_and_unpacks_on_demand(
    runtime: towline.Runtime, test_images: dict[str, PushedImage], fault_proxy, tmp_path: Path
) -> None:
    pushed = test_images["zstd"]
    name = f"{fault_proxy.host}/{pushed.repo}:{pushed.tag}"
    [image] = runtime.pull(name, options=towline.PullOptions(tls_verify=False, unpack=False))
    assert list((runtime.root / "layers").iterdir()) == []
    for layer in pushed.layers:
        assert (runtime.root / "blobs/sha256" / layer.digest[7:]).is_file()
    # Unpacking later needs no network: the stored blobs are verified and unpacked.
    fault_proxy.stop()
    image.unpack(tmp_path / "rootfs")
    assert (tmp_path / "rootfs/etc/hostname").read_bytes() == b"towline-test\n"
    assert len(list((runtime.root / "layers").iterdir())) == len(pushed.layers)


def test_unpacking_pull_after_a_blob_only_pull_downloads_nothing(
    runtime: towline.Runtime, test_images: dict[str, PushedImage], fault_proxy
) -> None:
    pushed = test_images["docker"]
    name = f"{fault_proxy.host}/{pushed.repo}:{pushed.tag}"
    runtime.pull(name, options=towline.PullOptions(tls_verify=False, unpack=False))
    fault_proxy.reset()
    runtime.pull(name, "always", towline.PullOptions(tls_verify=False))
    assert not [e for e in fault_proxy.log if "/blobs/" in e.path and e.method == "GET"][1:]
    assert len(list((runtime.root / "layers").iterdir())) == len(pushed.layers)
