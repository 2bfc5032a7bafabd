"""``RegistryClient``: the distribution v2 API over one pooled httpx client.

One client serves one registry host for one pull. Each public method is a
short chain — ``get_blob`` → ``_fetch_small`` → ``_with_retries`` → ``_send`` —
so retries, auth and error translation live in one place each: auth in
:mod:`.auth`, retries in :mod:`.retry`, error text in :mod:`.errors`, body
resume in :mod:`.blob_reader`. Tests (or callers) inject ``transport=`` or a
whole ``http_client=``.
"""

from __future__ import annotations

import re
import ssl
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass
from types import TracebackType

import httpx

from towline import _native
from towline.errors import TowlineError, TransportError
from towline.manifest import (
    MANIFEST_ACCEPT,
    compute_digest,
    is_digest,
    parse_manifest,
    verify_digest,
)
from towline.registry.auth import BearerChallengeAuth
from towline.registry.blob_reader import ResumePolicy, stream_blob
from towline.registry.body_limits import ACCEPT_ENCODING, install_body_limits, read_at_most
from towline.registry.errors import (
    Kind,
    RequestContext,
    describe_exception,
    error_for_response,
    map_http_errors,
)
from towline.registry.retry import RetryPolicy, is_tls_error, send_with_retries
from towline.transports.base import BlobSink
from towline.untrusted_json import UntrustedJSONError, load_object

__all__ = ["MANIFEST_SIZE_LIMIT", "FetchedManifest", "RegistryClient"]

#: Largest manifest accepted, as containers/image (4 MiB).
MANIFEST_SIZE_LIMIT = 4 * 1024 * 1024
_TAG_LIST_LIMIT = 16 * 1024 * 1024
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=30.0)


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest as the registry sent it: bytes, media type and digest (verified)."""

    raw: bytes
    media_type: str
    digest: str


def _default_user_agent() -> str:
    return f"towline/{_native.__version__}"


class RegistryClient:
    """Talk to one registry: ping, manifests, blobs and tag lists.

    ``host`` is "registry.example:5000" (``docker.io`` connects to
    ``registry-1.docker.io``). With ``tls_verify=False`` certificates are not
    checked and plain HTTP is tried when HTTPS fails; ``localhost`` gets no
    special treatment (as podman). ``ssl_context`` (CAs, client certificates from
    certs.d) is used as given, except that ``tls_verify=False`` switches its
    verification off. ``credentials`` are ``(user, password)``. ``sleep`` is used
    for every backoff, so tests can make waiting free. Bodies are read within
    :mod:`.body_limits` (an injected ``http_client`` gets its response hook too).
    """

    def __init__(
        self,
        host: str,
        *,
        tls_verify: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        max_retries: int = 3,
        retry_delay: float | None = None,
        user_agent: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
        trust_env: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host = host
        self.tls_verify = tls_verify
        self._endpoint = "registry-1.docker.io" if host == "docker.io" else host
        self._credentials = credentials
        self._owns_http = http_client is None
        if http_client is None:
            verify: ssl.SSLContext | bool = tls_verify
            if ssl_context is not None:
                if not tls_verify:
                    # Keep the context's client certificate, drop only the verification.
                    ssl_context.check_hostname = False
                    ssl_context.verify_mode = ssl.CERT_NONE
                verify = ssl_context
            http_client = httpx.Client(
                verify=verify,
                transport=transport,
                timeout=_DEFAULT_TIMEOUT if timeout is None else timeout,
                trust_env=trust_env,
                follow_redirects=True,
            )
        install_body_limits(http_client)
        self._http = http_client
        agent = user_agent or _default_user_agent()
        self._headers = {
            "User-Agent": agent,
            "Docker-Distribution-API-Version": "registry/2.0",
            "Accept-Encoding": ACCEPT_ENCODING,
        }
        self.auth = BearerChallengeAuth(
            host,
            credentials,
            http_client,
            headers={"User-Agent": agent, "Accept-Encoding": ACCEPT_ENCODING},
        )
        self._retry = RetryPolicy(max_retries=max_retries, delay=retry_delay, sleep=sleep)
        self._resume = ResumePolicy(delay=1.0 if retry_delay is None else retry_delay, sleep=sleep)
        self._ping_lock = threading.Lock()
        self._base_url: str | None = None

    # === lifecycle
    def close(self) -> None:
        """Close the pooled connections (only when this client created them)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # === ping
    @property
    def base_url(self) -> str:
        """``scheme://endpoint`` of the registry, pinging it first if needed."""
        self.ping()
        assert self._base_url is not None
        return self._base_url

    def ping(self) -> None:
        """Check the registry answers ``GET /v2/`` (200 or 401); done once per client.

        HTTPS first; plain HTTP only when ``tls_verify`` is False. Raises
        :class:`TransportError` ``pinging container registry <host>: <reason>``.
        """
        with self._ping_lock:
            if self._base_url is not None:
                return
            schemes = ["https"] if self.tls_verify else ["https", "http"]
            answered: list[str] = []

            def ping_round() -> httpx.Response:
                # One attempt tries every scheme; retries repeat the round (as c/image's
                # whole-operation retry), not each scheme separately.
                last: httpx.HTTPError | None = None
                for scheme in schemes:
                    try:
                        # Streamed and never read: only the status and challenge count.
                        response = self._send(
                            "GET", f"{scheme}://{self._endpoint}/v2/", anonymous=True, stream=True
                        )
                    except httpx.HTTPError as exc:
                        last = exc
                        continue
                    answered.append(scheme)
                    return response
                assert last is not None
                raise last

            try:
                response = send_with_retries(ping_round, self._retry, f"GET {self._endpoint}/v2/")
            except httpx.HTTPError as exc:
                reason = describe_exception(exc)
                if self.tls_verify and is_tls_error(exc):
                    reason += (
                        "; if the registry serves plain HTTP, pass tls_verify=False"
                        " (--tls-verify=false on the command line)"
                    )
                raise TransportError(
                    f"pinging container registry {self.host}: {reason}", slug="ping"
                ) from exc
            with closing(response):
                if response.status_code in (200, 401):
                    if response.status_code == 401:
                        self.auth.observe(response)
                    self._base_url = f"{answered[-1]}://{self._endpoint}"
                    return
                status = f"{response.status_code} {response.reason_phrase}"
            raise TransportError(
                f"pinging container registry {self.host}: "
                f"received unexpected HTTP status: {status}",
                slug="ping",
            )

    # === manifests
    def get_manifest(self, repo: str, reference: str) -> FetchedManifest:
        """GET a manifest or index by tag or digest; the bytes are validated and digest-checked.

        A digest reference must match the bytes; for a tag the digest is the
        sha256 of the bytes, cross-checked with ``Docker-Content-Digest``. An
        invalid manifest raises TransportError slug ``"invalid_manifest"`` naming it.
        """
        context = self._context(
            f"reading manifest {reference} in {self.host}/{repo}", "manifest", repo
        )
        response, raw = self._fetch_small(
            f"/v2/{repo}/manifests/{reference}",
            context,
            MANIFEST_SIZE_LIMIT,
            headers={"Accept": MANIFEST_ACCEPT},
        )
        try:
            media_type = parse_manifest(raw, response.headers.get("Content-Type")).media_type
        except TowlineError as exc:
            raise TransportError(f"{context.action}: {exc}", slug=exc.slug) from exc
        what = f"manifest {reference} of {self.host}/{repo}"
        if is_digest(reference):
            digest = verify_digest(raw, reference, what)
        else:
            digest = compute_digest(raw)
            header = response.headers.get("Docker-Content-Digest", "")
            if header.startswith("sha256:"):
                verify_digest(raw, header, f"{what} (Docker-Content-Digest)")
        return FetchedManifest(raw=raw, media_type=media_type, digest=digest)

    def head_manifest(self, repo: str, reference: str) -> str | None:
        """HEAD a manifest; return its ``Docker-Content-Digest``, or None if not sent."""
        context = self._context(
            f"reading manifest {reference} in {self.host}/{repo}", "manifest", repo
        )
        response = self._with_retries(
            "HEAD",
            f"/v2/{repo}/manifests/{reference}",
            context,
            headers={"Accept": MANIFEST_ACCEPT},
        )
        response.close()
        digest = response.headers.get("Docker-Content-Digest")
        return digest if digest is not None and is_digest(digest) else None

    # === blobs
    def get_blob(self, repo: str, digest: str, max_size: int) -> bytes:
        """GET a small blob (a config) of at most ``max_size`` bytes; digest-checked."""
        context = self._context(f"fetching blob {digest} from {self.host}/{repo}", "blob", repo)
        _, raw = self._fetch_small(f"/v2/{repo}/blobs/{digest}", context, max_size)
        verify_digest(raw, digest, f"blob {digest} of {self.host}/{repo}")
        return raw

    def copy_blob(
        self,
        repo: str,
        digest: str,
        size: int | None,
        sink: BlobSink,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Stream a blob into ``sink`` in ~1 MiB chunks, resuming broken bodies with Range.

        The sink checks the digest; this method guarantees each byte arrives
        once and in order. A server that ignores Range raises TransportError
        slug ``"range_not_supported"`` (restart the blob with a fresh sink).
        """
        context = self._context(f"fetching blob {digest} from {self.host}/{repo}", "blob", repo)
        path = f"/v2/{repo}/blobs/{digest}"

        def open_body(offset: int) -> AbstractContextManager[httpx.Response]:
            headers = {"Accept-Encoding": "identity"}
            if offset > 0:
                headers["Range"] = f"bytes={offset}-"
            return closing(self._with_retries("GET", path, context, headers=headers, stream=True))

        with map_http_errors(context):
            stream_blob(
                open_body,
                sink,
                size=size,
                what=context.action,
                progress=progress,
                policy=self._resume,
            )

    # === tags
    def list_tags(self, repo: str, page_size: int | None = None) -> list[str]:
        """All tags of ``repo``, following ``Link: <…>; rel="next"`` pages."""
        context = self._context(f"listing tags of {self.host}/{repo}", "tags", repo)
        first = f"/v2/{repo}/tags/list"
        path: str | None = first if page_size is None else f"{first}?n={page_size}"
        tags: list[str] = []
        seen: set[str] = set()
        while path is not None:
            seen.add(path)
            response, raw = self._fetch_small(path, context, _TAG_LIST_LIMIT)
            tags.extend(self._parse_tags(raw, context))
            link = response.links.get("next", {}).get("url")
            # Only the path and query count: the next page comes from the same endpoint.
            path = httpx.URL(link).raw_path.decode("ascii") if link else None
            if path is not None and path in seen:
                raise TransportError(
                    f"{context.action}: the registry's pagination loops back to {path}",
                    slug="invalid_tags",
                )
        return tags

    @staticmethod
    def _parse_tags(raw: bytes, context: RequestContext) -> list[str]:
        try:
            document = load_object(raw)
        except UntrustedJSONError as exc:
            raise TransportError(
                f"{context.action}: the tag list {exc}", slug="invalid_tags"
            ) from exc
        values = document.get("tags")
        if values is None:
            return []  # distribution answers "tags": null for an empty repository
        if not isinstance(values, list):
            raise TransportError(f"{context.action}: tags is not a list", slug="invalid_tags")
        tags = []
        for tag in values:
            if tag == "" or (isinstance(tag, str) and is_digest(tag)):
                continue  # c/image skips these rather than failing
            if not isinstance(tag, str) or _TAG_RE.match(tag) is None:
                raise TransportError(
                    f"{context.action}: registry returned invalid tag {tag!r}", slug="invalid_tags"
                )
            tags.append(tag)
        return tags

    # === the request chain
    def _context(self, action: str, kind: Kind, repo: str) -> RequestContext:
        return RequestContext(
            action=action,
            kind=kind,
            registry=self.host,
            repo=repo,
            authenticated=self._credentials is not None,
        )

    def _manifest_context(self, repo: str, reference: str) -> RequestContext:
        action = f"reading manifest {reference} in {self.host}/{repo}"
        return self._context(action, "manifest", repo)

    def _fetch_small(
        self,
        path: str,
        context: RequestContext,
        limit: int,
        headers: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, bytes]:
        """GET and read a bounded body; a body that breaks off is retried like a failed send."""
        bodies: list[bytes] = []

        def send() -> httpx.Response:
            response = self._send("GET", self.base_url + path, headers=headers, stream=True)
            if response.is_success:
                with closing(response):
                    bodies.append(read_at_most(response, limit, context.action, "the registry"))
            return response

        response = self._checked(send, context, f"GET {path}")
        return response, bodies[-1]

    def _with_retries(
        self,
        method: str,
        path: str,
        context: RequestContext,
        *,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        url = self.base_url + path
        return self._checked(
            lambda: self._send(method, url, headers=headers, stream=stream),
            context,
            f"{method} {path}",
        )

    def _checked(
        self, send: Callable[[], httpx.Response], context: RequestContext, describe: str
    ) -> httpx.Response:
        """Send with retries; a final non-2xx answer becomes the matching towline error."""
        with map_http_errors(context):
            response = send_with_retries(send, self._retry, describe)
        if response.is_success:
            return response
        with closing(response), map_http_errors(context):
            response.read()  # at most 1 MiB: see body_limits.cap_error_body
        raise error_for_response(response, context)

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        anonymous: bool = False,
    ) -> httpx.Response:
        merged = {**self._headers, **(headers or {})}
        request = self._http.build_request(method, url, headers=merged)
        auth = None if anonymous else self.auth
        return self._http.send(request, auth=auth, stream=stream, follow_redirects=True)
