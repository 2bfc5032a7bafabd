"""Registry authentication: WWW-Authenticate parsing and an httpx auth flow.

:class:`BearerChallengeAuth` is an ``httpx.Auth`` generator. It sends the
request; on a 401 it reads the challenge and answers it — HTTP Basic with the
user's credentials, or a Bearer token fetched from the challenge's realm for
scope ``repository:<repo>:pull`` — and sends the request once more. Once a
registry has challenged, later requests carry the answer up front, and tokens
are cached per scope until they expire, so N blob fetches cost one token.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from towline.errors import AuthenticationError, TransportError
from towline.registry.body_limits import MAX_TOKEN_BODY_SIZE, read_at_most
from towline.untrusted_json import UntrustedJSONError, load_object

__all__ = ["BearerChallengeAuth", "Challenge", "basic_authorization", "parse_challenges"]

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"?', re.DOTALL)
_TOKEN68_RE = re.compile(r"([A-Za-z0-9\-._~+/]+=*)[ \t]*(?:,|$)")
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_REPO_PATH_RE = re.compile(r"^/v2/(?P<repo>.+)/(?:manifests|blobs|tags)/[^/]+$")

_MIN_TOKEN_LIFETIME = 60.0


@dataclass(frozen=True)
class Challenge:
    """One challenge of a WWW-Authenticate header; scheme and parameter names lower-cased."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate value into its challenges (RFC 7235).

    Several comma-separated challenges may share one header; parameter values
    are tokens or quoted strings with backslash escapes. Malformed pieces are
    skipped rather than failing, since the server is what it is.
    """
    challenges: list[Challenge] = []
    pos, end = 0, len(header)
    current: Challenge | None = None
    while True:
        while pos < end and header[pos] in " \t,":
            pos += 1
        if pos >= end:
            return challenges
        token = _TOKEN_RE.match(header, pos)
        if token is None:
            pos += 1  # not a token character: skip it and resynchronise
            continue
        after = token.end()
        while after < end and header[after] in " \t":
            after += 1
        if after < end and header[after] == "=" and current is not None:
            value, pos = _read_value(header, after + 1)
            current.params[token.group().lower()] = value
            continue
        current = Challenge(scheme=token.group().lower())
        pos = after
        token68 = _TOKEN68_RE.match(header, pos)
        if token68 is not None:
            # "Negotiate abc==": a token68 in place of parameters.
            current = Challenge(current.scheme, {}, token68.group(1))
            pos = token68.end()
        challenges.append(current)


def _read_value(header: str, pos: int) -> tuple[str, int]:
    while pos < len(header) and header[pos] in " \t":
        pos += 1
    if pos < len(header) and header[pos] == '"':
        quoted = _QUOTED_RE.match(header, pos)
        assert quoted is not None  # the pattern matches any text after a quote
        return _ESCAPE_RE.sub(r"\1", quoted.group(1)), quoted.end()
    token = _TOKEN_RE.match(header, pos)
    if token is None:
        return "", pos
    return token.group(), token.end()


def basic_authorization(username: str, password: str) -> str:
    """The ``Authorization`` value for HTTP Basic."""
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def repository_of(request: httpx.Request) -> str | None:
    """The repository a /v2/<repo>/{manifests,blobs,tags}/… request is about, else None."""
    match = _REPO_PATH_RE.match(request.url.path)
    return match.group("repo") if match else None


@dataclass
class _Attempt:
    """What one request has sent so far: its scopes, and "basic"/"cached"/"fresh"/None."""

    scopes: tuple[str, ...]
    sent: str | None


@dataclass
class _Token:
    value: str
    expires: float


class BearerChallengeAuth(httpx.Auth):
    """Answer registry challenges with Basic credentials or Bearer tokens.

    ``registry`` names the registry in errors; ``credentials`` is ``(user,
    password)`` or None for anonymous pulls; ``token_client`` is the client used
    to reach the token realm (requests go out without this auth). Thread-safe:
    one instance serves every request of a :class:`RegistryClient`.
    """

    def __init__(
        self,
        registry: str,
        credentials: tuple[str, str] | None,
        token_client: httpx.Client,
        *,
        headers: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.credentials = credentials
        self._client = token_client
        self._headers = dict(headers or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, str, tuple[str, ...]], _Token] = {}
        self.token_requests = 0

    # === the flow
    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send ``request``; answer 401 challenges (at most twice) and send it again."""
        repo = repository_of(request)
        scopes = (f"repository:{repo}:pull",) if repo else ()
        attempt = _Attempt(scopes, self._authorize_up_front(request, scopes))
        response = yield request
        # Twice at most: a plain challenge, then an insufficient_scope naming one more scope.
        for _ in range(2):
            if response.status_code != 401 or not self._answer(request, response, attempt):
                return
            response = yield request

    def _answer(self, request: httpx.Request, response: httpx.Response, attempt: _Attempt) -> bool:
        """Put a new answer to the 401's challenge on ``request``; False if there is none."""
        challenge = self.observe(response)
        if challenge is None:
            return False
        if challenge.scheme == "basic":
            if self.credentials is None or attempt.sent == "basic":
                return False
            request.headers["Authorization"] = basic_authorization(*self.credentials)
            attempt.sent = "basic"
            return True
        wanted = attempt.scopes
        extra = challenge.params.get("scope", "")
        if challenge.params.get("error") == "insufficient_scope" and extra not in ("", *wanted):
            wanted = (*wanted, extra)
        elif not wanted and extra:
            wanted = (extra,)
        if wanted == attempt.scopes and attempt.sent == "fresh":
            return False  # a token fetched for this very request was refused: stop here
        renew = wanted == attempt.scopes and attempt.sent == "cached"
        response.read()  # release the connection before talking to the token server
        token = self._token(challenge, wanted, renew=renew)
        request.headers["Authorization"] = f"Bearer {token}"
        attempt.scopes, attempt.sent = wanted, "fresh"
        return True

    def observe(self, response: httpx.Response) -> Challenge | None:
        """Remember the challenge of a 401 (e.g. the ping's) and return the one to answer."""
        challenges = [
            c
            for header in response.headers.get_list("www-authenticate")
            for c in parse_challenges(header)
        ]
        chosen = next((c for c in challenges if c.scheme == "bearer"), None)
        if chosen is None:
            chosen = next((c for c in challenges if c.scheme == "basic"), None)
        if chosen is not None:
            with self._lock:
                self._challenge = chosen
        return chosen

    def _authorize_up_front(self, request: httpx.Request, scopes: tuple[str, ...]) -> str | None:
        """Attach what the last challenge asked for; return "basic", "cached", "fresh" or None."""
        challenge = self._challenge
        if challenge is None or "authorization" in request.headers:
            return None
        if challenge.scheme == "basic":
            if self.credentials is None:
                return None
            request.headers["Authorization"] = basic_authorization(*self.credentials)
            return "basic"
        if not scopes:
            return None
        cached = self._cached(challenge, scopes)
        if cached is not None:
            request.headers["Authorization"] = f"Bearer {cached}"
            return "cached"
        request.headers["Authorization"] = f"Bearer {self._token(challenge, scopes)}"
        return "fresh"

    # === tokens
    def _key(
        self, challenge: Challenge, scopes: tuple[str, ...]
    ) -> tuple[str, str, tuple[str, ...]]:
        return (challenge.params.get("realm", ""), challenge.params.get("service", ""), scopes)

    def _cached(self, challenge: Challenge, scopes: tuple[str, ...]) -> str | None:
        with self._lock:
            token = self._tokens.get(self._key(challenge, scopes))
        if token is not None and token.expires > self._clock():
            return token.value
        return None

    def _token(self, challenge: Challenge, scopes: tuple[str, ...], renew: bool = False) -> str:
        key = self._key(challenge, scopes)
        # One lock around the fetch: concurrent layer downloads then share one token.
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.expires > self._clock() and not renew:
                return token.value
            token = self._fetch(challenge, scopes)
            self._tokens[key] = token
            return token.value

    def _fetch(self, challenge: Challenge, scopes: tuple[str, ...]) -> _Token:
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("http://", "https://")):
            raise AuthenticationError(
                f"registry {self.registry} sent a Bearer challenge without a usable realm "
                f"({realm!r}); the registry's auth configuration is broken"
            )
        params: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        params.extend(("scope", scope) for scope in scopes)
        auth: httpx.Auth | None = None
        if self.credentials is not None:
            params.insert(0, ("account", self.credentials[0]))
            auth = httpx.BasicAuth(*self.credentials)
        self.token_requests += 1
        request = self._client.build_request(
            "GET", realm, params=tuple(params), headers=self._headers
        )
        response = self._client.send(request, auth=auth, stream=True, follow_redirects=True)
        with closing(response):
            self._check_token_status(response, realm)
            # At most 1 MiB, as c/image's iolimits.MaxAuthTokenBodySize.
            body = read_at_most(
                response,
                MAX_TOKEN_BODY_SIZE,
                f"requesting a bearer token from {realm}",
                "the token server",
            )
        return self._parse_token(body, realm)

    def _check_token_status(self, response: httpx.Response, realm: str) -> None:
        if response.status_code == 401:
            who = f"user {self.credentials[0]!r}" if self.credentials else "anonymous access"
            raise AuthenticationError(
                "unable to retrieve auth token: invalid username/password: "
                f"{realm} refused {who} for {self.registry}; check --creds or the auth file"
            )
        if response.status_code == 429:
            raise TransportError(
                f"requesting a bearer token from {realm}: too many requests to registry",
                slug="too_many_requests",
            )
        if response.status_code != 200:
            raise TransportError(
                f"requesting a bearer token from {realm}: received unexpected HTTP status: "
                f"{response.status_code} {response.reason_phrase}",
                slug="http_status",
            )

    def _parse_token(self, body: bytes, realm: str) -> _Token:
        try:
            document = load_object(body)
        except UntrustedJSONError as exc:
            raise AuthenticationError(
                f"token server {realm} answered with invalid JSON: the answer {exc}"
            ) from exc
        value = document.get("token") or document.get("access_token")
        if not isinstance(value, str) or not value:
            raise AuthenticationError(f"token server {realm} answered without a token")
        expires_in = document.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 0.0
        lifetime = max(lifetime, _MIN_TOKEN_LIFETIME)
        issued = self._clock()
        issued_at = document.get("issued_at")
        if isinstance(issued_at, str) and issued_at:
            try:
                issued = datetime.fromisoformat(issued_at).timestamp()
            except (ValueError, OverflowError, OSError):
                issued = self._clock()  # an unreadable date: count from now, as c/image does
        return _Token(value=value, expires=issued + lifetime)
