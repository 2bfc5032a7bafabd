"""``dir:`` both ways, in c/image's directory format, checked against skopeo.

Images from ``dir:`` are stored unnamed (libimage: path-based transports); a
destination replaces only an empty directory or a previous ``dir:`` image, and a
failed copy leaves it as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import towline
from support.images import TarBuilder, build_image
from support.registry import PushedImage
from towline.errors import DigestMismatchError, TransportError

from .conftest import INSECURE, store_files
from .layouts import write_dir_image
from .peers import Peers, snapshot, tree

SMALL = build_image([TarBuilder().add_file("dir-small.txt", b"small\n").bytes()])
VERSION = "Directory Transport Version: 1.1\n"


def test_pull_a_dir_skopeo_wrote_gives_the_same_image_unnamed(
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    peers: Peers,
    tmp_path: Path,
) -> None:
    pushed = test_images["gzip"]
    path = tmp_path / "image"
    peers.skopeo_copy(f"docker://{pushed.reference}", f"dir:{path}")
    inspected = peers.inspect(f"dir:{path}")
    [image] = runtime.pull(f"dir:{path}")
    assert f"sha256:{image.id}" == pushed.config_digest
    assert [layer.digest for layer in image.layers] == inspected["Layers"]
    assert image.names == []


def test_store_to_dir_to_store_in_the_format_skopeo_reads(
    runtime: towline.Runtime,
    other_runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    peers: Peers,
    tmp_path: Path,
) -> None:
    pushed = test_images["gzip"]
    [pulled] = runtime.pull(pushed.reference, options=INSECURE)
    path = tmp_path / "image"
    runtime.copy(f"containers-storage:{pulled.id}", f"dir:{path}")

    blobs = {x.digest.partition(":")[2] for x in pushed.layers}
    blobs.add(pushed.config_digest.partition(":")[2])
    assert {p.name for p in path.iterdir()} == {"manifest.json", "version", *blobs}
    assert (path / "version").read_text() == VERSION
    assert (path / "manifest.json").read_bytes() == pushed.artifact.manifest

    inspected = peers.inspect(f"dir:{path}")
    assert inspected["Digest"] == pushed.manifest_digest
    assert inspected["Layers"] == [x.digest for x in pushed.layers]
    peers.skopeo_copy(f"dir:{path}", f"oci:{tmp_path}/layout:x")
    copied = json.loads(peers.inspect_raw(f"oci:{tmp_path}/layout:x"))
    assert copied["config"]["digest"] == f"sha256:{pulled.id}"
    rootfs = peers.umoci_unpack(tmp_path / "layout", "x", tmp_path / "bundle")
    assert tree(pulled.unpack(tmp_path / "ours")) == tree(rootfs)

    [back] = other_runtime.pull(f"dir:{path}")
    assert back.id == pulled.id
    assert [x.digest for x in back.layers] == [x.digest for x in pulled.layers]


def test_copy_all_writes_the_index_and_each_instance(
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    peers: Peers,
    tmp_path: Path,
) -> None:
    multi = test_images["multiarch"]
    path = tmp_path / "image"
    runtime.copy(f"docker://{multi.reference}", f"dir:{path}", INSECURE, all_platforms=True)
    assert (path / "manifest.json").read_bytes() == multi.artifact.manifest
    for child in multi.platforms.values():
        instance = path / f"{child.manifest_digest.partition(':')[2]}.manifest.json"
        assert instance.read_bytes() == child.artifact.manifest
    peers.skopeo_copy(f"dir:{path}", f"oci:{tmp_path}/layout:all", "--all")
    assert peers.inspect_raw(f"oci:{tmp_path}/layout:all") == multi.artifact.manifest

    [arm] = runtime.pull(f"dir:{path}", options=towline.PullOptions(platform="linux/arm/v7"))
    assert f"sha256:{arm.id}" == multi.platforms["linux/arm/v7"].config_digest


def test_a_previous_dir_image_is_replaced(runtime: towline.Runtime, tmp_path: Path) -> None:
    path = write_dir_image(tmp_path / "image", SMALL)
    (path / "leftover").write_text("from the previous image")
    other = write_dir_image(tmp_path / "other", build_image([TarBuilder().bytes()]))
    runtime.copy(f"dir:{other}", f"dir:{path}")
    assert snapshot(path) == snapshot(other)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_directory_that_is_not_an_image_is_not_overwritten(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    src = write_dir_image(tmp_path / "src", SMALL)
    important = tmp_path / "important"
    important.mkdir()
    (important / "thesis.tex").write_text("years of work")
    for version in (None, "Directory Transport Version: 2.0\n"):
        if version is not None:
            (important / "version").write_text(version)
        before = snapshot(important)
        with pytest.raises(TransportError, match="not a containers image directory") as info:
            runtime.copy(f"dir:{src}", f"dir:{important}")
        assert info.value.slug == "not_image_directory"
        assert snapshot(important) == before


def test_a_failed_copy_leaves_the_directory_as_it_was(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    broken = write_dir_image(tmp_path / "broken", SMALL)
    layer = broken / SMALL.layers[0].digest.partition(":")[2]
    layer.write_bytes(layer.read_bytes()[:-1] + b"!")
    dest = write_dir_image(tmp_path / "dest", build_image([TarBuilder().bytes()]))
    before = snapshot(dest)
    with pytest.raises(DigestMismatchError):
        runtime.copy(f"dir:{broken}", f"dir:{dest}")
    assert snapshot(dest) == before
    with pytest.raises(DigestMismatchError):
        runtime.copy(f"dir:{broken}", f"dir:{tmp_path}/new/deeper/image")
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_damaged_dirs(runtime: towline.Runtime, tmp_path: Path) -> None:
    def refused(path: Path, error: type[Exception], match: str) -> None:
        before = store_files(runtime.root)
        with pytest.raises(error, match=match):
            runtime.pull(f"dir:{path}")
        assert store_files(runtime.root) == before

    path = write_dir_image(tmp_path / "no-manifest", SMALL)
    (path / "manifest.json").unlink()
    refused(path, TransportError, "file manifest.json is missing")

    path = write_dir_image(tmp_path / "no-layer", SMALL)
    (path / SMALL.layers[0].digest.partition(":")[2]).unlink()
    refused(path, TransportError, "is missing")

    path = write_dir_image(tmp_path / "escape", SMALL)
    manifest = json.loads(SMALL.manifest)
    manifest["layers"][0]["digest"] = "sha256:../../../../etc/passwd"
    (path / "manifest.json").write_text(json.dumps(manifest))
    refused(path, TransportError, "invalid digest")

    path = write_dir_image(tmp_path / "bad-config", SMALL)
    (path / SMALL.config_digest.partition(":")[2]).write_text("{}")
    refused(path, DigestMismatchError, "config")
    assert runtime.list_images() == []
