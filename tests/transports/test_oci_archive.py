"""``oci-archive:`` both ways: tars of layouts, read in place (indexed, or streamed if compressed).

Names follow libimage's ``nameFromAnnotations`` + ``NormalizeName``; a truncated
or damaged archive gives one clear error and leaves the store as it was; what
towline writes, skopeo reads (and umoci unpacks, once skopeo made a layout of it).
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest
import zstandard

import towline
from support.images import TarBuilder, build_image, build_index
from support.registry import PushedImage
from towline.copy import CopyOptions, copy_image
from towline.errors import InvalidReferenceError, TransportError
from towline.events import Reporter
from towline.platform import host_platform, wanted_platforms
from towline.transports import parse_image_name
from towline.transports.base import TransportContext
from towline.transports.oci_archive_files import StreamedArchive, open_archive

from .conftest import INSECURE, store_files
from .layouts import blob_path, entry, write_layout
from .peers import Peers, snapshot, tree

SMALL = build_image([TarBuilder().add_file("archive-small.txt", b"small\n").bytes()])
OTHER = build_image([TarBuilder().add_file("archive-other.txt", b"other\n").bytes()])
EXAMPLE = Path(__file__).parents[2] / "examples" / "hello.oci.tar"


def tar_of(layout: Path, archive: Path, *, prefix: str = "./", extra: bytes | None = None) -> Path:
    """``layout`` as a tar, members named ``<prefix>index.json``… (as ``tar -C layout .``)."""
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=prefix + path.relative_to(layout).as_posix(), recursive=False)
        if extra is not None:
            info = tarfile.TarInfo("../escape")
            info.size = len(extra)
            tar.addfile(info, io.BytesIO(extra))
    return archive


def compressed(archive: Path, compression: str) -> Path:
    data = archive.read_bytes()
    out = archive.with_name(f"{archive.name}.{compression}")
    if compression == "gzip":
        out.write_bytes(gzip.compress(data, mtime=0))
    else:
        out.write_bytes(zstandard.ZstdCompressor().compress(data))
    return out


# === archives skopeo wrote, pulled by towline


@pytest.fixture
def skopeo_archive(test_images: dict[str, PushedImage], peers: Peers, tmp_path: Path) -> Path:
    """The gzip test image in an oci-archive skopeo wrote, named ``app:1.0``."""
    archive = tmp_path / "image.tar"
    peers.skopeo_copy(f"docker://{test_images['gzip'].reference}", f"oci-archive:{archive}:app:1.0")
    return archive


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_pull_an_archive_skopeo_wrote(
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    peers: Peers,
    skopeo_archive: Path,
    compression: str,
) -> None:
    pushed = test_images["gzip"]
    inspected = peers.inspect(f"oci-archive:{skopeo_archive}:app:1.0")
    archive = skopeo_archive if compression == "none" else compressed(skopeo_archive, compression)
    [image] = runtime.pull(f"oci-archive:{archive}:app:1.0")
    assert f"sha256:{image.id}" == pushed.config_digest
    assert [layer.digest for layer in image.layers] == inspected["Layers"]
    assert image.digest == pushed.manifest_digest
    # libimage NormalizeName: an archive's names without a registry go to localhost/.
    assert image.names == ["localhost/app:1.0"]


def test_the_offline_example_pulls_for_this_machine(runtime: towline.Runtime) -> None:
    [image] = runtime.pull(f"oci-archive:{EXAMPLE}")
    assert image.names == ["localhost/hello:latest"]
    host = host_platform()
    assert image.platform.split("/")[:2] == [host.os, host.architecture]


class Collect:
    """A sink that keeps what it is given."""

    def __init__(self) -> None:
        self.data = b""

    @property
    def bytes_written(self) -> int:
        return len(self.data)

    def write(self, chunk: bytes) -> None:
        self.data += chunk


def test_a_compressed_archive_serves_blobs_in_any_order(tmp_path: Path) -> None:
    # Layers are asked for in manifest order, which is seldom archive order: going back
    # starts a new pass, going forward continues the current one.
    layers = [TarBuilder().add_file(f"f{n}", bytes([n]) * 3000).bytes() for n in range(4)]
    image = build_image(layers, "zstd")
    archive = compressed(tar_of(write_layout(tmp_path / "l", [image]), tmp_path / "a.tar"), "zstd")
    files = open_archive(archive, "test")
    assert isinstance(files, StreamedArchive) and not files.parallel_reads
    names = sorted(f"blobs/sha256/{x.digest[7:]}" for x in image.layers)
    for name in [*reversed(names), *names, names[2], names[2]]:
        sink = Collect()
        files.stream(name, None, sink, None)
        assert sink.data == image.blobs[f"sha256:{name.rpartition('/')[2]}"]
    # A member the first pass did not keep (not JSON) is read again on demand.
    assert files.read(names[0], 1 << 20) == image.blobs[f"sha256:{names[0][13:]}"]
    with pytest.raises(TransportError, match="more than the 10 allowed"):
        files.read(names[0], 10)
    files.close()


# === naming (libimage nameFromAnnotations) and selection


@pytest.mark.parametrize(
    ("annotations", "names"),
    [
        ({"org.opencontainers.image.ref.name": "pretty:1"}, ["localhost/pretty:1"]),
        ({"org.opencontainers.image.ref.name": "example.com/e:2"}, ["example.com/e:2"]),
        (
            {
                "io.containerd.image.name": "docker.io/x/y:3",
                "org.opencontainers.image.ref.name": "3",
            },
            ["docker.io/x/y:3"],
        ),
        ({}, []),
    ],
)
def test_names_come_from_the_annotations(
    runtime: towline.Runtime, tmp_path: Path, annotations: dict[str, str], names: list[str]
) -> None:
    layout = write_layout(tmp_path / "layout", [SMALL], [entry(SMALL, **annotations)])
    archive = tar_of(layout, tmp_path / "a.tar", extra=b"never written anywhere")
    [image] = runtime.pull(f"oci-archive:{archive}")
    assert f"sha256:{image.id}" == SMALL.config_digest
    assert image.names == names
    assert not (tmp_path / "escape").exists()


def test_an_invalid_name_in_an_archive_is_an_error(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    layout = write_layout(tmp_path / "layout", [SMALL], [entry(SMALL, "UPPERCASE-IS-INVALID")])
    with pytest.raises(InvalidReferenceError, match="UPPERCASE-IS-INVALID"):
        runtime.pull(f"oci-archive:{tar_of(layout, tmp_path / 'a.tar', prefix='')}")
    assert runtime.list_images() == []


def test_several_images_need_a_ref_and_an_index_picks_a_platform(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    arm = build_image([TarBuilder().add_file("arm.txt", b"arm\n").bytes()], platform="linux/arm64")
    index = build_index([SMALL, arm])
    entries = [entry(OTHER, "other"), entry(index, "multi")]
    archive = tar_of(write_layout(tmp_path / "l", [OTHER, index], entries), tmp_path / "a.tar")
    with pytest.raises(TransportError, match="more than one image in oci, choose an image"):
        runtime.pull(f"oci-archive:{archive}")
    options = towline.PullOptions(platform="linux/arm64")
    [image] = runtime.pull(f"oci-archive:{archive}:multi", options=options)
    assert f"sha256:{image.id}" == arm.config_digest
    assert image.names == ["localhost/multi:latest"]


# === archives towline wrote, read by the peers and by towline


def test_store_to_archive_to_store(
    runtime: towline.Runtime,
    other_runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    peers: Peers,
    tmp_path: Path,
) -> None:
    pushed = test_images["gzip"]
    [pulled] = runtime.pull(pushed.reference, options=INSECURE)
    archive = tmp_path / "out.tar"
    runtime.copy(f"containers-storage:{pulled.id}", f"oci-archive:{archive}:keep")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    inspected = peers.inspect(f"oci-archive:{archive}:keep")
    assert inspected["Digest"] == pushed.manifest_digest
    assert inspected["Layers"] == [x.digest for x in pushed.layers]
    peers.skopeo_copy(f"oci-archive:{archive}:keep", f"oci:{tmp_path}/layout:keep")
    rootfs = peers.umoci_unpack(tmp_path / "layout", "keep", tmp_path / "bundle")

    [back] = other_runtime.pull(f"oci-archive:{archive}")
    assert back.id == pulled.id
    assert back.names == ["localhost/keep:latest"]
    assert [x.digest for x in back.layers] == [x.digest for x in pulled.layers]
    assert tree(back.unpack(tmp_path / "ours")) == tree(rootfs)


def test_one_archive_takes_several_images(tmp_path: Path, peers: Peers) -> None:
    # `towline save` of two images: two copies into one destination, one commit.
    sources = [
        write_layout(tmp_path / name, [image]) for name, image in [("s", SMALL), ("o", OTHER)]
    ]
    archive = tmp_path / "both.tar"
    context = TransportContext(
        options=towline.PullOptions(), reporter=Reporter(None, None), tmp_dir=tmp_path
    )
    dest = parse_image_name(f"oci-archive:{archive}").new_destination(context)
    options = CopyOptions(wanted=wanted_platforms(None))
    for name, layout in zip(["small:1", "other:2"], sources, strict=True):
        dest.set_ref_name(name)  # type: ignore[attr-defined]
        source = parse_image_name(f"oci:{layout}").new_source(context)
        copy_image(source, dest, options, context.reporter)
        source.close()
    assert not archive.exists()  # nothing before the commit
    dest.commit()
    assert peers.inspect(f"oci-archive:{archive}:small:1")["Digest"] == SMALL.manifest_digest
    assert peers.inspect(f"oci-archive:{archive}:other:2")["Digest"] == OTHER.manifest_digest


def test_a_failed_copy_leaves_the_archive_as_it_was(
    runtime: towline.Runtime, tmp_path: Path
) -> None:
    arm = build_image([TarBuilder().add_file("arm.txt", b"arm\n").bytes()], platform="linux/arm64")
    index = build_index([SMALL, arm])
    broken = write_layout(tmp_path / "broken", [index], [entry(index, "multi")])
    blob_path(broken, arm.layers[0].digest).unlink()
    archive = tmp_path / "existing.tar"
    archive.write_bytes(b"the previous archive")
    for target in (archive, tmp_path / "new.tar"):
        with pytest.raises(TransportError, match="is missing"):
            runtime.copy(f"oci:{broken}:multi", f"oci-archive:{target}:m", all_platforms=True)
    assert archive.read_bytes() == b"the previous archive"
    assert not (tmp_path / "new.tar").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# === damaged archives: one clear error, the store unchanged


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_a_truncated_archive(runtime: towline.Runtime, tmp_path: Path, compression: str) -> None:
    big = build_image([TarBuilder().add_file("big.bin", bytes(range(256)) * 4096).bytes()])
    archive = tar_of(write_layout(tmp_path / "layout", [big]), tmp_path / "a.tar")
    if compression == "gzip":
        archive = compressed(archive, "gzip")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])
    before = store_files(runtime.root)
    with pytest.raises(TransportError) as info:
        runtime.pull(f"oci-archive:{archive}")
    assert str(archive) in str(info.value)
    assert store_files(runtime.root) == before
    assert runtime.list_images() == []


def test_damaged_archives(runtime: towline.Runtime, tmp_path: Path) -> None:
    def refused(archive: Path, match: str) -> None:
        before = snapshot(runtime.root / "blobs")
        with pytest.raises(TransportError, match=match):
            runtime.pull(f"oci-archive:{archive}")
        assert snapshot(runtime.root / "blobs") == before

    layout = write_layout(tmp_path / "no-index", [SMALL])
    (layout / "index.json").unlink()
    refused(tar_of(layout, tmp_path / "no-index.tar"), "index.json is missing")

    layout = write_layout(tmp_path / "no-layer", [SMALL])
    blob_path(layout, SMALL.layers[0].digest).unlink()
    refused(tar_of(layout, tmp_path / "no-layer.tar"), "is missing")

    escape = {**entry(SMALL), "digest": "sha256:../../x"}
    layout = write_layout(tmp_path / "escape", [SMALL], [escape])
    refused(tar_of(layout, tmp_path / "escape.tar"), "invalid digest")

    (tmp_path / "zip.tar").write_bytes(b"PK\x03\x04 not a tar at all" + bytes(600))
    refused(tmp_path / "zip.tar", "zip.tar")
    refused(tmp_path / "missing.tar", "does not exist")
