"""``docker-daemon:`` against a fake Docker Engine on a unix socket in the test's directory.

The engine serves ``docker save`` streams made by skopeo and by towline's own
``docker-archive:`` destination; ``DOCKER_HOST`` reaches the runtime through its
``env``, never through ``os.environ``.
"""

from __future__ import annotations

import re
import socket as sockets
from collections.abc import Iterator
from pathlib import Path

import pytest

import towline
from support.docker_archives import archive_image, docker_archive
from support.fake_docker_engine import FakeDockerEngine
from support.images import TarBuilder
from support.registry import PushedImage
from support.tools import skip_or_fail
from towline.errors import InvalidReferenceError, ManifestUnknownError, TransportError
from towline.transports import parse_image_name

from .conftest import store_files
from .peers import Peers

SMALL = archive_image([TarBuilder().add_file("small.txt", b"small\n").bytes()])
OTHER = archive_image([TarBuilder().add_file("other.txt", b"other\n").bytes()])


@pytest.fixture
def engine() -> Iterator[FakeDockerEngine]:
    with FakeDockerEngine() as fake:
        yield fake


@pytest.fixture
def daemon_runtime(
    tmp_path: Path, env: dict[str, str], engine: FakeDockerEngine
) -> Iterator[towline.Runtime]:
    """A runtime whose environment points DOCKER_HOST at the fake engine."""
    with towline.Runtime(tmp_path / "store", env={**env, "DOCKER_HOST": engine.docker_host}) as rt:
        yield rt


def leftovers(runtime: towline.Runtime) -> list[Path]:
    return list((runtime.root / "tmp").iterdir())


# === references


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("docker-daemon:busybox:latest", "docker-daemon:busybox:latest"),
        ("docker-daemon:docker.io/library/busybox:1", "docker-daemon:busybox:1"),
        ("docker-daemon:quay.io/a/b:2", "docker-daemon:quay.io/a/b:2"),
        ("docker-daemon:busybox@sha256:" + "a" * 64, "docker-daemon:busybox@sha256:" + "a" * 64),
        ("docker-daemon:sha256:" + "b" * 64, "docker-daemon:sha256:" + "b" * 64),
    ],
)
def test_references_parse_as_c_image(name: str, text: str) -> None:
    assert str(parse_image_name(name)) == text


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("docker-daemon:busybox", "has neither a tag nor a digest"),
        ("docker-daemon:busybox:1@sha256:" + "a" * 64, "both a tag and digest"),
        ("docker-daemon:sha512:" + "c" * 128, "only digest algorithm sha256 accepted"),
        ("docker-daemon:sha256:abc", "The sha256 repository name is reserved"),
        ("docker-daemon:Busybox:1", "must be lowercase"),
        ("docker-daemon:", "the name is empty"),
    ],
)
def test_malformed_references(name: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError, match=re.escape(message)):
        parse_image_name(name)


# === pulls


def test_pull_by_name_from_a_save_stream_skopeo_made(
    daemon_runtime: towline.Runtime,
    engine: FakeDockerEngine,
    test_images: dict[str, PushedImage],
    peers: Peers,
    tmp_path: Path,
) -> None:
    pushed = test_images["gzip"]
    archive = tmp_path / "saved.tar"
    peers.skopeo_copy(
        f"docker://{pushed.reference}", f"docker-archive:{archive}:example.com/app:v1"
    )
    engine.add(archive, "example.com/app:v1")

    [image] = daemon_runtime.pull("docker-daemon:example.com/app:v1")
    assert f"sha256:{image.id}" == pushed.config_digest
    assert [layer.diff_id for layer in image.layers] == [x.diff_id for x in pushed.layers]
    assert image.names == ["example.com/app:v1"]
    # The name reached the engine escaped as one path segment.
    assert engine.requests == ["/images/example.com%2Fapp%3Av1/get"]
    assert leftovers(daemon_runtime) == []


def test_a_docker_hub_name_is_normalized_and_an_id_stays_unnamed(
    daemon_runtime: towline.Runtime, engine: FakeDockerEngine, tmp_path: Path
) -> None:
    # A stream towline's own docker-archive destination wrote.
    source = docker_archive([(SMALL, ["small:1"])]).pack(tmp_path / "src.tar")
    saved = tmp_path / "saved.tar"
    daemon_runtime.copy(f"docker-archive:{source}", f"docker-archive:{saved}:busybox:1.36")
    engine.add(saved, "busybox:1.36", SMALL.config_digest)

    [image] = daemon_runtime.pull("docker-daemon:busybox:1.36")
    assert image.names == ["docker.io/library/busybox:1.36"]
    assert f"sha256:{image.id}" == SMALL.config_digest
    daemon_runtime.remove_image(image.id)

    [by_id] = daemon_runtime.pull(f"docker-daemon:{SMALL.config_digest}")
    assert f"sha256:{by_id.id}" == SMALL.config_digest
    assert by_id.names == []


def test_an_unknown_image_is_manifest_unknown(
    daemon_runtime: towline.Runtime, engine: FakeDockerEngine
) -> None:
    before = store_files(daemon_runtime.root)
    with pytest.raises(ManifestUnknownError, match="No such image: nope:1") as info:
        daemon_runtime.pull("docker-daemon:nope:1")
    assert "image not known to the Docker engine" in str(info.value)
    assert engine.socket.name in str(info.value)
    assert store_files(daemon_runtime.root) == before
    assert leftovers(daemon_runtime) == []


def test_a_stream_cut_short_changes_nothing(
    daemon_runtime: towline.Runtime, engine: FakeDockerEngine, tmp_path: Path
) -> None:
    archive = docker_archive([(OTHER, ["other:1"])]).pack(tmp_path / "a.tar")
    engine.add(archive, "other:1")
    engine.truncate_after = archive.stat().st_size // 2
    before = store_files(daemon_runtime.root)
    with pytest.raises(TransportError, match="docker-daemon:other:1"):
        daemon_runtime.pull("docker-daemon:other:1")
    assert store_files(daemon_runtime.root) == before
    assert leftovers(daemon_runtime) == []


def test_an_archive_of_several_images_from_the_engine_is_refused(
    daemon_runtime: towline.Runtime, engine: FakeDockerEngine, tmp_path: Path
) -> None:
    archive = docker_archive([(SMALL, ["small:1"]), (OTHER, ["other:1"])]).pack(tmp_path / "a.tar")
    engine.add(archive, "small:1")
    with pytest.raises(TransportError, match="expected 1 item, got 2"):
        daemon_runtime.pull("docker-daemon:small:1")
    assert leftovers(daemon_runtime) == []


# === reaching the engine


def test_a_missing_socket_names_it_and_docker_host(tmp_path: Path, env: dict[str, str]) -> None:
    socket = tmp_path / "nowhere.sock"
    runtime = towline.Runtime(tmp_path / "store", env={**env, "DOCKER_HOST": f"unix://{socket}"})
    with runtime, pytest.raises(TransportError, match="cannot reach the Docker engine") as info:
        runtime.pull("docker-daemon:busybox:1")
    message = str(info.value)
    assert str(socket) in message and "DOCKER_HOST" in message
    assert info.value.slug == "daemon_unreachable"


def test_the_default_socket_is_used_without_docker_host(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with towline.Runtime(tmp_path / "store", env=env) as rt:
        if Path("/var/run/docker.sock").exists():
            skip_or_fail("a Docker engine runs here; the test needs its absence")
        with pytest.raises(TransportError, match=re.escape("/var/run/docker.sock")):
            rt.pull("docker-daemon:busybox:1")


def test_a_socket_nobody_listens_on(tmp_path: Path, env: dict[str, str]) -> None:
    path = Path("/tmp") / f"tl-dead-{tmp_path.name[-20:]}.sock"
    dead = sockets.socket(sockets.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # bound, never listening: connect is refused
    try:
        with (
            towline.Runtime(tmp_path / "store", env={**env, "DOCKER_HOST": f"unix://{path}"}) as rt,
            pytest.raises(TransportError, match="cannot reach the Docker engine") as info,
        ):
            rt.pull("docker-daemon:busybox:1")
        assert info.value.slug == "daemon_unreachable"
        assert leftovers(rt) == []
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.parametrize("host", ["tcp://127.0.0.1:2375", "ssh://me@host", "/var/run/docker.sock"])
def test_other_engine_addresses_are_refused_clearly(
    host: str, tmp_path: Path, env: dict[str, str]
) -> None:
    runtime = towline.Runtime(tmp_path / "store", env={**env, "DOCKER_HOST": host})
    with (
        runtime,
        pytest.raises(TransportError, match=re.escape("unix:///path/to/docker.sock")) as info,
    ):
        runtime.pull("docker-daemon:busybox:1")
    assert host in str(info.value)
    assert info.value.slug == "daemon_unsupported"


def test_the_daemon_is_no_destination(daemon_runtime: towline.Runtime, tmp_path: Path) -> None:
    source = docker_archive([(SMALL, ["small:1"])]).pack(tmp_path / "src.tar")
    with pytest.raises(TransportError, match="docker load"):
        daemon_runtime.copy(f"docker-archive:{source}", "docker-daemon:small:1")
