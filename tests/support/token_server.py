"""A Docker token server on 127.0.0.1 whose signed JWTs a distribution 2.8 registry trusts.

``GET /token?service=…&scope=repository:<name>:pull,push&account=…`` with optional Basic
auth answers ``{"token", "access_token", "expires_in", "issued_at"}``. Tokens are ES256
JWTs whose header carries the signing certificate in ``x5c``; that self-signed
certificate is the registry's ``auth.token.rootcertbundle`` (distribution 2.8 verifies
the ``x5c`` chain against it, see registry/auth/token/token.go). Like Docker Hub, a
request for more than the account may do still gets a token, with only the granted
actions: the registry then answers 401 ``insufficient_scope``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import fnmatch
import json
import re
import secrets
import threading
import time
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Grant:
    """``account`` (None: anyone, even anonymous) may do ``actions`` on repositories
    matching the glob ``repositories`` (``"*"``, ``"private/*"``)."""

    account: str | None
    repositories: str
    actions: frozenset[str]


DEFAULT_USERS: Mapping[str, str] = {"alice": "s3cret", "bob": "hunter2"}
DEFAULT_GRANTS: tuple[Grant, ...] = (
    Grant("alice", "*", frozenset({"pull", "push", "delete"})),
    Grant("bob", "private/*", frozenset({"pull"})),
    Grant(None, "public/*", frozenset({"pull"})),
)


class TokenRequest(NamedTuple):
    """One request the server answered, for assertions ("one token per scope")."""

    account: str | None  # the authenticated user, None when anonymous or refused
    scopes: tuple[str, ...]
    service: str
    status: int
    granted: tuple[tuple[str, tuple[str, ...]], ...]  # (repository, actions) in the token


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact_b64(value: object) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


class TokenSigner:
    """An ES256 key and its self-signed certificate (the registry's root bundle)."""

    def __init__(self, common_name: str = "towline test token issuer") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self._x5c = base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER))

    def certificate_pem(self) -> bytes:
        """The certificate in PEM, as ``rootcertbundle`` wants it."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, claims: Mapping[str, object]) -> str:
        """A compact JWS of ``claims``; the signature is raw r||s as JWS ES256 requires."""
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c.decode()]}
        signing_input = f"{_compact_b64(header)}.{_compact_b64(claims)}"
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def parse_scope(scope: str) -> tuple[str, str, tuple[str, ...]] | None:
    """``"repository:a/b:pull,push"`` -> ``("repository", "a/b", ("pull", "push"))``."""
    kind, _, rest = scope.partition(":")
    name, sep, actions = rest.rpartition(":")
    if not kind or not sep or not name:
        return None
    return kind.split("(")[0], name, tuple(a for a in actions.split(",") if a)


def parse_bearer_challenge(header: str) -> dict[str, str] | None:
    """The parameters of a ``WWW-Authenticate: Bearer k="v",…`` header, or None."""
    scheme, _, params = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', params)}


class TokenServer:
    """The token endpoint; configure ``users``, ``grants`` and ``expires_in`` at any time."""

    def __init__(
        self,
        workdir: Path,
        *,
        service: str = "towline-test-registry",
        issuer: str = "towline-test-issuer",
        users: Mapping[str, str] = DEFAULT_USERS,
        grants: Iterable[Grant] = DEFAULT_GRANTS,
        expires_in: int = 300,
    ) -> None:
        self.service, self.issuer = service, issuer
        self._defaults = (dict(users), tuple(grants), expires_in)
        self.users, self.grants, self.expires_in = dict(users), list(grants), expires_in
        self.signer = TokenSigner()
        self.cert_path = workdir / "token-root.pem"
        self.cert_path.write_bytes(self.signer.certificate_pem())
        self._lock = threading.Lock()
        self._requests: list[TokenRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.host = ""

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}"

    @property
    def realm(self) -> str:
        """The token endpoint, as the registry's challenge names it."""
        return f"{self.url}/token"

    @property
    def requests(self) -> list[TokenRequest]:
        """A copy of every token request seen since the last :meth:`reset`."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget the recorded requests and restore users, grants and expires_in."""
        users, grants, expires_in = self._defaults
        with self._lock:
            self._requests.clear()
            self.users, self.grants, self.expires_in = dict(users), list(grants), expires_in

    def allowed(
        self, account: str | None, repository: str, wanted: Sequence[str]
    ) -> tuple[str, ...]:
        """The subset of ``wanted`` actions that ``account`` holds on ``repository``."""
        held: set[str] = set()
        for grant in self.grants:
            if grant.account in (None, account) and fnmatch.fnmatchcase(
                repository, grant.repositories
            ):
                held |= grant.actions
        return tuple(a for a in wanted if a in held or ("*" in held))

    def issue(self, account: str | None, scopes: Iterable[str]) -> str:
        """Mint a token as the endpoint would, without an HTTP request (not recorded)."""
        return self._mint(account, scopes)[0]

    def _mint(
        self, account: str | None, scopes: Iterable[str]
    ) -> tuple[str, tuple[tuple[str, tuple[str, ...]], ...]]:
        access: list[dict[str, object]] = []
        granted: list[tuple[str, tuple[str, ...]]] = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, wanted = parsed
            actions = self.allowed(account, name, wanted) if kind == "repository" else ()
            access.append({"type": kind, "name": name, "actions": list(actions)})
            granted.append((name, actions))
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": account or "",
            "aud": self.service,  # distribution 2.8 wants a string here, not a list
            "exp": now + self.expires_in,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        return self.signer.sign(claims), tuple(granted)

    def _record(self, entry: TokenRequest) -> None:
        with self._lock:
            self._requests.append(entry)

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1, serving from a daemon thread."""
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            name="token-server",
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> TokenServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _make_handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # the registry tests read server.requests, not a console log

        def _send_json(
            self, status: int, body: object, headers: Mapping[str, str] | None = None
        ) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/token":
                self._send_json(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
                return
            query = parse_qs(url.query)
            scopes = tuple(s for value in query.get("scope", []) for s in value.split(" ") if s)
            service = query.get("service", [""])[0]
            account = self._authenticate()
            if account is False:
                server._record(TokenRequest(None, scopes, service, 401, ()))
                self._send_json(
                    401,
                    {"errors": [{"code": "UNAUTHORIZED", "message": "bad username or password"}]},
                    {"WWW-Authenticate": 'Basic realm="towline-test-token"'},
                )
                return
            user = account if isinstance(account, str) else None
            token, granted = server._mint(user, scopes)
            issued = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            server._record(TokenRequest(user, scopes, service, 200, granted))
            self._send_json(
                200,
                {
                    "token": token,
                    "access_token": token,
                    "expires_in": server.expires_in,
                    "issued_at": issued,
                },
            )

        def _authenticate(self) -> str | bool | None:
            """The user name, None when anonymous, False when credentials are wrong."""
            header = self.headers.get("Authorization")
            if header is None:
                return None
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "basic":
                return False
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return user if server.users.get(user) == password else False

    return Handler


class IssuerAuth(httpx.Auth):
    """httpx auth that answers a Bearer challenge by minting a token directly.

    Used by the push helpers, so fixture setup leaves :attr:`TokenServer.requests` empty.
    """

    def __init__(self, server: TokenServer, account: str | None = "alice") -> None:
        self._server = server
        self._account = account
        self._token: str | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token is not None:
            request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        challenge = parse_bearer_challenge(response.headers.get("WWW-Authenticate", ""))
        if response.status_code != 401 or challenge is None:
            return
        self._token = self._server.issue(self._account, challenge.get("scope", "").split())
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request
