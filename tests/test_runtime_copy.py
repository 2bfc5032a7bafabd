"""Runtime.copy(preserve_digests=…), Runtime.tag, Runtime.save and Runtime.load.

As skopeo's ``--preserve-digests`` and podman's ``tag``, ``save`` and ``load``
(podman 4.3 was run to pin each behaviour named in a test).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import towline
from support.images import Image, TarBuilder, build_image, build_index
from support.registry import PushedImage, RegistryServer, push_named
from towline.archives import detect_format, output_reference, plan_save

OPTS = towline.PullOptions(tls_verify=False)
_counter = itertools.count()


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[towline.Runtime]:
    """A store under tmp_path that reads no host configuration."""
    config_root = tmp_path / "config-root"
    (config_root / "etc/containers").mkdir(parents=True)
    env = {
        "HOME": str(tmp_path / "home"),
        "TOWLINE_CONFIG_ROOT": str(config_root),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    with towline.Runtime(tmp_path / "store", env=env) as rt:
        yield rt


def unique_image(media: str = "oci") -> Image:
    """A one-layer image no other test shares."""
    layer = TarBuilder().add_file("label", os.urandom(16)).bytes()
    return build_image([layer], media=media)  # type: ignore[arg-type]


@pytest.fixture
def push(registry: RegistryServer) -> Callable[..., PushedImage]:
    """Push a fresh image (or a given image or index) to its own repository."""

    def push_one(artifact: object = None, media: str = "oci") -> PushedImage:
        built = artifact if artifact is not None else unique_image(media)
        return push_named(registry, f"rtcopy/img{next(_counter)}", built)  # type: ignore[arg-type]

    return push_one


@pytest.fixture
def pulled(
    runtime: towline.Runtime, push: Callable[..., PushedImage]
) -> Callable[..., towline.Image]:
    """Push a fresh image and pull it into ``runtime``."""

    def pull(media: str = "oci") -> towline.Image:
        return runtime.pull(push(media=media).reference, options=OPTS)[0]

    return pull


def files_under(root: Path) -> list[Path]:
    """Files left under ``root`` (an aborted layout may keep an empty directory)."""
    return [p for p in root.glob("**/*") if not p.is_dir()]


# === copy --preserve-digests


def test_preserve_digests_refuses_a_conversion_and_leaves_nothing(
    runtime: towline.Runtime, push: Callable[..., PushedImage], tmp_path: Path
) -> None:
    pushed = push(media="docker")  # oci: stores OCI manifests only
    layout = tmp_path / "layout"
    with pytest.raises(towline.TransportError, match="must be preserved") as caught:
        runtime.copy(f"docker://{pushed.reference}", f"oci:{layout}", OPTS, preserve_digests=True)
    assert caught.value.slug == "manifest_conversion"
    assert files_under(layout) == []
    # Without the option the manifest is converted: another digest, the same image.
    result = runtime.copy(f"docker://{pushed.reference}", f"oci:{layout}", OPTS)
    assert result.manifest_digest != pushed.manifest_digest
    assert result.image_ids == [pushed.config_digest.removeprefix("sha256:")]  # type: ignore[union-attr]


def test_preserve_digests_copies_what_the_destination_stores_as_it_is(
    runtime: towline.Runtime, push: Callable[..., PushedImage], tmp_path: Path
) -> None:
    oci, docker = push(media="oci"), push(media="docker")
    to_layout = runtime.copy(
        f"docker://{oci.reference}", f"oci:{tmp_path / 'layout'}", OPTS, preserve_digests=True
    )
    to_dir = runtime.copy(
        f"docker://{docker.reference}", f"dir:{tmp_path / 'dir'}", OPTS, preserve_digests=True
    )
    assert to_layout.manifest_digest == oci.manifest_digest
    assert to_dir.manifest_digest == docker.manifest_digest


def test_preserve_digests_refuses_converting_a_whole_list(
    runtime: towline.Runtime, push: Callable[..., PushedImage], tmp_path: Path
) -> None:
    images = [
        build_image([TarBuilder().add_file("p", p.encode()).bytes()], platform=p, media="docker")
        for p in ("linux/amd64", "linux/arm64")
    ]
    pushed = push(build_index(images, media="docker"))
    with pytest.raises(towline.TransportError, match="must be preserved"):
        runtime.copy(
            f"docker://{pushed.reference}",
            f"oci:{tmp_path / 'layout'}",
            OPTS,
            all_platforms=True,
            preserve_digests=True,
        )
    assert files_under(tmp_path / "layout") == []


# === tag


def test_tag_adds_names_normalized_as_podman(
    runtime: towline.Runtime, pulled: Callable[..., towline.Image]
) -> None:
    image = pulled()
    tagged = runtime.tag(image.id[:12], "foo", "quay.io/x/y:2", "docker.io/z", "foo")
    # libimage NormalizeName: no registry → localhost/ (podman tag IMG foo → localhost/foo).
    assert set(tagged.names) == {
        *image.names,
        "localhost/foo:latest",
        "quay.io/x/y:2",
        "docker.io/library/z:latest",
    }
    assert runtime.lookup_image("foo")[0].id == image.id


def test_tag_moves_a_name_from_the_image_that_had_it(
    runtime: towline.Runtime, pulled: Callable[..., towline.Image]
) -> None:
    first, second = pulled(), pulled()
    runtime.tag(first.id, "shared:1")
    runtime.tag(second.id, "shared:1")
    assert runtime.lookup_image("shared:1")[0].id == second.id
    assert "localhost/shared:1" not in runtime.lookup_image(first.id)[0].names


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ("Upper", "must be lowercase"),
        ("a b", "invalid reference"),
        ("foo@sha256:" + "a" * 64, "tag by digest not supported"),
    ],
)
def test_tag_refuses_a_bad_name_and_adds_none(
    runtime: towline.Runtime, pulled: Callable[..., towline.Image], new: str, message: str
) -> None:
    image = pulled()
    with pytest.raises(towline.InvalidReferenceError, match=message):
        runtime.tag(image.id, "good:1", new)
    assert runtime.lookup_image(image.id)[0].names == image.names


def test_tag_of_an_unknown_image(runtime: towline.Runtime) -> None:
    with pytest.raises(towline.ImageUnknownError, match="nothere: image not known"):
        runtime.tag("nothere", "foo")


# === save: which images, under which names (libimage saveDockerArchive)


class FakeImage:
    def __init__(self, image_id: str) -> None:
        self.id = image_id


def fake_lookup(table: dict[str, tuple[str, str]]) -> Callable[[str], tuple[object, str]]:
    """name → (image ID, the name it resolved to), as Runtime.lookup_image answers."""

    def lookup(name: str) -> tuple[object, str]:
        image_id, resolved = table[name]
        return FakeImage(image_id), resolved

    return lookup


A, B = "a" * 64, "b" * 64
TABLE = {
    "one": (A, "docker.io/library/one:latest"),
    "one-again": (A, "quay.io/one:2"),
    "two": (B, "docker.io/library/two:latest"),
    A[:12]: (A, A),
    "pinned": (B, f"docker.io/library/two@sha256:{'c' * 64}"),
}


def planned(names: list[str], fmt: str = "docker-archive", multi: bool = False) -> list[object]:
    plan = plan_save(names, fmt, multi, fake_lookup(TABLE))  # type: ignore[arg-type]
    return [(saved.image.id, saved.names) for saved in plan]


def test_save_plan_without_m_the_other_names_are_more_names_of_the_first() -> None:
    # podman save -o x.tar IMG foo/bar:1 → RepoTags [IMG's name, localhost/foo/bar:1]
    assert planned(["one", "foo/bar:1", "two"]) == [
        (A, ["docker.io/library/one:latest", "localhost/foo/bar:1", "localhost/two:latest"])
    ]
    # By ID (or a digest) the image is saved unnamed; dir: holds no name at all.
    assert planned([A[:12]]) == [(A, [])]
    assert planned(["pinned"]) == [(B, [])]
    assert planned(["one", "foo"], "docker-dir") == [(A, ["docker.io/library/one:latest"])]


def test_save_plan_with_m_every_name_is_an_image_grouped_by_id() -> None:
    assert planned(["one", "two", "one-again", "one", A[:12]], multi=True) == [
        (A, ["docker.io/library/one:latest", "quay.io/one:2"]),
        (B, ["docker.io/library/two:latest"]),
    ]
    assert planned(["one", "two"], "oci-archive", multi=True) == [
        (A, ["docker.io/library/one:latest"]),
        (B, ["docker.io/library/two:latest"]),
    ]


@pytest.mark.parametrize("fmt", ["oci-dir", "docker-dir"])
def test_save_plan_refuses_several_images_in_a_directory(fmt: str) -> None:
    with pytest.raises(towline.TransportError, match="for saving multiple images"):
        planned(["one", "two"], fmt, multi=True)
    assert planned(["one"], fmt, multi=True) == [(A, ["docker.io/library/one:latest"])]


def test_save_refuses_an_unknown_format_a_digest_tag_and_a_colon_in_the_path(
    tmp_path: Path,
) -> None:
    with pytest.raises(towline.TransportError, match="format value must be one of"):
        planned(["one"], "tarball")
    with pytest.raises(towline.InvalidReferenceError, match="tag by digest"):
        planned(["one", "x@sha256:" + "d" * 64])
    with pytest.raises(towline.TransportError, match="should not contain ':'"):
        output_reference("docker-archive", tmp_path / "a:b.tar")


# === save and load through the store


def test_save_oci_dir_names_every_entry_and_load_brings_it_back(
    runtime: towline.Runtime, pulled: Callable[..., towline.Image], tmp_path: Path
) -> None:
    image = pulled()
    layout = tmp_path / "layout"
    saved = runtime.save([image.names[0], "extra:1"], layout, "oci-dir")
    assert [s.id for s in saved] == [image.id]
    index = json.loads((layout / "index.json").read_text())
    names = [e["annotations"]["org.opencontainers.image.ref.name"] for e in index["manifests"]]
    assert names == [image.names[0], "localhost/extra:1"]
    assert {e["digest"] for e in index["manifests"]} == {image.digest}

    runtime.remove_image(image.id, force=True)
    loaded = runtime.load(layout)
    assert [x.id for x in loaded] == [image.id, image.id]
    assert set(runtime.lookup_image(image.id)[0].names) == {image.names[0], "localhost/extra:1"}


def test_save_docker_dir_and_load_it(
    runtime: towline.Runtime, pulled: Callable[..., towline.Image], tmp_path: Path
) -> None:
    image = pulled(media="docker")
    runtime.save([image.id], tmp_path / "dir", "docker-dir")
    assert {"manifest.json", "version"} <= {p.name for p in (tmp_path / "dir").iterdir()}
    runtime.remove_image(image.id)
    [loaded] = runtime.load(tmp_path / "dir")
    assert loaded.id == image.id and loaded.names == [] and loaded.digest == image.digest


def test_a_failed_save_leaves_nothing_at_the_output(
    runtime: towline.Runtime, pulled: Callable[..., towline.Image], tmp_path: Path
) -> None:
    image = pulled()
    runtime.store.blob_path(image.layers[0].digest).unlink()  # lost behind towline's back
    with pytest.raises(towline.TransportError, match="not stored"):
        runtime.save([image.id], tmp_path / "layout", "oci-dir")
    assert files_under(tmp_path / "layout") == []


def test_save_of_an_unknown_image_writes_nothing(runtime: towline.Runtime, tmp_path: Path) -> None:
    with pytest.raises(towline.ImageUnknownError, match="image not known"):
        runtime.save(["nothere"], tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists()


# === load: the format, by content (as podman)


def tar_with(path: Path, *names: str) -> Path:
    with tarfile.open(path, "w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    return path


def test_load_detects_the_format_by_content(tmp_path: Path) -> None:
    assert detect_format(tar_with(tmp_path / "a", "oci-layout", "index.json")) == "oci-archive"
    assert detect_format(tar_with(tmp_path / "b", "./index.json")) == "oci-archive"
    assert detect_format(tar_with(tmp_path / "c", "x.json", "manifest.json")) == "docker-archive"
    # docker save (Docker 25+) writes both: the OCI layout wins, as podman tries it first.
    both = tar_with(tmp_path / "d", "manifest.json", "index.json", "oci-layout")
    assert detect_format(both) == "oci-archive"
    (tmp_path / "layout").mkdir()
    (tmp_path / "layout/oci-layout").write_text("{}")
    assert detect_format(tmp_path / "layout") == "oci"
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir/manifest.json").write_text("{}")
    assert detect_format(tmp_path / "dir") == "dir"


@pytest.mark.parametrize("content", [b"", b"not a tar at all" * 100])
def test_load_refuses_what_is_no_image_archive(
    runtime: towline.Runtime, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "junk"
    path.write_bytes(content)
    with pytest.raises(towline.TransportError, match="does not match any of the supported"):
        runtime.load(path)
    with pytest.raises(towline.TransportError, match="does not match any of the supported"):
        runtime.load(tar_with(tmp_path / "other.tar", "etc/passwd"))
    assert runtime.list_images() == []


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_several_images_into_one_archive_and_load_them_back(
    runtime: towline.Runtime, pulled: Callable[..., towline.Image], tmp_path: Path, fmt: str
) -> None:
    first, second = pulled(), pulled(media="docker")
    archive = tmp_path / "images.tar"
    names = [first.names[0], second.names[0]]
    saved = runtime.save([*names, first.id], archive, fmt, multi_image=True)
    assert [s.id for s in saved] == [first.id, second.id]
    for image in (first, second):
        runtime.remove_image(image.id)
    loaded = runtime.load(archive)
    assert [(x.id, x.names) for x in loaded] == [(first.id, names[:1]), (second.id, names[1:])]


def test_load_names_an_unnamed_archive_image_by_nothing(
    runtime: towline.Runtime, pulled: Callable[..., towline.Image], tmp_path: Path
) -> None:
    image = pulled()
    runtime.save([image.id], tmp_path / "unnamed.tar", "oci-archive")
    runtime.remove_image(image.id)
    [loaded] = runtime.load(tmp_path / "unnamed.tar")
    assert (loaded.id, loaded.names) == (image.id, [])


def test_save_a_docker_archive_never_overwrites_one(
    runtime: towline.Runtime, pulled: Callable[..., towline.Image], tmp_path: Path
) -> None:
    # As podman (c/image): "docker-archive doesn't support modifying existing images".
    image = pulled()
    archive = tmp_path / "image.tar"
    archive.write_bytes(b"something")
    with pytest.raises(towline.TransportError, match="exists and is not empty"):
        runtime.save([image.id], archive)
    assert archive.read_bytes() == b"something"
