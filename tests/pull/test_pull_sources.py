"""The pull tests, run once per source transport (``src_transport``, like py_and_json).

Every source is made by the real peer from an image pushed to the test registry
(``skopeo copy`` to ``oci:``, ``oci-archive:``, ``docker-archive:``, ``dir:``; the
fake engine serving skopeo's ``docker-archive`` for ``docker-daemon:``), so each
test also checks that towline reads what skopeo wrote: the same image ID, the layer
digests skopeo reports, the names each transport's rules give. What only a registry
does (retries, auth, tags, mirrors, policies) stays in the other pull tests.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

import towline
from support.images import MULTIARCH_PLATFORMS, STANDARD_ROOTFS
from support.registry import PushedImage
from support.source_transports import NO_INDEX, SOURCE_TRANSPORTS, SourceMaker, SourceTransport

from .conftest import store_files

INSECURE = towline.PullOptions(tls_verify=False)  # for the docker source; files ignore it

#: The transports that hold an index: the others are not parametrized at all (NO_INDEX
#: says why), so nothing is skipped.
INDEX_SOURCES = [t for t in SOURCE_TRANSPORTS if t not in NO_INDEX]


@pytest.fixture
def env(env: dict[str, str], source_maker: SourceMaker) -> dict[str, str]:
    """The pull env, with DOCKER_HOST at the fake engine that serves docker-daemon sources."""
    return {**env, **source_maker.env}


def rootfs(path: Path) -> dict[str, tuple[str, int, bytes | str | None]]:
    """The tree under ``path`` in :data:`STANDARD_ROOTFS` terms: kind, mode, content or target."""
    found: dict[str, tuple[str, int, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            item = Path(dirpath, name)
            st = item.lstat()
            if item.is_symlink():
                entry: tuple[str, int, bytes | str | None] = ("symlink", 0o777, os.readlink(item))
            elif item.is_dir():
                entry = ("dir", st.st_mode & 0o7777, None)
            else:
                entry = ("file", st.st_mode & 0o7777, item.read_bytes())
            found[str(item.relative_to(path))] = entry
    return found


def layer_dirs(runtime: towline.Runtime) -> list[Path]:
    return list((runtime.root / "layers").iterdir())


# === the standard image: store, names, tree


def test_pull_unpacks_the_standard_image(
    src_transport: SourceTransport,
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    tmp_path: Path,
) -> None:
    pushed = test_images["gzip"]
    source = src_transport(pushed)
    [image] = runtime.pull(source.name, options=INSECURE)

    assert f"sha256:{image.id}" == pushed.config_digest
    assert image.names == source.names
    assert image.platform == "linux/amd64"
    # The layers skopeo reports; for docker save archives the uncompressed tars.
    assert [x.digest for x in image.layers] == source.layer_digests == source.reported["Layers"]
    assert [x.diff_id for x in image.layers] == [x.diff_id for x in pushed.layers]
    if source.manifest_digest is not None:
        assert image.digest == source.manifest_digest == source.reported["Digest"]
    assert image.config["rootfs"]["diff_ids"] == [x.diff_id for x in pushed.layers]
    # Whiteouts and the opaque directory honoured, hard links, symlinks and modes kept.
    assert rootfs(image.unpack(tmp_path / "rootfs")) == STANDARD_ROOTFS
    assert runtime.list_images() == [image]
    for name in [*source.names, image.id]:
        assert runtime.lookup_image(name)[0] == image


def test_the_image_id_is_the_same_from_every_transport(
    source_maker: SourceMaker, runtime: towline.Runtime, test_images: dict[str, PushedImage]
) -> None:
    pushed = test_images["gzip"]
    sources = [source_maker.source(t, pushed) for t in SOURCE_TRANSPORTS]
    ids = {f"sha256:{i.id}" for s in sources for i in runtime.pull(s.name, options=INSECURE)}
    assert ids == {pushed.config_digest}
    # One image, with every name a transport gave it, over one copy of each layer.
    [image] = runtime.list_images()
    assert sorted(image.names) == sorted({n for s in sources for n in s.names})
    assert len(layer_dirs(runtime)) == len(pushed.layers)


# === what the pull says


def test_progress_lines_in_podman_words(
    src_transport: SourceTransport, runtime: towline.Runtime, test_images: dict[str, PushedImage]
) -> None:
    pushed = test_images["gzip"]
    source = src_transport(pushed)
    out = io.StringIO()
    events: list[towline.ProgressEvent] = []
    options = towline.PullOptions(tls_verify=False, writer=out, progress=events.append)
    [image] = runtime.pull(source.name, options=options)

    lines = out.getvalue().splitlines()
    start = len(source.preamble)
    assert lines[:start] == source.preamble
    assert lines[start] == "Getting image source signatures"
    blobs = lines[start + 1 : start + 1 + len(pushed.layers)]  # in the order they finish
    assert sorted(blobs) == sorted(f"Copying blob {d[7:19]} done" for d in source.layer_digests)
    assert lines[start + 1 + len(pushed.layers) :] == [
        f"Copying config {image.id[:12]} done",
        "Writing manifest to image destination",
    ]
    for layer in image.layers:
        mine = [e for e in events if e.digest == layer.digest]
        assert mine[0].kind == "start" and mine[-1].kind == "done"
        assert mine[-1].done == mine[-1].total == layer.size


def test_shared_layers_are_copied_once(
    src_transport: SourceTransport, runtime: towline.Runtime, test_images: dict[str, PushedImage]
) -> None:
    a, b = src_transport(test_images["shared-a"]), src_transport(test_images["shared-b"])
    runtime.pull(a.name, options=INSECURE)
    out = io.StringIO()
    [image] = runtime.pull(b.name, options=towline.PullOptions(tls_verify=False, writer=out))

    shared = set(a.layer_digests) & set(b.layer_digests)
    assert len(shared) == 2
    lines = set(out.getvalue().splitlines())
    for digest in b.layer_digests:
        word = "skipped: already exists" if digest in shared else "done"
        assert f"Copying blob {digest[7:19]} {word}" in lines
    assert [x.digest for x in image.layers] == b.layer_digests
    assert len(layer_dirs(runtime)) == len(a.layer_digests) + 1


def test_events(
    src_transport: SourceTransport, runtime: towline.Runtime, test_images: dict[str, PushedImage]
) -> None:
    source = src_transport(test_images["gzip"])
    [image] = runtime.pull(source.name, options=INSECURE)
    before = store_files(runtime.root)
    with pytest.raises(towline.TowlineError) as info:
        runtime.pull(source.missing, options=INSECURE)
    ok, failed = list(runtime.events)[-2:]
    assert (ok.type, ok.name, ok.id, ok.error) == ("pull", source.name, image.id, None)
    assert (failed.type, failed.name, failed.id) == ("pull-error", source.missing, "")
    assert failed.error == str(info.value)
    assert "missing" in failed.error  # the error names what was not found
    assert store_files(runtime.root) == before


def test_pull_without_unpack_keeps_blobs_and_unpacks_on_demand(
    src_transport: SourceTransport,
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    tmp_path: Path,
) -> None:
    pushed = test_images["gzip"]
    source = src_transport(pushed)
    [image] = runtime.pull(source.name, options=towline.PullOptions(tls_verify=False, unpack=False))
    assert layer_dirs(runtime) == []
    for digest in source.layer_digests:
        assert (runtime.root / "blobs/sha256" / digest[7:]).is_file()
    # Image.unpack reads the store only (the registry test proves it with the network down).
    assert rootfs(image.unpack(tmp_path / "rootfs")) == STANDARD_ROOTFS
    assert len(layer_dirs(runtime)) == len(pushed.layers)

    # A pull after a blob-only pull copies no layer again.
    out = io.StringIO()
    runtime.pull(source.name, "always", towline.PullOptions(tls_verify=False, writer=out))
    lines = out.getvalue().splitlines()
    for digest in source.layer_digests:
        assert f"Copying blob {digest[7:19]} skipped: already exists" in lines


# === an index: platform choice (transports that hold one)


@pytest.mark.parametrize(
    ("platform", "expected"),
    [(None, "linux/amd64"), ("linux/arm", "linux/arm/v7")],
    ids=["default", "variant-fallback"],
)
@pytest.mark.parametrize("src_transport", INDEX_SOURCES, indirect=True)
def test_platform_choice_from_an_index(
    src_transport: SourceTransport,
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    platform: str | None,
    expected: str,
) -> None:
    pushed = test_images["multiarch"]
    source = src_transport(pushed)
    options = towline.PullOptions(tls_verify=False, platform=platform)
    [image] = runtime.pull(source.name, options=options)
    chosen = pushed.platforms[expected]
    assert image.platform == expected
    assert f"sha256:{image.id}" == chosen.config_digest
    assert image.names == source.names
    assert image.manifest_digest == chosen.manifest_digest
    assert image.digest == pushed.manifest_digest  # the list digest, as podman records it
    assert [x.digest for x in image.layers] == [x.digest for x in chosen.layers]


@pytest.mark.parametrize("src_transport", INDEX_SOURCES, indirect=True)
def test_platform_not_in_the_index_lists_what_is(
    src_transport: SourceTransport, runtime: towline.Runtime, test_images: dict[str, PushedImage]
) -> None:
    source = src_transport(test_images["multiarch"])
    before = store_files(runtime.root)
    with pytest.raises(towline.PlatformNotFoundError) as info:
        runtime.pull(
            source.name, options=towline.PullOptions(tls_verify=False, platform="linux/s390x")
        )
    message = str(info.value)
    assert 'architecture "s390x"' in message
    for platform in MULTIARCH_PLATFORMS:
        assert platform in message
    assert runtime.list_images() == []
    assert store_files(runtime.root) == before
