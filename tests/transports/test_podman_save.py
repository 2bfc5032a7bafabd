"""What ``podman save`` writes in its other formats (oci-archive, oci-dir, docker-dir), pulled.

``podman save`` (libimage ``saveSingleImage``) names an oci-archive or oci-dir by
the image's resolved name (the ref.name annotation) and writes docker-dir as
``dir:`` with a v2s2 manifest; its layers are compressed afresh, so their digests
are podman's, not the registry's. towline must find the same image ID podman has
and the layer digests skopeo reports. The docker-archive format is in
test_docker_archive.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import towline
from support.podman import Podman
from support.registry import PushedImage

from .peers import Peers

NAME = "example.com/first:1"


@pytest.fixture(scope="module")
def podman_image(
    tmp_path_factory: pytest.TempPathFactory, test_images: dict[str, PushedImage]
) -> Iterator[tuple[Podman, str]]:
    """podman with the standard gzip image pulled and tagged ``NAME``; its image ID."""
    podman = Podman(tmp_path_factory.mktemp("podman-save"))
    try:
        image_id = podman.pull(test_images["gzip"].reference)
        podman.run("tag", image_id, NAME)
        yield podman, image_id
    finally:
        podman.cleanup()


@pytest.mark.parametrize(
    ("save_format", "transport", "ref", "names"),
    [
        # libimage nameFromAnnotations: the annotation, through NormalizeName.
        ("oci-archive", "oci-archive", "", [NAME]),
        # oci: without a ref is named by ID; with one, by the ref.
        ("oci-dir", "oci", "", []),
        ("oci-dir", "oci", f":{NAME}", [NAME]),
        # dir: is a path: unnamed.
        ("docker-dir", "dir", "", []),
    ],
    ids=["oci-archive", "oci-dir", "oci-dir-by-ref", "docker-dir"],
)
def test_pull_what_podman_saved(
    podman_image: tuple[Podman, str],
    runtime: towline.Runtime,
    peers: Peers,
    tmp_path: Path,
    save_format: str,
    transport: str,
    ref: str,
    names: list[str],
) -> None:
    podman, image_id = podman_image
    saved = tmp_path / "saved"
    podman.run("save", "-q", "--format", save_format, "-o", str(saved), NAME)
    name = f"{transport}:{saved}{ref}"
    inspected = peers.inspect(name)

    [image] = runtime.pull(name)
    assert image.id == image_id
    assert f"sha256:{image.id}" == json.loads(peers.inspect_raw(name))["config"]["digest"]
    assert [layer.digest for layer in image.layers] == inspected["Layers"]
    assert image.digest == inspected["Digest"]
    assert image.names == names
