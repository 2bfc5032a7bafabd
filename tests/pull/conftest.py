"""Fixtures for pull tests: an isolated Runtime, unique images, registries.conf files."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import towline
from support.images import TarBuilder, build_image
from support.registry import PushedImage, RegistryServer, push_named
from support.source_transports import SOURCE_TRANSPORTS, SourceMaker, SourceTransport

_unique = itertools.count()


@pytest.fixture
def config_root(tmp_path: Path) -> Path:
    """TOWLINE_CONFIG_ROOT: the "system" config tree; tests write etc/containers/… here."""
    root = tmp_path / "config-root"
    (root / "etc/containers").mkdir(parents=True)
    return root


@pytest.fixture
def env(tmp_path: Path, config_root: Path) -> dict[str, str]:
    """An environment in which no host configuration is read."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "HOME": str(home),
        "TOWLINE_CONFIG_ROOT": str(config_root),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }


@pytest.fixture
def runtime(tmp_path: Path, env: dict[str, str]) -> Iterator[towline.Runtime]:
    with towline.Runtime(tmp_path / "store", env=env) as rt:
        yield rt


@pytest.fixture
def insecure() -> towline.PullOptions:
    """The options every test registry needs (plain HTTP on 127.0.0.1)."""
    return towline.PullOptions(tls_verify=False)


def unique_layers(label: str) -> list[bytes]:
    """Two layers whose content (hence digests) no other test shares."""
    return [
        TarBuilder().add_dir("data").add_file("data/label", label.encode()).bytes(),
        TarBuilder().add_file("data/more", os.urandom(4096) + label.encode()).bytes(),
    ]


@pytest.fixture
def push_unique(registry: RegistryServer) -> Callable[..., PushedImage]:
    """Push a fresh image (own repository unless given, own blobs) and describe it."""

    def push(repo: str | None = None, tag: str = "latest", **build: object) -> PushedImage:
        n = next(_unique)
        layers = unique_layers(f"unique-{n}-{os.getpid()}-{os.urandom(4).hex()}")
        image = build_image(layers, **build)  # type: ignore[arg-type]
        return push_named(registry, repo or f"unique/img{n}", image, tag)

    return push


def store_files(root: Path) -> set[str]:
    """Every file and directory in a store's blobs/ and layers/ (its visible content)."""
    found = set()
    for part in ("blobs", "layers"):
        for dirpath, dirnames, filenames in os.walk(root / part):
            for name in dirnames + filenames:
                found.add(str(Path(dirpath, name).relative_to(root)))
    return found


# === one test down every source transport


@pytest.fixture(scope="session")
def source_maker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SourceMaker]:
    """Pushed images in every source transport, each made once per session (see support)."""
    maker = SourceMaker(tmp_path_factory.mktemp("sources"))
    yield maker
    maker.close()


@pytest.fixture(params=SOURCE_TRANSPORTS)
def src_transport(request: pytest.FixtureRequest, source_maker: SourceMaker) -> SourceTransport:
    """Runs a test once per source transport: ``src_transport(pushed)`` is that image there.

    The runtime's env must carry ``source_maker.env`` (DOCKER_HOST) for docker-daemon.
    A test of what only some transports hold overrides the params with
    ``@pytest.mark.parametrize("src_transport", [...], indirect=True)``.
    """
    return SourceTransport(request.param, source_maker)
