"""``oci:`` both ways: layouts skopeo wrote are pulled, layouts towline wrote are read by peers.

Naming and selection follow libimage (``copyFromDefault``) and c/image
(``getManifestDescriptor``); damaged layouts give one clear error and leave the
store and the destination as they were.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import towline
from support.images import TarBuilder, build_image, build_index
from support.registry import PushedImage
from towline.errors import (
    DigestMismatchError,
    InvalidReferenceError,
    ManifestUnknownError,
    TransportError,
)

from .conftest import INSECURE, store_files
from .layouts import REF_NAME, blob_path, entry, write_layout
from .peers import Peers, snapshot, tree

SMALL = build_image([TarBuilder().add_file("small.txt", b"small\n").bytes()])
OTHER = build_image([TarBuilder().add_file("other.txt", b"other\n").bytes()])


def index_json(layout: Path) -> dict[str, object]:
    document: dict[str, object] = json.loads((layout / "index.json").read_text())
    return document


# === layouts skopeo wrote, pulled by towline


def test_pull_a_layout_skopeo_wrote_gives_the_same_image_and_layers(
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    peers: Peers,
    tmp_path: Path,
) -> None:
    pushed = test_images["gzip"]
    layout = tmp_path / "layout"
    peers.skopeo_copy(f"docker://{pushed.reference}", f"oci:{layout}:app:1.0")
    inspected = peers.inspect(f"oci:{layout}:app:1.0")

    [image] = runtime.pull(f"oci:{layout}:app:1.0")
    assert f"sha256:{image.id}" == pushed.config_digest
    assert [layer.digest for layer in image.layers] == inspected["Layers"]
    assert image.digest == inspected["Digest"]
    # libimage: the REF is the name, read as ParseNormalizedNamed reads it (docker.io).
    assert image.names == ["docker.io/library/app:1.0"]


def test_a_layout_of_one_image_pulls_without_ref_and_stays_unnamed(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    layout = write_layout(tmp_path / "layout", [SMALL], [entry(SMALL, "small")])
    [image] = runtime.pull(f"oci:{layout}")
    assert f"sha256:{image.id}" == SMALL.config_digest
    assert image.names == []


def test_an_index_in_a_layout_is_a_platform_choice(
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    peers: Peers,
    tmp_path: Path,
) -> None:
    multi = test_images["multiarch"]
    layout = tmp_path / "layout"
    peers.skopeo_copy(f"docker://{multi.reference}", f"oci:{layout}:multi", "--all")
    [arm] = runtime.pull(
        f"oci:{layout}:multi", options=towline.PullOptions(platform="linux/arm64/v8")
    )
    assert f"sha256:{arm.id}" == multi.platforms["linux/arm64/v8"].config_digest
    assert arm.platform == "linux/arm64/v8"


# === selection and naming (c/image messages)


@pytest.fixture
def two_images(tmp_path: Path) -> Path:
    """A layout with SMALL named ``a`` and OTHER named ``b:2``."""
    return write_layout(tmp_path / "two", [SMALL, OTHER], [entry(SMALL, "a"), entry(OTHER, "b:2")])


def test_more_than_one_image_needs_a_ref_or_an_index(
    runtime: towline.Runtime, two_images: Path
) -> None:
    with pytest.raises(TransportError, match="more than one image in oci, choose an image") as info:
        runtime.pull(f"oci:{two_images}")
    assert info.value.slug == "more_than_one_image"
    assert "a, b:2" in str(info.value)
    assert runtime.list_images() == []


def test_a_ref_picks_by_name_and_an_index_by_position(
    runtime: towline.Runtime, two_images: Path
) -> None:
    [named] = runtime.pull(f"oci:{two_images}:b:2")
    assert f"sha256:{named.id}" == OTHER.config_digest
    assert named.names == ["docker.io/library/b:2"]
    [by_index] = runtime.pull(f"oci:{two_images}:@0")
    assert f"sha256:{by_index.id}" == SMALL.config_digest
    assert by_index.names == []


def test_an_unknown_ref_or_index_says_what_there_is(
    runtime: towline.Runtime, two_images: Path
) -> None:
    with pytest.raises(ManifestUnknownError, match='no descriptor found for reference "nope"'):
        runtime.pull(f"oci:{two_images}:nope")
    with pytest.raises(ManifestUnknownError, match="index 5 is too large, only 2 entries"):
        runtime.pull(f"oci:{two_images}:@5")
    assert runtime.list_images() == []


def test_a_ref_of_an_unsupported_type_is_refused_by_name(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    artifact = {**entry(SMALL, "art"), "mediaType": "application/vnd.example+json"}
    layout = write_layout(tmp_path / "layout", [SMALL], [artifact])
    with pytest.raises(TransportError, match="matches unsupported manifest MIME types"):
        runtime.pull(f"oci:{layout}:art")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("oci:", "the path is empty"),
        ("oci::tag", "the path is empty"),
        ("oci:/d:@x", "invalid source index @x"),
        ("oci:/d:@-1", "invalid source index @-1"),
        ("oci:/d:bad name", "invalid image bad name"),
    ],
)
def test_malformed_references(runtime: towline.Runtime, name: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError, match=message):
        runtime.pull(name)


def test_a_destination_cannot_be_an_index(runtime: towline.Runtime, tmp_path: Path) -> None:
    layout = write_layout(tmp_path / "src", [SMALL])
    with pytest.raises(InvalidReferenceError, match="must not contain a manifest index @0"):
        runtime.copy(f"oci:{layout}", f"oci:{tmp_path}/dst:@0")
    assert not (tmp_path / "dst").exists()


# === layouts towline wrote, read by the peers and by towline


def test_store_to_oci_to_store_keeps_the_image(
    runtime: towline.Runtime,
    other_runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    peers: Peers,
    tmp_path: Path,
) -> None:
    pushed = test_images["gzip"]
    [pulled] = runtime.pull(pushed.reference, options=INSECURE)
    layout = tmp_path / "layout"
    result = runtime.copy(f"containers-storage:{pulled.id}", f"oci:{layout}:keep")
    assert result.manifest_digest == pushed.manifest_digest  # blobs and manifest unchanged

    [back] = other_runtime.pull(f"oci:{layout}:keep")
    assert back.id == pulled.id
    assert [x.digest for x in back.layers] == [x.digest for x in pulled.layers]
    assert back.digest == pulled.digest

    # The peers read it: skopeo inspect and copy, umoci unpack to towline's tree.
    inspected = peers.inspect(f"oci:{layout}:keep")
    assert inspected["Digest"] == pushed.manifest_digest
    assert inspected["Layers"] == [x.digest for x in pushed.layers]
    peers.skopeo_copy(f"oci:{layout}:keep", f"oci:{tmp_path}/again:k")
    assert peers.inspect(f"oci:{tmp_path}/again:k")["Digest"] == pushed.manifest_digest
    rootfs = peers.umoci_unpack(layout, "keep", tmp_path / "bundle")
    assert tree(back.unpack(tmp_path / "ours")) == tree(rootfs)


def test_a_docker_manifest_is_converted_to_oci(
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    peers: Peers,
    tmp_path: Path,
) -> None:
    pushed = test_images["docker"]
    layout = tmp_path / "layout"
    runtime.copy(f"docker://{pushed.reference}", f"oci:{layout}:d", INSECURE)
    [top] = index_json(layout)["manifests"]  # type: ignore[misc]
    assert top["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    inspected = peers.inspect(f"oci:{layout}:d")
    assert inspected["Layers"] == [x.digest for x in pushed.layers]
    [image] = runtime.pull(f"oci:{layout}:d")
    assert f"sha256:{image.id}" == pushed.config_digest


def test_copy_all_keeps_the_index(
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    peers: Peers,
    tmp_path: Path,
) -> None:
    multi = test_images["multiarch"]
    layout = tmp_path / "layout"
    runtime.copy(f"docker://{multi.reference}", f"oci:{layout}:m", INSECURE, all_platforms=True)
    assert index_json(layout)["manifests"] == [
        {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": multi.manifest_digest,
            "size": len(multi.artifact.manifest),
            "annotations": {REF_NAME: "m"},
        }
    ]
    for child in multi.platforms.values():
        assert blob_path(layout, child.manifest_digest).is_file()
    assert peers.inspect_raw(f"oci:{layout}:m") == multi.artifact.manifest
    peers.skopeo_copy(f"oci:{layout}:m", f"oci:{tmp_path}/all:m", "--all")


def test_a_name_moves_to_the_newest_image_as_in_c_image(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    src = write_layout(tmp_path / "src", [SMALL, OTHER], [entry(SMALL, "s"), entry(OTHER, "o")])
    layout = tmp_path / "layout"
    runtime.copy(f"oci:{src}:s", f"oci:{layout}:x")
    runtime.copy(f"oci:{src}:o", f"oci:{layout}:x")
    runtime.copy(f"oci:{src}:o", f"oci:{layout}:y")
    manifests = index_json(layout)["manifests"]
    # c/image addManifest: the old holder of "x" loses the name but stays (its blobs are used).
    assert manifests == [
        {
            "mediaType": SMALL.media_type,
            "digest": SMALL.manifest_digest,
            "size": len(SMALL.manifest),
        },
        entry(OTHER, "x"),
        entry(OTHER, "y"),
    ]


# === damaged layouts: one clear error, the store unchanged


def test_damaged_layouts(runtime: towline.Runtime, tmp_path: Path) -> None:
    def refused(name: str, error: type[Exception], match: str) -> None:
        before = store_files(runtime.root)
        with pytest.raises(error, match=match):
            runtime.pull(name)
        assert store_files(runtime.root) == before
        assert runtime.list_images() == []

    layout = write_layout(tmp_path / "no-index", [SMALL])
    (layout / "index.json").unlink()
    refused(f"oci:{layout}", TransportError, "file index.json is missing from")

    refused(f"oci:{tmp_path}/nowhere", TransportError, "does not exist")

    layout = write_layout(tmp_path / "version", [SMALL])
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"2.0.0"}')
    refused(f"oci:{layout}", TransportError, 'imageLayoutVersion "2.0.0"')

    escape = {**entry(SMALL), "digest": "sha256:../../../etc/passwd"}
    layout = write_layout(tmp_path / "escape", [SMALL], [escape])
    refused(f"oci:{layout}", TransportError, "index.json: .*sha256")

    layout = write_layout(tmp_path / "no-layer", [SMALL])
    blob_path(layout, SMALL.layers[0].digest).unlink()
    refused(f"oci:{layout}", TransportError, f"blob blobs/sha256/{SMALL.layers[0].digest[7:]}")

    layout = write_layout(tmp_path / "bad-layer", [SMALL])
    blob_path(layout, SMALL.layers[0].digest).write_bytes(OTHER.blobs[OTHER.layers[0].digest])
    refused(f"oci:{layout}", DigestMismatchError, "digest")

    layout = write_layout(tmp_path / "bad-config", [SMALL])
    blob_path(layout, SMALL.config_digest).write_bytes(OTHER.config)
    refused(f"oci:{layout}", DigestMismatchError, "config")

    layout = write_layout(tmp_path / "big", [SMALL])
    blob_path(layout, SMALL.manifest_digest).write_bytes(b" " * (5 << 20))
    refused(f"oci:{layout}", TransportError, "more than the 4194304 allowed")

    layout = write_layout(tmp_path / "fifo", [SMALL])
    blob_path(layout, SMALL.layers[0].digest).unlink()
    os.mkfifo(blob_path(layout, SMALL.layers[0].digest))
    refused(f"oci:{layout}", TransportError, "not a regular file")


def test_an_index_that_names_itself(runtime: towline.Runtime, tmp_path: Path) -> None:
    # An index listing its own digest cannot hash to it; whichever way it is read, it fails.
    index = build_index([SMALL])
    document = json.loads(index.manifest)
    document["manifests"].append({**document["manifests"][0], "digest": index.manifest_digest})
    raw = json.dumps(document).encode()
    layout = write_layout(tmp_path / "self", [SMALL], [{**entry(index, "self"), "size": len(raw)}])
    blob_path(layout, index.manifest_digest).write_bytes(raw)
    before = store_files(runtime.root)
    for options in (None, towline.PullOptions(platform="linux/amd64")):
        with pytest.raises(DigestMismatchError, match=index.manifest_digest):
            runtime.pull(f"oci:{layout}:self", options=options)
    with pytest.raises(DigestMismatchError):
        runtime.copy(f"oci:{layout}:self", f"oci:{tmp_path}/out", all_platforms=True)
    assert runtime.list_images() == []
    assert store_files(runtime.root) == before
    assert not (tmp_path / "out").exists()


# === a failed copy leaves the destination as it was


def test_a_failed_copy_leaves_the_destination_layout_unchanged(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    # With --all the first image lands whole before the second one's missing layer fails.
    arm = build_image([TarBuilder().add_file("arm.txt", b"arm\n").bytes()], platform="linux/arm64")
    index = build_index([SMALL, arm])
    broken = write_layout(tmp_path / "broken", [index], [entry(index, "multi")])
    blob_path(broken, arm.layers[0].digest).unlink()
    dest = write_layout(tmp_path / "dest", [OTHER], [entry(OTHER, "other")])
    before = snapshot(dest)
    for target in (dest, tmp_path / "new" / "layout"):
        with pytest.raises(TransportError, match="is missing"):
            runtime.copy(f"oci:{broken}:multi", f"oci:{target}:multi", all_platforms=True)
    assert snapshot(dest) == before
    assert not (tmp_path / "new").exists()


def test_an_existing_damaged_destination_is_refused_before_copying(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    src = write_layout(tmp_path / "src", [SMALL])
    dest = write_layout(tmp_path / "dest", [OTHER])
    (dest / "index.json").write_text("{not json")
    before = snapshot(dest)
    with pytest.raises(TransportError, match=r"index\.json"):
        runtime.copy(f"oci:{src}", f"oci:{dest}:x")
    assert snapshot(dest) == before


def test_a_planted_symlink_in_the_destination_takes_no_write(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    src = write_layout(tmp_path / "src", [SMALL])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest = write_layout(tmp_path / "dest", [OTHER])
    (dest / "blobs" / "sha256").rename(elsewhere / "sha256")
    (dest / "blobs" / "sha256").symlink_to(elsewhere / "sha256")
    before = snapshot(elsewhere)
    with pytest.raises(TransportError, match="is a symbolic link") as info:
        runtime.copy(f"oci:{src}", f"oci:{dest}:x")
    assert info.value.slug == "unsafe_path"
    assert snapshot(elsewhere) == before
