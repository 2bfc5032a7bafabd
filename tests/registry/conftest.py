"""Fixtures for the registry client tests: client factory, a hashing sink, extra images."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from support.fault_proxy import FaultProxy
from support.images import TarBuilder, build_image, build_index, mixed_blob
from support.registry import PushedImage, RegistryServer, push_image, push_named
from towline.registry import RegistryClient

BIG_BLOB_SIZE = 3 * 1024 * 1024 + 12345
TAGS = ["t0", "t1", "t2", "t3", "t4"]


class HashingSink:
    """A stand-in for the native sinks: hashes what it is given and counts it."""

    def __init__(self, prefill: bytes = b"") -> None:
        self._hash = hashlib.sha256()
        self.bytes_written = 0
        self.writes: list[int] = []
        if prefill:
            self.write(prefill)
            self.writes.clear()

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self.bytes_written += len(data)
        self.writes.append(len(data))

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


@dataclass
class Sleeps:
    """Records the delays a client would have slept."""

    delays: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


ClientFactory = Callable[..., RegistryClient]


@pytest.fixture
def make_client(sleeps: Sleeps) -> Iterator[ClientFactory]:
    """Build RegistryClients for 127.0.0.1 test registries (plain HTTP, no waiting)."""
    clients: list[RegistryClient] = []

    def make(host: str, **kwargs: Any) -> RegistryClient:
        options: dict[str, Any] = {
            "tls_verify": False,
            "trust_env": False,
            "retry_delay": 0.0,
            "sleep": sleeps,
            "timeout": 10.0,
        }
        options.update(kwargs)
        client = RegistryClient(host, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@dataclass(frozen=True)
class ExtraImages:
    big: PushedImage
    big_blob: bytes
    docker_list: PushedImage
    tags_repo: str


@pytest.fixture(scope="session")
def extra_images(registry: RegistryServer) -> ExtraImages:
    """A multi-MiB single-layer image, a Docker manifest list and a repo with several tags."""
    big_tar = TarBuilder().add_file("big.bin", mixed_blob(BIG_BLOB_SIZE, "towline-big")).bytes()
    big = push_named(registry, "test/big", build_image([big_tar], "none"))
    docker_images = [
        build_image([TarBuilder().add_file("p", p.encode()).bytes()], platform=p, media="docker")
        for p in ("linux/amd64", "linux/arm64/v8")
    ]
    docker_list = push_named(registry, "test/docker-list", build_index(docker_images, "docker"))
    small = build_image([TarBuilder().add_file("x", b"x").bytes()], "gzip")
    for tag in TAGS:
        push_image(registry, "test/tags", tag, small)
    return ExtraImages(big, big_tar, docker_list, "test/tags")


@pytest.fixture
def auth_proxy(basic_auth_registry: RegistryServer) -> Iterator[FaultProxy]:
    """A fault proxy on 127.0.0.1 in front of the Basic-auth registry."""
    with FaultProxy(basic_auth_registry.host) as proxy:
        yield proxy
