"""RegistryClient wiring that needs no registry: endpoint mapping and injected clients."""

from __future__ import annotations

import httpx

import towline
from towline.registry import RegistryClient


def test_docker_io_connects_to_registry_1_and_reports_docker_io() -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200)

    with RegistryClient("docker.io", transport=httpx.MockTransport(handle)) as client:
        client.ping()
        assert client.base_url == "https://registry-1.docker.io"
        assert client.host == "docker.io"
    assert seen == ["https://registry-1.docker.io/v2/"]


def test_an_injected_http_client_is_used_and_left_open() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["docker-distribution-api-version"] == "registry/2.0"
        assert request.headers["user-agent"] == "towline-tests/1"
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})

    http = httpx.Client(transport=httpx.MockTransport(handle))
    with RegistryClient("reg.example", http_client=http, user_agent="towline-tests/1") as client:
        client.ping()  # 401 counts as a live registry
    assert not http.is_closed
    http.close()


def test_the_default_user_agent_names_towline_and_its_version() -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["user-agent"])
        return httpx.Response(200)

    http = httpx.Client(transport=httpx.MockTransport(handle))
    with RegistryClient("reg.example", http_client=http) as client:
        client.ping()
    http.close()
    assert seen == [f"towline/{towline.__version__}"]
