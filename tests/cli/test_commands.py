"""``towline images``, ``inspect``, ``rmi`` and ``unpack`` on pulled images."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import towline
from support.images import FIXED_CREATED, STANDARD_ROOTFS
from support.registry import PushedImage

from .runner import TowlineCLI


def image_id(image: PushedImage) -> str:
    assert image.config_digest is not None
    return image.config_digest.removeprefix("sha256:")


def listed(run_towline: TowlineCLI) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(run_towline("images", "--format", "json").ok().stdout)
    return rows


# === images


def test_images_json_lists_every_image(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage]
) -> None:
    assert listed(run_towline) == []
    # Two images sharing their first two layers.
    gzip, shared = test_images["gzip"], test_images["shared-a"]
    run_towline.pull(gzip.reference)
    run_towline.pull(shared.reference)
    rows = {row["id"]: row for row in listed(run_towline)}
    assert set(rows) == {image_id(gzip), image_id(shared)}
    for image in (gzip, shared):
        row = rows[image_id(image)]
        assert set(row) >= {"id", "names", "digest", "created", "size"}
        assert row["names"] == [image.reference]
        assert row["digest"] == image.manifest_digest
        assert row["created"] == FIXED_CREATED
        assert isinstance(row["size"], int) and row["size"] > 0
    table = run_towline("images").ok().stdout
    assert image_id(gzip)[:12] in table and image_id(shared)[:12] in table


# === inspect


def test_inspect_by_name_id_and_id_prefix(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage]
) -> None:
    image = test_images["zstd"]
    run_towline.pull(image.reference)
    by_name = json.loads(run_towline("inspect", image.reference).ok().stdout)
    assert by_name["id"] == image_id(image)
    assert by_name["names"] == [image.reference]
    assert by_name["digest"] == image.manifest_digest
    assert by_name["platform"] == "linux/amd64"
    assert by_name["config"]["rootfs"]["diff_ids"] == [x.diff_id for x in image.layers]
    assert [
        {k: layer[k] for k in ("digest", "diff_id", "size", "media_type")}
        for layer in by_name["layers"]
    ] == [
        {"digest": x.digest, "diff_id": x.diff_id, "size": x.size, "media_type": x.media_type}
        for x in image.layers
    ]
    for other in (image_id(image), f"sha256:{image_id(image)}", image_id(image)[:12]):
        assert json.loads(run_towline("inspect", other).ok().stdout) == by_name


# === rmi


def test_rmi_untags_a_name_and_refuses_an_id_with_several_names(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage]
) -> None:
    # gzip and zstd have the same config, hence one image with two names.
    gzip, zstd = test_images["gzip"], test_images["zstd"]
    assert run_towline.pull(gzip.reference) == run_towline.pull(zstd.reference) == image_id(gzip)
    assert listed(run_towline)[0]["names"] == sorted([gzip.reference, zstd.reference])

    result = run_towline("rmi", zstd.reference).ok()
    assert result.stdout == f"Untagged: {zstd.reference}\n"
    assert [row["names"] for row in listed(run_towline)] == [[gzip.reference]]

    run_towline.pull(zstd.reference)
    before = listed(run_towline)
    message = run_towline("rmi", image_id(gzip)[:12]).error()
    assert image_id(gzip)[:12] in message
    assert listed(run_towline) == before

    result = run_towline("rmi", "-f", image_id(gzip)).ok()
    assert sorted(result.stdout.splitlines()) == sorted(
        [f"Untagged: {gzip.reference}", f"Untagged: {zstd.reference}", f"Deleted: {image_id(gzip)}"]
    )
    assert listed(run_towline) == []


def test_rmi_deletes_images_with_one_name(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage]
) -> None:
    # Sharing layers: removing the first must keep them for the second.
    gzip, shared = test_images["gzip"], test_images["shared-b"]
    run_towline.pull(gzip.reference)
    run_towline.pull(shared.reference)
    result = run_towline("rmi", gzip.reference, shared.reference).ok()
    assert result.stdout.splitlines() == [
        f"Untagged: {gzip.reference}",
        f"Deleted: {image_id(gzip)}",
        f"Untagged: {shared.reference}",
        f"Deleted: {image_id(shared)}",
    ]
    assert listed(run_towline) == []
    # Nothing of them is left behind: no blob, no unpacked layer.
    assert not [p for p, size in run_towline.snapshot().items() if size >= 0 and p != "lock"]
    assert not any((run_towline.root / "layers").iterdir())


# === unpack


def tree(root: Path) -> dict[str, tuple[str, int, bytes | str | None]]:
    """``root`` in the shape of :data:`STANDARD_ROOTFS`."""
    out: dict[str, tuple[str, int, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", 0o777, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), None)
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return out


def test_unpack_writes_the_merged_tree(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage], tmp_path: Path
) -> None:
    image = test_images["docker"]
    run_towline.pull(image.reference)
    new = tmp_path / "new"
    run_towline("unpack", image.reference, str(new)).ok()
    assert tree(new) == STANDARD_ROOTFS
    empty = tmp_path / "empty"
    empty.mkdir()
    run_towline("unpack", image_id(image)[:12], str(empty)).ok()
    assert tree(empty) == STANDARD_ROOTFS


def test_version_is_printed_as_podman_and_skopeo_print_theirs(run_towline: TowlineCLI) -> None:
    for flag in ("--version", "-v"):
        result = run_towline(flag).ok()
        assert result.stdout == f"towline version {towline.__version__}\n"
