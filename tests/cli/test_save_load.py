"""``towline save`` and ``towline load`` as podman's, checked against skopeo and podman.

podman 4.3 was run to pin what is asserted here: without ``-m`` the other names are
more RepoTags of the first image; ``-m`` puts one entry per image; an image saved by
ID is unnamed and loads as ``Loaded image: sha256:<id>``; without ``-o`` the archive
goes to stdout unless that is a terminal.
"""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.podman import Podman
from support.registry import PushedImage

from .runner import TowlineCLI
from .test_copy import Skopeo


def image_id(image: PushedImage) -> str:
    return (image.config_digest or "").removeprefix("sha256:")


def member(archive: Path, name: str) -> Any:
    """A JSON member of a tar (manifest.json, index.json)."""
    with tarfile.open(archive) as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None
        return json.loads(extracted.read())


def ids_and_names(run_towline: TowlineCLI) -> dict[str, list[str]]:
    rows = json.loads(run_towline("images", "--format", "json").ok().stdout)
    return {row["id"]: sorted(row["names"]) for row in rows}


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    return Skopeo(tmp_path / "skopeo-home")


@pytest.fixture
def two(run_towline: TowlineCLI, test_images: dict[str, PushedImage]) -> list[PushedImage]:
    """Two images with different IDs, pulled into the store."""
    images = [test_images["gzip"], test_images["shared-a"]]
    for image in images:
        run_towline.pull(image.reference)
    return images


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    """podman as root with its own store, in a private mount namespace."""
    peer = Podman(tmp_path / "podman")
    try:
        yield peer
    finally:
        peer.cleanup()


# === save: what the peers read


def test_save_docker_archive_is_what_skopeo_and_podman_read(
    run_towline: TowlineCLI,
    test_images: dict[str, PushedImage],
    tmp_path: Path,
    skopeo: Skopeo,
    podman: Podman,
) -> None:
    image = test_images["gzip"]
    run_towline.pull(image.reference)
    archive = tmp_path / "image.tar"
    result = run_towline("save", "-o", str(archive), image.reference).ok()
    assert result.stdout == ""
    assert "Writing manifest to image destination" in result.stderr.splitlines()
    [entry] = member(archive, "manifest.json")
    assert entry["RepoTags"] == [image.reference]

    raw = json.loads(skopeo.raw(f"docker-archive:{archive}"))
    assert raw["config"]["digest"] == image.config_digest
    seen = skopeo.inspect(f"docker-archive:{archive}")
    assert seen["Layers"] == [x.diff_id for x in image.layers]  # stored uncompressed

    loaded = podman.run("load", "-q", "-i", str(archive)).stdout
    assert loaded == f"Loaded image: {image.reference}\n"
    assert podman.image_id(image.reference) == image_id(image)


def test_save_without_m_gives_the_first_image_every_name(
    run_towline: TowlineCLI, two: list[PushedImage], tmp_path: Path
) -> None:
    archive = tmp_path / "image.tar"
    run_towline("save", "-q", "-o", str(archive), two[0].reference, "foo/bar:1").ok()
    [entry] = member(archive, "manifest.json")
    assert entry["RepoTags"] == [two[0].reference, "localhost/foo/bar:1"]


def test_save_m_writes_every_image_and_load_brings_them_back(
    run_towline: TowlineCLI, two: list[PushedImage], tmp_path: Path, skopeo: Skopeo
) -> None:
    archive = tmp_path / "images.tar"
    names = [image.reference for image in two]
    run_towline("save", "-q", "-m", "-o", str(archive), *names).ok()
    assert [e["RepoTags"] for e in member(archive, "manifest.json")] == [[n] for n in names]
    for position, image in enumerate(two):
        raw = json.loads(skopeo.raw(f"docker-archive:{archive}:@{position}"))
        assert raw["config"]["digest"] == image.config_digest

    before = ids_and_names(run_towline)
    run_towline("rmi", *names).ok()
    result = run_towline("load", "-i", str(archive)).ok()
    assert result.stdout.splitlines() == [f"Loaded image: {n}" for n in names]
    # The same images under the same names (the manifest digest is the archive's: a
    # docker-archive keeps no manifest, layers are stored uncompressed).
    assert ids_and_names(run_towline) == before


def test_save_oci_archive_of_several_images_names_each_entry(
    run_towline: TowlineCLI, two: list[PushedImage], tmp_path: Path, skopeo: Skopeo
) -> None:
    archive = tmp_path / "images.oci.tar"
    names = [image.reference for image in two]
    run_towline("save", "-q", "-m", "--format", "oci-archive", "-o", str(archive), *names).ok()
    for image in two:
        seen = skopeo.inspect(f"oci-archive:{archive}:{image.reference}")
        assert seen["Digest"] == image.manifest_digest
    run_towline("rmi", *names).ok()
    result = run_towline("load", "-q", "-i", str(archive)).ok()
    assert result.stdout.splitlines() == [f"Loaded image: {n}" for n in names]
    for image in two:
        inspected = json.loads(run_towline("inspect", image.reference).ok().stdout)
        assert inspected["id"] == image_id(image)


@pytest.mark.parametrize("fmt", ["oci-dir", "docker-dir"])
def test_save_to_a_directory(
    run_towline: TowlineCLI, two: list[PushedImage], tmp_path: Path, skopeo: Skopeo, fmt: str
) -> None:
    image = two[0]
    target = tmp_path / fmt
    run_towline("save", "-q", "--format", fmt, "-o", str(target), image.reference).ok()
    name = f"oci:{target}:{image.reference}" if fmt == "oci-dir" else f"dir:{target}"
    assert skopeo.inspect(name)["Digest"] == image.manifest_digest
    names = [x.reference for x in two]
    message = run_towline("save", "-m", "--format", fmt, "-o", str(tmp_path / "x"), *names).error()
    assert f'unsupported format "{fmt}" for saving multiple images' in message


def test_save_writes_the_archive_to_stdout_when_it_is_no_terminal(
    run_towline: TowlineCLI, two: list[PushedImage]
) -> None:
    image = two[0]
    done = subprocess.run(
        run_towline.command("save", image.reference),
        capture_output=True,
        env=run_towline.env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""  # as podman: quiet, the archive is the only output
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        extracted = tar.extractfile("manifest.json")
        assert extracted is not None
        [entry] = json.loads(extracted.read())
    assert entry["RepoTags"] == [image.reference]


def test_save_refuses_a_terminal_and_a_directory_on_stdout(
    run_towline: TowlineCLI, two: list[PushedImage]
) -> None:
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            run_towline.command("save", two[0].reference),
            stdout=follower,
            stderr=subprocess.PIPE,
            env=run_towline.env(),
            timeout=60,
            check=False,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 125
    assert done.stderr.decode() == "Error: refusing to save to terminal. Use -o flag or redirect\n"
    message = run_towline("save", "--format", "oci-dir", two[0].reference).error()
    assert "writes a directory" in message


def test_save_leaves_nothing_when_an_image_is_unknown(
    run_towline: TowlineCLI, two: list[PushedImage], tmp_path: Path
) -> None:
    archive = tmp_path / "images.tar"
    message = run_towline("save", "-m", "-o", str(archive), two[0].reference, "nothere").error()
    assert message == "nothere: image not known"
    assert list(tmp_path.glob("images.tar*")) == []


# === load: what the peers wrote, stdin, unnamed images, junk


def test_load_what_podman_saved(
    run_towline: TowlineCLI,
    test_images: dict[str, PushedImage],
    tmp_path: Path,
    podman: Podman,
) -> None:
    image = test_images["gzip"]
    podman.pull(image.reference)
    archive = tmp_path / "podman.tar"
    podman.run("save", "-q", "-o", str(archive), image.reference)
    result = run_towline("load", "-q", "-i", str(archive)).ok()
    assert result.stdout == f"Loaded image: {image.reference}\n"
    inspected = json.loads(run_towline("inspect", image.reference).ok().stdout)
    assert inspected["id"] == image_id(image)
    assert [x["diff_id"] for x in inspected["layers"]] == [x.diff_id for x in image.layers]


def test_load_what_skopeo_wrote_to_an_oci_archive(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage], tmp_path: Path, skopeo: Skopeo
) -> None:
    image = test_images["zstd"]
    archive = tmp_path / "skopeo.oci.tar"
    skopeo.run(
        "--insecure-policy", "copy", "-q", "--src-tls-verify=false",
        f"docker://{image.reference}", f"oci-archive:{archive}:example.com/hello:1",
    )  # fmt: skip
    result = run_towline("load", "-i", str(archive)).ok()
    assert result.stdout == "Loaded image: example.com/hello:1\n"
    inspected = json.loads(run_towline("inspect", "example.com/hello:1").ok().stdout)
    assert (inspected["id"], inspected["digest"]) == (image_id(image), image.manifest_digest)


def test_load_reads_stdin_and_names_an_unnamed_image_by_id(
    run_towline: TowlineCLI, two: list[PushedImage], tmp_path: Path
) -> None:
    image = two[0]
    archive = tmp_path / "unnamed.tar"
    run_towline("save", "-q", "-o", str(archive), image_id(image)).ok()  # by ID: no RepoTags
    assert member(archive, "manifest.json")[0]["RepoTags"] == []
    run_towline("rmi", image.reference).ok()
    with open(archive, "rb") as stdin:
        done = subprocess.run(
            run_towline.command("load"),
            stdin=stdin,
            capture_output=True,
            text=True,
            env=run_towline.env(),
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Loaded image: sha256:{image_id(image)}\n"
    assert "Writing manifest to image destination" in done.stderr.splitlines()


def test_load_refuses_what_is_no_image_archive(run_towline: TowlineCLI, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    with tarfile.open(junk, "w") as tar:
        tar.addfile(tarfile.TarInfo("etc/hostname"), io.BytesIO(b""))
    message = run_towline("load", "-i", str(junk)).error()
    assert "payload does not match any of the supported image formats" in message
    missing = run_towline("load", "-i", str(tmp_path / "nothere.tar")).error()
    assert "nothere.tar: no such file" in missing
    assert run_towline("images", "--format", "json").ok().stdout.strip() == "[]"
