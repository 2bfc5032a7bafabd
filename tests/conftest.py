"""Shared fixtures: real registries on 127.0.0.1, a token server, a fault proxy, test images.

The logic lives in ``tests/support/``; this file only wires it to pytest scopes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.fault_proxy import FaultProxy
from support.images import standard_images
from support.registry import PushedImage, RegistryServer, push_named, push_standard_images
from support.token_server import TokenServer
from support.tools import require_tool


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """An open registry (no auth), shared by the whole session."""
    executable = require_tool("docker-registry")
    with RegistryServer.open_access(
        tmp_path_factory.mktemp("registry"), executable=executable
    ) as server:
        yield server


@pytest.fixture(scope="session")
def test_images(registry: RegistryServer) -> dict[str, PushedImage]:
    """The standard images (gzip, zstd, docker, multiarch, shared-a, shared-b) in ``registry``."""
    registry.pushed.update(push_standard_images(registry))
    return registry.pushed


@pytest.fixture(scope="session")
def basic_auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry behind Basic auth (alice / s3cret), with ``.pushed["gzip"]`` at test/gzip."""
    executable = require_tool("docker-registry")
    with RegistryServer.basic_auth(
        tmp_path_factory.mktemp("basic-registry"), executable=executable
    ) as server:
        server.pushed["gzip"] = push_named(server, "test/gzip", standard_images()["gzip"])
        yield server


@pytest.fixture(scope="session")
def _token_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    with TokenServer(tmp_path_factory.mktemp("token-server")) as server:
        yield server


@pytest.fixture
def token_server(_token_server_session: TokenServer) -> Iterator[TokenServer]:
    """The token server, with its request log, grants and expires_in reset around each test."""
    _token_server_session.reset()
    yield _token_server_session
    _token_server_session.reset()


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, _token_server_session: TokenServer
) -> Iterator[RegistryServer]:
    """A registry trusting the token server; "gzip" is pushed as public/gzip and private/gzip.

    ``.pushed["gzip"]`` is public/gzip (anonymous pull), ``.pushed["private-gzip"]`` is
    private/gzip (alice and bob may pull).
    """
    executable = require_tool("docker-registry")
    with RegistryServer.token_auth(
        tmp_path_factory.mktemp("token-registry"), _token_server_session, executable=executable
    ) as server:
        image = standard_images()["gzip"]
        server.pushed["gzip"] = push_named(server, "public/gzip", image)
        server.pushed["private-gzip"] = push_named(server, "private/gzip", image)
        yield server


@pytest.fixture
def fault_proxy(registry: RegistryServer) -> Iterator[FaultProxy]:
    """A fault proxy on 127.0.0.1 in front of ``registry``, fresh for each test."""
    with FaultProxy(registry.host) as proxy:
        yield proxy


@pytest.fixture
def other_host_proxy(registry: RegistryServer) -> Iterator[FaultProxy]:
    """A second proxy in front of ``registry`` on 127.0.0.2: a different host for redirects."""
    with FaultProxy(registry.host, bind_host="127.0.0.2") as proxy:
        yield proxy
