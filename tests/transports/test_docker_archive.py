"""``docker-archive:`` both ways: archives skopeo and podman wrote are pulled, and what
towline writes is read by skopeo and loaded by podman.

Naming and selection follow libimage (``storageReferencesReferencesFromArchiveReader``)
and c/image (``ChooseManifestItem``, libimage-pull.md 7.1); damaged and hostile
archives give one clear error and leave the store and the destination as they were.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

import towline
from support.docker_archives import ArchiveSpec, Member, archive_image, docker_archive
from support.images import STANDARD_ROOTFS, TarBuilder, standard_layers
from support.podman import Podman
from support.registry import PushedImage
from towline.copy import CopyOptions, copy_image
from towline.errors import (
    DigestMismatchError,
    InvalidReferenceError,
    ManifestUnknownError,
    TransportError,
)
from towline.events import ProgressEvent, Reporter
from towline.manifest import DOCKER_LAYER, DOCKER_LAYER_GZIP, OCI_LAYER_ZSTD
from towline.platform import host_platform
from towline.transports import parse_image_name
from towline.transports.base import TransportContext
from towline.transports.docker_archive import list_archive_images

from .conftest import INSECURE, store_files
from .peers import Peers, tree

SMALL = archive_image([TarBuilder().add_file("small.txt", b"small\n").bytes()])
OTHER = archive_image(
    [
        TarBuilder().add_file("other.txt", b"other\n").bytes(),
        TarBuilder().add_file("more.txt", b"more\n").bytes(),
    ]
)
STANDARD = archive_image(standard_layers())


def diff_ids(image: towline.Image) -> list[str]:
    return [layer.diff_id for layer in image.layers]


def expected_diff_ids(pushed: PushedImage) -> list[str]:
    return [layer.diff_id for layer in pushed.layers]


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    """podman with a store of its own under ``tmp_path``."""
    tool = Podman(tmp_path / "podman")
    yield tool
    tool.cleanup()


# === references


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("docker-archive:/a/b.tar", "docker-archive:/a/b.tar"),
        ("docker-archive:b.tar:busybox", "docker-archive:b.tar:docker.io/library/busybox:latest"),
        ("docker-archive:/b.tar:quay.io/x/y:1", "docker-archive:/b.tar:quay.io/x/y:1"),
        ("docker-archive:/b.tar:@0", "docker-archive:/b.tar:@0"),
        ("docker-archive:/b.tar:@+3", "docker-archive:/b.tar:@3"),
    ],
)
def test_references_parse_as_c_image(name: str, text: str) -> None:
    assert str(parse_image_name(name)) == text


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("docker-archive:", "isn't of the form <path>[:<reference>]"),
        ("docker-archive::busybox", "has no path"),
        ("docker-archive:/b.tar:", "docker-archive parsing reference"),
        ("docker-archive:/b.tar:@-1", "Invalid source index @-1: must not be negative"),
        ("docker-archive:/b.tar:@x", "Invalid source index @x"),
        ("docker-archive:/b.tar:@ 1", "Invalid source index @ 1"),
        ("docker-archive:/b.tar:busybox@sha256:" + "a" * 64, "doesn't support digest references"),
        ("docker-archive:/b.tar:Busybox", "must be lowercase"),
    ],
)
def test_malformed_references(name: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError, match=re.escape(message)):
        parse_image_name(name)


# === archives skopeo wrote, pulled by towline


# skopeo 1.9 cannot write the zstd image to a docker-archive ("zstd compression is not
# supported for docker images"); towline can, see test_an_oci_zstd_image_is_written_...
@pytest.mark.parametrize("flavour", ["gzip", "docker"])
def test_pull_an_archive_skopeo_wrote_gives_the_same_image_and_layers(
    flavour: str,
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    peers: Peers,
    tmp_path: Path,
) -> None:
    pushed = test_images[flavour]
    archive = tmp_path / "image.tar"
    peers.skopeo_copy(
        f"docker://{pushed.reference}", f"docker-archive:{archive}:example.com/app:v1"
    )
    inspected = peers.inspect(f"docker-archive:{archive}")

    [image] = runtime.pull(f"docker-archive:{archive}")
    assert f"sha256:{image.id}" == pushed.config_digest
    # The archive's layers are the uncompressed tars: their digests are the diff_ids.
    assert diff_ids(image) == inspected["Layers"] == expected_diff_ids(pushed)
    assert [layer.digest for layer in image.layers] == inspected["Layers"]
    assert {layer.media_type for layer in image.layers} == {DOCKER_LAYER}
    assert image.names == ["example.com/app:v1"]
    image.unpack(tmp_path / "rootfs")
    assert (tmp_path / "rootfs/usr/bin/tool").read_bytes() == STANDARD_ROOTFS["usr/bin/tool"][2]


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_compressed_archive_is_streamed_and_gives_the_same_image(
    compression: str,
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    peers: Peers,
    tmp_path: Path,
) -> None:
    pushed = test_images["gzip"]
    plain = tmp_path / "image.tar"
    peers.skopeo_copy(f"docker://{pushed.reference}", f"docker-archive:{plain}:app:1")
    packed = tmp_path / f"image.tar.{compression}"
    data = plain.read_bytes()
    packed.write_bytes(
        gzip.compress(data) if compression == "gzip" else zstandard.ZstdCompressor().compress(data)
    )
    [image] = runtime.pull(f"docker-archive:{packed}")
    assert f"sha256:{image.id}" == pushed.config_digest
    assert diff_ids(image) == expected_diff_ids(pushed)
    # skopeo records the normalized name (c/image writes Name():Tag()).
    assert image.names == ["docker.io/library/app:1"]
    assert not list((runtime.root / "tmp").iterdir())  # nothing was staged


def test_a_name_reference_stores_the_raw_repotag_normalized(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    archive = docker_archive([(SMALL, ["busybox:latest", "example.com/b:2"])]).pack(
        tmp_path / "a.tar"
    )
    # The quirk of 7.1: the user's busybox:latest matches, the raw tag is what is stored.
    [image] = runtime.pull(f"docker-archive:{archive}:busybox:latest")
    assert image.names == ["localhost/busybox:latest"]
    [image] = runtime.pull(f"docker-archive:{archive}")
    assert sorted(image.names) == ["example.com/b:2", "localhost/busybox:latest"]


def test_an_untagged_image_stays_unnamed(runtime: towline.Runtime, tmp_path: Path) -> None:
    archive = docker_archive([(SMALL, [])]).pack(tmp_path / "a.tar")
    [image] = runtime.pull(f"docker-archive:{archive}")
    assert f"sha256:{image.id}" == SMALL.config_digest
    assert image.names == []


# === several images in one archive


def test_several_images_need_a_name_or_an_index(runtime: towline.Runtime, tmp_path: Path) -> None:
    archive = docker_archive([(SMALL, ["small:1"]), (OTHER, ["other:1", "other:2"])]).pack(
        tmp_path / "two.tar"
    )
    with pytest.raises(
        TransportError, match=r"Unexpected tar manifest\.json: expected 1 item, got 2"
    ):
        runtime.pull(f"docker-archive:{archive}")

    [other] = runtime.pull(f"docker-archive:{archive}:other:2")
    assert f"sha256:{other.id}" == OTHER.config_digest
    assert other.names == ["localhost/other:2"]

    [small] = runtime.pull(f"docker-archive:{archive}:@0")
    assert f"sha256:{small.id}" == SMALL.config_digest
    assert small.names == ["localhost/small:1"]

    refs = list_archive_images(archive)
    assert [str(r) for r in refs] == [
        f"docker-archive:{archive}:@0",
        f"docker-archive:{archive}:@1",
    ]
    [again] = runtime.pull(str(refs[1]))
    assert sorted(again.names) == ["localhost/other:1", "localhost/other:2"]


def test_an_unknown_name_or_index_says_what_there_is(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    archive = docker_archive([(SMALL, ["small:1"]), (OTHER, ["other:1"])]).pack(tmp_path / "a.tar")
    with pytest.raises(
        ManifestUnknownError, match=r'Tag "docker.io/library/nope:latest" not found'
    ):
        runtime.pull(f"docker-archive:{archive}:nope")
    with pytest.raises(
        ManifestUnknownError, match="Invalid source index @2, only 2 manifest items available"
    ):
        runtime.pull(f"docker-archive:{archive}:@2")


def test_pull_what_podman_saved_one_and_several(
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    podman: Podman,
    tmp_path: Path,
) -> None:
    gzip_image, shared_image = test_images["gzip"], test_images["shared-a"]
    first = podman.pull(gzip_image.reference)
    second = podman.pull(shared_image.reference)
    podman.run("tag", first, "example.com/first:1")
    one, several = tmp_path / "one.tar", tmp_path / "several.tar"
    podman.run("save", "-q", "-o", str(one), "example.com/first:1")
    podman.run(
        "save", "-q", "-m", "-o", str(several), "example.com/first:1", shared_image.reference
    )

    [image] = runtime.pull(f"docker-archive:{one}")
    assert image.id == first
    assert image.names == ["example.com/first:1"]
    reported = podman.run("image", "inspect", "--format", "{{json .RootFS.Layers}}", first)
    assert diff_ids(image) == json.loads(reported.stdout) == expected_diff_ids(gzip_image)

    with pytest.raises(TransportError, match="expected 1 item, got 2"):
        runtime.pull(f"docker-archive:{several}")
    [by_name] = runtime.pull(f"docker-archive:{several}:{shared_image.reference}")
    assert by_name.id == second
    assert by_name.names == [shared_image.reference]
    [by_index] = runtime.pull(f"docker-archive:{several}:@0")
    assert by_index.id == first


# === layouts of other writers


def test_docker_25_blobs_layout_and_symlinked_layers(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    spec = docker_archive([(STANDARD, ["app:1"])], style="blobs")
    # Docker deduplicates layers with symlinks; manifest.json may name the link.
    first = spec.manifest[0]["Layers"][0]
    spec.add(Member("legacy/", kind="dir"))
    spec.add(Member("legacy/layer.tar", kind="symlink", target=f"../{first}"))
    spec.manifest[0]["Layers"][0] = "./legacy//layer.tar"
    archive = spec.pack(tmp_path / "a.tar")
    [image] = runtime.pull(f"docker-archive:{archive}")
    assert f"sha256:{image.id}" == STANDARD.config_digest
    assert diff_ids(image) == [layer.diff_id for layer in STANDARD.layers]
    image.unpack(tmp_path / "rootfs")
    assert tree(tmp_path / "rootfs").keys() == STANDARD_ROOTFS.keys()


@pytest.mark.parametrize(
    ("compression", "media_type"), [("gzip", DOCKER_LAYER_GZIP), ("zstd", OCI_LAYER_ZSTD)]
)
@pytest.mark.parametrize("whole", ["none", "gzip"])
def test_compressed_layer_files_are_described_as_they_are(
    compression: str, media_type: str, whole: str, runtime: towline.Runtime, tmp_path: Path
) -> None:
    spec = docker_archive([(STANDARD, ["app:1"])], layer_compression=compression)  # type: ignore[arg-type]
    archive = spec.pack(tmp_path / "a.tar", whole)  # type: ignore[arg-type]
    [image] = runtime.pull(f"docker-archive:{archive}")
    assert f"sha256:{image.id}" == STANDARD.config_digest
    assert diff_ids(image) == [layer.diff_id for layer in STANDARD.layers]
    assert {layer.media_type for layer in image.layers} == {media_type}
    assert all(layer.digest != layer.diff_id for layer in image.layers)
    assert not list((runtime.root / "tmp").iterdir())  # the staged copies are gone


def test_a_hard_link_is_followed_and_layers_out_of_archive_order_are_found(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    spec = docker_archive([(STANDARD, ["app:1"])])
    layers = spec.manifest[0]["Layers"]
    spec.add(Member("linked.tar", kind="hardlink", target=layers[0]))
    layers[0] = "linked.tar"
    spec.members.reverse()  # the last layer first: the stream must go back for the others
    for whole in ("none", "gzip"):
        archive = spec.pack(tmp_path / f"a-{whole}.tar", whole)  # type: ignore[arg-type]
        [image] = runtime.pull(f"docker-archive:{archive}")
        assert diff_ids(image) == [layer.diff_id for layer in STANDARD.layers]
        runtime.remove_image(image.id)


def test_the_same_layer_twice_is_read_from_one_file(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    empty = TarBuilder().add_dir("etc").bytes()
    image = archive_image([empty, TarBuilder().add_file("x", b"x").bytes(), empty])
    archive = docker_archive([(image, ["twice:1"])]).pack(tmp_path / "a.tar")
    [pulled] = runtime.pull(f"docker-archive:{archive}")
    assert diff_ids(pulled) == [layer.diff_id for layer in image.layers]


# === what towline writes, read by the peers


def test_store_to_archive_is_read_by_skopeo_and_loaded_by_podman(
    runtime: towline.Runtime,
    other_runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    peers: Peers,
    podman: Podman,
    tmp_path: Path,
) -> None:
    pushed = test_images["gzip"]
    [image] = runtime.pull(f"docker://{pushed.reference}", options=INSECURE)
    archive = tmp_path / "out.tar"
    runtime.copy(f"containers-storage:{pushed.reference}", f"docker-archive:{archive}:app:v1")

    inspected = peers.inspect(f"docker-archive:{archive}")
    assert inspected["Layers"] == expected_diff_ids(pushed)
    assert inspected["Digest"].startswith("sha256:")
    manifest = json.loads(peers.inspect_raw(f"docker-archive:{archive}"))
    assert manifest["config"]["digest"] == f"sha256:{image.id}"
    layout = tmp_path / "layout"
    peers.skopeo_copy(f"docker-archive:{archive}", f"oci:{layout}:app")
    config = json.loads(peers.run("skopeo", "inspect", "--config", f"oci:{layout}:app"))
    assert config["rootfs"]["diff_ids"] == expected_diff_ids(pushed)
    # (skopeo re-marshals the config as it converts v2s2 to OCI: a new config digest.)
    rootfs = peers.umoci_unpack(layout, "app", tmp_path / "bundle")
    assert tree(image.unpack(tmp_path / "ours")) == tree(rootfs)

    podman.run("load", "-q", "-i", str(archive))
    assert podman.images() == {image.id: {"docker.io/library/app:v1"}}

    [back] = other_runtime.pull(f"docker-archive:{archive}")
    assert back.id == image.id
    assert back.names == ["docker.io/library/app:v1"]


def test_an_oci_zstd_image_is_written_with_uncompressed_layers(
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    peers: Peers,
    tmp_path: Path,
) -> None:
    pushed = test_images["zstd"]
    archive = tmp_path / "out.tar"
    runtime.copy(f"docker://{pushed.reference}", f"docker-archive:{archive}", INSECURE)
    inspected = peers.inspect(f"docker-archive:{archive}")
    assert inspected["Layers"] == expected_diff_ids(pushed)
    assert inspected["RepoTags"] == []


def test_several_images_in_one_archive_are_loaded_by_podman(
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    podman: Podman,
    tmp_path: Path,
) -> None:
    first, second = test_images["gzip"], test_images["shared-a"]
    ids = {}
    for pushed in (first, second):
        [image] = runtime.pull(f"docker://{pushed.reference}", options=INSECURE)
        ids[pushed.reference] = image.id
    archive = tmp_path / "several.tar"
    context = TransportContext(
        options=towline.PullOptions(), reporter=Reporter(None, None), tmp_dir=runtime.store.tmp_dir,
        store=runtime.store,
    )  # fmt: skip
    dest = parse_image_name(f"docker-archive:{archive}").new_destination(context)
    options = CopyOptions(wanted=[host_platform()])
    names = (["localhost/one:1", "localhost/one:2"], ["localhost/two:1"])
    for pushed, tags in zip((first, second), names, strict=True):
        dest.set_repo_tags(tags)  # type: ignore[attr-defined]
        source = parse_image_name(f"containers-storage:{pushed.reference}").new_source(context)
        try:
            copy_image(source, dest, options, Reporter(None, None))
        finally:
            source.close()
        assert not archive.exists()  # nothing visible before the commit
    dest.commit()

    podman.run("load", "-q", "-i", str(archive))
    assert podman.images() == {
        ids[first.reference]: {"localhost/one:1", "localhost/one:2"},
        ids[second.reference]: {"localhost/two:1"},
    }
    # Layers both images share are written once.
    members = [m.name for m in _tar_members(archive)]
    assert len(members) == len(set(members))


def _tar_members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def test_an_existing_archive_is_not_overwritten(runtime: towline.Runtime, tmp_path: Path) -> None:
    source = docker_archive([(SMALL, ["small:1"])]).pack(tmp_path / "src.tar")
    existing = tmp_path / "out.tar"
    existing.write_bytes(b"keep me")
    with pytest.raises(TransportError, match="doesn't support modifying existing images"):
        runtime.copy(f"docker-archive:{source}", f"docker-archive:{existing}")
    assert existing.read_bytes() == b"keep me"


def test_a_failed_copy_leaves_nothing_at_the_destination(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    spec = docker_archive([(OTHER, ["other:1"])])
    second = spec.manifest[0]["Layers"][1]
    spec.add(Member(second, TarBuilder().add_file("evil.txt", b"not the layer\n").bytes()))
    source = spec.pack(tmp_path / "bad.tar")
    out = tmp_path / "out" / "copy.tar"
    out.parent.mkdir()
    with pytest.raises(DigestMismatchError):
        runtime.copy(f"docker-archive:{source}", f"docker-archive:{out}")
    assert list(out.parent.iterdir()) == []  # no archive, no staging directory


def test_an_interrupted_copy_leaves_nothing_at_the_destination(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    source = docker_archive([(STANDARD, ["app:1"])]).pack(tmp_path / "src.tar")
    out = tmp_path / "out" / "copy.tar"
    out.parent.mkdir()

    def interrupt(event: ProgressEvent) -> None:
        if event.kind == "advance":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runtime.copy(
            f"docker-archive:{source}",
            f"docker-archive:{out}",
            towline.PullOptions(progress=interrupt),
        )
    assert list(out.parent.iterdir()) == []


# === damaged and hostile archives: a clear error, the store unchanged


def _manifest_json_too_big(spec: ArchiveSpec) -> None:
    spec.manifest_json = json.dumps(spec.manifest).encode() + b" " * (1 << 20)


def _config_too_big(spec: ArchiveSpec) -> None:
    config = spec.manifest[0]["Config"]
    document = json.loads(SMALL.config)
    document["padding"] = "x" * (4 << 20)
    spec.add(Member(config, json.dumps(document).encode()))


def _wrong_diff_id(spec: ArchiveSpec) -> None:
    layer = spec.manifest[0]["Layers"][0]
    spec.add(Member(layer, TarBuilder().add_file("small.txt", b"changed\n").bytes()))


DAMAGES = {
    "no manifest.json": (
        lambda s: setattr(s, "with_manifest", False),
        TransportError,
        "is missing from the archive",
    ),
    "missing layer file": (
        lambda s: s.remove(s.manifest[0]["Layers"][0]),
        TransportError,
        'layer ".*/layer.tar" is missing from the archive: the archive is incomplete',
    ),
    "missing config": (
        lambda s: s.remove(s.manifest[0]["Config"]),
        TransportError,
        "config .* is missing from the archive",
    ),
    "wrong diff_id": (_wrong_diff_id, DigestMismatchError, "digest"),
    "path escape in Layers": (
        lambda s: s.manifest[0]["Layers"].__setitem__(0, "../x/layer.tar"),
        TransportError,
        "points outside the archive",
    ),
    "absolute Config": (
        lambda s: s.manifest[0].__setitem__("Config", "/etc/passwd"),
        TransportError,
        "points outside the archive",
    ),
    "symlink out of the archive": (
        lambda s: s.add(
            Member(s.manifest[0]["Layers"][0], kind="symlink", target="../../../etc/passwd")
        ),
        TransportError,
        "points outside the archive",
    ),
    "absolute symlink": (
        lambda s: s.add(Member(s.manifest[0]["Layers"][0], kind="symlink", target="/etc/passwd")),
        TransportError,
        'is a link to "/etc/passwd", which points outside the archive',
    ),
    "symlink to a symlink": (
        lambda s: (
            s.add(Member("a.tar", kind="symlink", target=s.manifest[0]["Layers"][0])),
            s.manifest[0]["Layers"].__setitem__(0, "b.tar"),
            s.add(Member("b.tar", kind="symlink", target="a.tar")),
        ),
        TransportError,
        "is a symbolic link, not a regular file",
    ),
    "layer is a directory": (
        lambda s: s.manifest[0]["Layers"].__setitem__(0, s.manifest[0]["Layers"][0].split("/")[0]),
        TransportError,
        "is a directory, not a regular file",
    ),
    "huge manifest.json": (_manifest_json_too_big, TransportError, "more than the 1048576"),
    "huge config": (_config_too_big, TransportError, "more than the 4194304"),
    "manifest.json not a list": (
        lambda s: setattr(s, "manifest_json", b'{"Config": "x"}'),
        TransportError,
        "invalid manifest.json",
    ),
    "manifest.json with more after the list": (
        lambda s: setattr(s, "manifest_json", b'[], "x": 1'),
        TransportError,
        "invalid manifest.json",
    ),
    "layer count differs": (
        lambda s: s.manifest[0]["Layers"].append(s.manifest[0]["Layers"][0]),
        TransportError,
        "Inconsistent layer count: 2 in manifest, 1 in config",
    ),
    "no items": (
        lambda s: setattr(s, "manifest", []),
        TransportError,
        "expected 1 item, got 0",
    ),
}


@pytest.mark.parametrize("whole", ["none", "gzip"])
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_archives(
    damage: str, whole: str, runtime: towline.Runtime, tmp_path: Path
) -> None:
    runtime.pull(
        f"docker-archive:{docker_archive([(OTHER, ['other:1'])]).pack(tmp_path / 'o.tar')}"
    )
    before = store_files(runtime.root)
    spec = docker_archive([(SMALL, ["small:1"])])
    change, error, message = DAMAGES[damage]
    change(spec)  # type: ignore[operator]
    archive = spec.pack(tmp_path / "a.tar", whole)  # type: ignore[arg-type]
    with pytest.raises(error, match=message) as info:  # type: ignore[call-overload]
        runtime.pull(f"docker-archive:{archive}")
    assert str(archive) in str(info.value) or damage == "wrong diff_id"
    assert "\n" not in str(info.value)
    assert store_files(runtime.root) == before
    assert not list((runtime.root / "tmp").iterdir())


@pytest.mark.parametrize("whole", ["none", "gzip"])
def test_a_truncated_archive(whole: str, runtime: towline.Runtime, tmp_path: Path) -> None:
    spec = docker_archive([(STANDARD, ["app:1"])])
    spec.manifest_first = True  # so the cut falls in a layer, not in manifest.json
    raw = spec.tar()
    cut = raw[: len(raw) // 2]
    archive = tmp_path / "a.tar"
    archive.write_bytes(gzip.compress(cut) if whole == "gzip" else cut)
    before = store_files(runtime.root)
    with pytest.raises(TransportError, match=r"truncated|damaged") as info:
        runtime.pull(f"docker-archive:{archive}")
    assert str(archive) in str(info.value)
    assert store_files(runtime.root) == before


def test_not_an_archive(runtime: towline.Runtime, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(TransportError, match=r"junk\.tar"):
        runtime.pull(f"docker-archive:{junk}")
    with pytest.raises(TransportError, match="does not exist"):
        runtime.pull(f"docker-archive:{tmp_path / 'missing.tar'}")
    with pytest.raises(TransportError, match="is not a file"):
        runtime.pull(f"docker-archive:{tmp_path}")


def test_an_oci_archive_is_named_as_such(runtime: towline.Runtime, tmp_path: Path) -> None:
    spec = ArchiveSpec([Member("oci-layout", b"{}"), Member("index.json", b"{}")])
    spec.with_manifest = False
    archive = spec.pack(tmp_path / "oci.tar")
    with pytest.raises(TransportError, match=r"it is an OCI archive.*use oci-archive:"):
        runtime.pull(f"docker-archive:{archive}")
