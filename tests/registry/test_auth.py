"""Basic and Bearer token auth against real registries (htpasswd, and a token server)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from support.fault_proxy import FaultProxy
from support.registry import RegistryServer
from support.token_server import TokenServer
from towline.errors import AuthenticationError
from towline.manifest import MANIFEST_ACCEPT
from towline.registry.auth import BearerChallengeAuth

from .conftest import ClientFactory, HashingSink

ALICE = ("alice", "s3cret")
BOB = ("bob", "hunter2")


def pull_everything(client: object, repo: str, image: object) -> None:
    """Manifest, config and every layer, as a pull would fetch them."""
    from support.registry import PushedImage
    from towline.registry import RegistryClient

    assert isinstance(client, RegistryClient)
    assert isinstance(image, PushedImage)
    assert image.config_digest is not None
    assert client.get_manifest(repo, image.tag).digest == image.manifest_digest
    client.get_blob(repo, image.config_digest, 1 << 20)
    for layer in image.layers:
        sink = HashingSink()
        client.copy_blob(repo, layer.digest, layer.size, sink)
        assert sink.digest == layer.digest


# === Basic (htpasswd)


def test_basic_auth_with_credentials(
    basic_auth_registry: RegistryServer, make_client: ClientFactory
) -> None:
    image = basic_auth_registry.pushed["gzip"]
    client = make_client(basic_auth_registry.host, credentials=ALICE)
    pull_everything(client, image.repo, image)


def test_basic_auth_is_sent_up_front_after_the_first_challenge(
    auth_proxy: FaultProxy, basic_auth_registry: RegistryServer, make_client: ClientFactory
) -> None:
    image = basic_auth_registry.pushed["gzip"]
    client = make_client(auth_proxy.host, credentials=ALICE)
    pull_everything(client, image.repo, image)
    api = [e for e in auth_proxy.log if e.path != "/v2/"]
    assert all(e.status in (200, 307) for e in api)  # no 401 round trips
    assert all(e.headers["authorization"].startswith("Basic ") for e in api)
    ping = [e for e in auth_proxy.log if e.path == "/v2/"]
    assert [(e.status, "authorization" in e.headers) for e in ping] == [(401, False)]


def test_basic_auth_without_credentials(
    basic_auth_registry: RegistryServer, make_client: ClientFactory
) -> None:
    client = make_client(basic_auth_registry.host)
    with pytest.raises(AuthenticationError) as info:
        client.get_manifest("test/gzip", "latest")
    message = str(info.value)
    assert message.startswith(f"reading manifest latest in {basic_auth_registry.host}/test/gzip: ")
    assert "--creds user:pass or an auth file" in message
    assert info.value.slug == "unauthorized"


def test_basic_auth_with_a_wrong_password(
    basic_auth_registry: RegistryServer, make_client: ClientFactory
) -> None:
    client = make_client(basic_auth_registry.host, credentials=("alice", "wrong"))
    with pytest.raises(AuthenticationError, match="check the credentials") as info:
        client.get_manifest("test/gzip", "latest")
    assert f"{basic_auth_registry.host}/test/gzip" in str(info.value)


# === Bearer tokens


def test_anonymous_token_for_a_public_repository(
    token_registry: RegistryServer, token_server: TokenServer, make_client: ClientFactory
) -> None:
    image = token_registry.pushed["gzip"]
    client = make_client(token_registry.host)
    pull_everything(client, image.repo, image)
    assert [(r.account, r.scopes, r.status) for r in token_server.requests] == [
        (None, ("repository:public/gzip:pull",), 200)
    ]
    assert token_server.requests[0].service == token_server.service


def test_token_with_credentials_is_fetched_once_for_many_requests(
    token_registry: RegistryServer, token_server: TokenServer, make_client: ClientFactory
) -> None:
    image = token_registry.pushed["private-gzip"]
    client = make_client(token_registry.host, credentials=BOB)
    pull_everything(client, image.repo, image)
    pull_everything(client, image.repo, image)
    assert [(r.account, r.scopes) for r in token_server.requests] == [
        ("bob", ("repository:private/gzip:pull",))
    ]


def test_concurrent_downloads_share_one_token(
    token_registry: RegistryServer, token_server: TokenServer, make_client: ClientFactory
) -> None:
    image = token_registry.pushed["private-gzip"]
    client = make_client(token_registry.host, credentials=ALICE)
    client.ping()

    def fetch(index: int) -> str:
        layer = image.layers[index % len(image.layers)]
        sink = HashingSink()
        client.copy_blob(image.repo, layer.digest, layer.size, sink)
        return sink.digest

    with ThreadPoolExecutor(max_workers=6) as pool:
        digests = list(pool.map(fetch, range(12)))
    assert digests == [image.layers[i % len(image.layers)].digest for i in range(12)]
    assert len(token_server.requests) == 1


def test_one_token_per_repository_scope(
    token_registry: RegistryServer, token_server: TokenServer, make_client: ClientFactory
) -> None:
    client = make_client(token_registry.host, credentials=ALICE)
    client.get_manifest("public/gzip", "latest")
    client.get_manifest("private/gzip", "latest")
    client.get_manifest("public/gzip", "latest")
    assert [r.scopes for r in token_server.requests] == [
        ("repository:public/gzip:pull",),
        ("repository:private/gzip:pull",),
    ]


def test_anonymous_pull_of_a_private_repository_is_refused(
    token_registry: RegistryServer, token_server: TokenServer, make_client: ClientFactory
) -> None:
    client = make_client(token_registry.host)
    with pytest.raises(AuthenticationError) as info:
        client.get_manifest("private/gzip", "latest")
    message = str(info.value)
    assert message.startswith(f"reading manifest latest in {token_registry.host}/private/gzip: ")
    assert "--creds user:pass" in message


def test_a_wrong_password_is_refused_by_the_token_server(
    token_registry: RegistryServer, token_server: TokenServer, make_client: ClientFactory
) -> None:
    client = make_client(token_registry.host, credentials=("alice", "wrong"))
    with pytest.raises(
        AuthenticationError, match=r"^unable to retrieve auth token: invalid username/password"
    ) as info:
        client.get_manifest("private/gzip", "latest")
    assert "'alice'" in str(info.value)
    assert [r.status for r in token_server.requests] == [401]


def test_a_user_without_access_gets_insufficient_scope(
    token_registry: RegistryServer, token_server: TokenServer, make_client: ClientFactory
) -> None:
    client = make_client(token_registry.host, credentials=BOB)
    with pytest.raises(AuthenticationError, match="check the credentials"):
        client.get_manifest("secret/app", "latest")


def test_tokens_expire_by_issued_at_plus_expires_in(
    token_registry: RegistryServer, token_server: TokenServer
) -> None:
    token_server.expires_in = 120
    now = [time.time()]
    url = f"{token_registry.url}/v2/public/gzip/manifests/latest"
    with httpx.Client(trust_env=False, headers={"Accept": MANIFEST_ACCEPT}) as http:
        auth = BearerChallengeAuth(token_registry.host, None, http, clock=lambda: now[0])
        for _ in range(2):
            assert http.get(url, auth=auth).status_code == 200
        assert len(token_server.requests) == 1
        now[0] += 110  # still inside the lifetime
        assert http.get(url, auth=auth).status_code == 200
        assert len(token_server.requests) == 1
        now[0] += 20  # past issued_at + 120
        assert http.get(url, auth=auth).status_code == 200
        assert len(token_server.requests) == 2


def test_short_token_lifetimes_are_raised_to_a_minute(
    token_registry: RegistryServer, token_server: TokenServer
) -> None:
    token_server.expires_in = 5
    now = [time.time()]
    url = f"{token_registry.url}/v2/public/gzip/manifests/latest"
    with httpx.Client(trust_env=False, headers={"Accept": MANIFEST_ACCEPT}) as http:
        auth = BearerChallengeAuth(token_registry.host, None, http, clock=lambda: now[0])
        assert http.get(url, auth=auth).status_code == 200
        now[0] += 30
        assert http.get(url, auth=auth).status_code == 200
        assert len(token_server.requests) == 1
