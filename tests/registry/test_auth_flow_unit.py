"""BearerChallengeAuth's decisions, driven by a scripted in-process transport.

The real registries in test_auth.py cover the common paths; these cover the corners a
stock registry will not produce on demand (a revoked token, an extra scope).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from towline.errors import AuthenticationError, TransportError
from towline.registry.auth import BearerChallengeAuth

REALM = "https://auth.example/token"
CHALLENGE = f'Bearer realm="{REALM}",service="reg"'
URL = "https://reg.example/v2/app/manifests/latest"

Handler = Callable[[httpx.Request], httpx.Response]


class World:
    """A token server and a registry with a list of valid tokens."""

    def __init__(self) -> None:
        self.valid: set[str] = {"t1"}
        self.issued = 0
        self.token_requests: list[httpx.Request] = []
        self.registry_requests: list[httpx.Request] = []
        self.registry: Handler = self.default_registry

    def default_registry(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        if auth.removeprefix("Bearer ") in self.valid:
            return httpx.Response(200, text="ok")
        return httpx.Response(401, headers={"WWW-Authenticate": CHALLENGE})

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            self.token_requests.append(request)
            self.issued += 1
            return httpx.Response(200, json={"token": f"t{self.issued}", "expires_in": 300})
        self.registry_requests.append(request)
        return self.registry(request)


@pytest.fixture
def world() -> World:
    return World()


def client_for(world: World) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(world.handle))


def test_a_refused_cached_token_is_renewed_once(world: World) -> None:
    with client_for(world) as http:
        auth = BearerChallengeAuth("reg.example", None, http)
        assert http.get(URL, auth=auth).status_code == 200  # challenge, token t1, retry
        world.valid = {"t2"}  # t1 revoked
        assert http.get(URL, auth=auth).status_code == 200  # t1 refused -> t2
        assert world.issued == 2
        world.valid = set()  # nothing works: one renewal, then the 401 is the answer
        assert http.get(URL, auth=auth).status_code == 401
        assert world.issued == 3


def test_insufficient_scope_adds_the_scope_the_registry_asks_for(world: World) -> None:
    def registry(request: httpx.Request) -> httpx.Response:
        sent = request.headers.get("authorization")
        if sent == "Bearer t2":
            return httpx.Response(200)
        if sent is None:
            return httpx.Response(401, headers={"WWW-Authenticate": CHALLENGE})
        return httpx.Response(
            401,
            headers={
                "WWW-Authenticate": CHALLENGE + ',scope="repository:base/img:pull",'
                'error="insufficient_scope"'
            },
        )

    world.registry = registry
    with client_for(world) as http:
        auth = BearerChallengeAuth("reg.example", None, http)
        assert http.get(URL, auth=auth).status_code == 200
    assert len(world.registry_requests) == 3  # anonymous, t1, t2
    scopes = [r.url.params.get_list("scope") for r in world.token_requests]
    assert scopes == [
        ["repository:app:pull"],
        ["repository:app:pull", "repository:base/img:pull"],
    ]


def test_token_requests_carry_service_account_and_basic_credentials(world: World) -> None:
    with client_for(world) as http:
        auth = BearerChallengeAuth("reg.example", ("alice", "s3cret"), http)
        http.get(URL, auth=auth)
    (request,) = world.token_requests
    assert request.url.params["service"] == "reg"
    assert request.url.params["account"] == "alice"
    assert request.url.params["scope"] == "repository:app:pull"
    assert request.headers["authorization"] == "Basic YWxpY2U6czNjcmV0"


def test_basic_challenge_without_credentials_returns_the_401(world: World) -> None:
    world.registry = lambda request: httpx.Response(
        401, headers={"WWW-Authenticate": 'Basic realm="r"'}
    )
    with client_for(world) as http:
        auth = BearerChallengeAuth("reg.example", None, http)
        assert http.get(URL, auth=auth).status_code == 401
    assert len(world.registry_requests) == 1


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (httpx.Response(401), AuthenticationError, "unable to retrieve auth token"),
        (httpx.Response(429), TransportError, "too many requests to registry"),
        (httpx.Response(500), TransportError, "received unexpected HTTP status: 500"),
        (httpx.Response(200, text="nope"), AuthenticationError, "invalid JSON"),
        (httpx.Response(200, json={"expires_in": 5}), AuthenticationError, "without a token"),
    ],
)
def test_token_server_failures(
    world: World, answer: httpx.Response, error: type[Exception], text: str
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            return answer
        return world.default_registry(request)

    with httpx.Client(transport=httpx.MockTransport(handle)) as http:
        auth = BearerChallengeAuth("reg.example", None, http)
        with pytest.raises(error, match=text):
            http.get(URL, auth=auth)


def test_a_challenge_without_a_realm_is_reported(world: World) -> None:
    world.registry = lambda request: httpx.Response(
        401, headers={"WWW-Authenticate": 'Bearer service="reg"'}
    )
    with client_for(world) as http:
        auth = BearerChallengeAuth("reg.example", None, http)
        with pytest.raises(AuthenticationError, match="without a usable realm"):
            http.get(URL, auth=auth)


def test_access_token_and_issued_at_are_understood(world: World) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            world.issued += 1
            body = {"access_token": "t1", "expires_in": 3600, "issued_at": "2000-01-01T00:00:00Z"}
            return httpx.Response(200, json=body)
        return world.default_registry(request)

    with httpx.Client(transport=httpx.MockTransport(handle)) as http:
        auth = BearerChallengeAuth("reg.example", None, http)
        assert http.get(URL, auth=auth).status_code == 200
        # issued in 2000 and valid for an hour: long expired, so fetched again
        assert http.get(URL, auth=auth).status_code == 200
    assert world.issued == 2
