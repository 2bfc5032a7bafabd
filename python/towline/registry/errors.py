"""One translation from HTTP failures to towline errors, at the registry boundary.

``map_http_errors(context)`` wraps a block of httpx calls; inside it,
``httpx.HTTPStatusError`` (from ``raise_for_status``) and network errors become
:class:`~towline.errors.TransportError` subclasses, raised ``from`` the httpx
exception. Messages follow podman's wording (``reading manifest latest in
host/repo: manifest unknown``) and end with what to do where there is something
to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import httpx

from towline.errors import AuthenticationError, ManifestUnknownError, TransportError
from towline.registry.auth import parse_challenges
from towline.registry.body_limits import error_body
from towline.untrusted_json import UntrustedJSONError, load_object

__all__ = [
    "DistributionError",
    "Kind",
    "RequestContext",
    "describe_exception",
    "error_for_response",
    "map_http_errors",
    "parse_error_body",
]

Kind = Literal["ping", "manifest", "blob", "tags"]

_UNKNOWN_CODES = {
    "manifest": {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"},
    "tags": {"NAME_UNKNOWN"},
}
_AUTH_CODES = {"UNAUTHORIZED", "DENIED"}

# distribution's registered default messages: an error carrying its default prints alone.
_DEFAULT_MESSAGES = {
    "BLOB_UNKNOWN": "blob unknown to registry",
    "BLOB_UPLOAD_UNKNOWN": "blob upload unknown to registry",
    "DENIED": "requested access to the resource is denied",
    "DIGEST_INVALID": "provided digest did not match uploaded content",
    "MANIFEST_BLOB_UNKNOWN": "manifest blob unknown to registry",
    "MANIFEST_INVALID": "manifest invalid",
    "MANIFEST_UNKNOWN": "manifest unknown",
    "NAME_INVALID": "invalid repository name",
    "NAME_UNKNOWN": "repository name not known to registry",
    "TOOMANYREQUESTS": "too many requests",
    "UNAUTHORIZED": "authentication required",
    "UNKNOWN": "unknown error",
    "UNSUPPORTED": "The operation is unsupported.",
}


@dataclass(frozen=True)
class DistributionError:
    """One entry of a registry's ``{"errors": [...]}`` body."""

    code: str
    message: str
    detail: object = None

    def __str__(self) -> str:
        # As c/image prints errcode errors: the default message alone ("manifest unknown"),
        # anything else after the code ("denied: insufficient scope").
        words = self.code.lower().replace("_", " ")
        if not self.message:
            return words
        if self.message == _DEFAULT_MESSAGES.get(self.code):
            return self.message
        return f"{words}: {self.message}"


@dataclass(frozen=True)
class RequestContext:
    """What a request was for, so errors can name it.

    ``action`` starts the message (``"reading manifest latest in host/repo"``);
    ``authenticated`` says whether credentials were sent, which changes the advice.
    """

    action: str
    kind: Kind
    registry: str
    repo: str | None = None
    authenticated: bool = False


def parse_error_body(body: bytes) -> list[DistributionError]:
    """Parse ``{"errors":[{"code","message","detail"}]}``; [] when the body is anything else.

    Never raises: the body is the registry's, and hostile JSON (deep nesting, huge
    numbers, NaN) only means there is no usable detail.
    """
    try:
        document = load_object(body)
    except UntrustedJSONError:
        return []
    if not isinstance(document.get("errors"), list):
        return []
    errors = []
    for entry in document["errors"]:
        if isinstance(entry, dict) and isinstance(entry.get("code"), str):
            message = entry.get("message")
            errors.append(
                DistributionError(
                    code=_one_line(entry["code"]).upper(),
                    message=_one_line(message) if isinstance(message, str) else "",
                    detail=entry.get("detail"),
                )
            )
    return errors


def _one_line(text: str, limit: int = 200) -> str:
    """The registry's text fit for a one-line message: no control characters, not too long."""
    line = "".join(c if c.isprintable() else " " for c in text[: limit + 1])
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _challenge_error(response: httpx.Response) -> DistributionError | None:
    # distribution reports token problems in the Bearer challenge, not in the body.
    for header in response.headers.get_list("www-authenticate"):
        for challenge in parse_challenges(header):
            error = challenge.params.get("error")
            if challenge.scheme != "bearer" or not error:
                continue
            description = challenge.params.get("error_description", "")
            if error == "insufficient_scope":
                return DistributionError("DENIED", description or "insufficient scope")
            if error == "invalid_token":
                return DistributionError("UNAUTHORIZED", description or "invalid token")
    return None


def _auth_advice(context: RequestContext) -> str:
    where = context.registry if context.repo is None else f"{context.registry}/{context.repo}"
    if context.authenticated:
        return f"check the credentials (--creds user:pass or the auth file) allow pulling {where}"
    return f"log in with --creds user:pass or an auth file with credentials for {where}"


def error_for_response(response: httpx.Response, context: RequestContext) -> TransportError:
    """Build the towline error for a failed (non-2xx) registry response."""
    status = response.status_code
    if status >= 500:
        return TransportError(
            f"{context.action}: received unexpected HTTP status: {status} {response.reason_phrase}",
            slug="http_status",
        )
    body = error_body(response)  # at most 1 MiB, as c/image
    errors = parse_error_body(body) if context.kind != "ping" else []
    first = errors[0] if errors else None
    if status == 401 and (first is None or first.code not in _AUTH_CODES):
        first = _challenge_error(response) or first
    code = first.code if first is not None else ""
    if status == 429 or code == "TOOMANYREQUESTS":
        return TransportError(
            f"{context.action}: too many requests to registry {context.registry}; "
            "wait and try again",
            slug="too_many_requests",
        )
    if status in (401, 403) or code in _AUTH_CODES:
        text = str(first) if first is not None else "unauthorized: authentication required"
        return AuthenticationError(f"{context.action}: {text}; {_auth_advice(context)}")
    if code in _UNKNOWN_CODES.get(context.kind, ()) or (
        status == 404 and context.kind in ("manifest", "tags")
    ):
        text = str(first) if first is not None else "manifest unknown"
        return ManifestUnknownError(f"{context.action}: {text}")
    if code == "BLOB_UNKNOWN" or (status == 404 and context.kind == "blob"):
        text = str(first) if first is not None else "blob unknown to registry"
        return TransportError(f"{context.action}: {text}", slug="blob_unknown")
    if first is not None:
        return TransportError(f"{context.action}: {first}", slug="http_status")
    text = _one_line(body[:50].decode("utf-8", "replace"))
    return TransportError(
        f'{context.action}: StatusCode: {status}, "{text}..."'
        if text
        else f"{context.action}: received unexpected HTTP status: {status} "
        f"{response.reason_phrase}",
        slug="http_status",
    )


def describe_exception(exc: BaseException) -> str:
    """A short reason for a network failure: the message, else the exception's class name."""
    text = str(exc)
    return text if text else type(exc).__name__


@contextmanager
def map_http_errors(context: RequestContext) -> Iterator[None]:
    """Translate httpx failures raised in the block into towline errors (``from exc``).

    ``httpx.HTTPStatusError`` goes through :func:`error_for_response`; network
    failures become ``TransportError`` (slug ``"connection"``) naming the action.
    """
    try:
        yield
    except httpx.HTTPStatusError as exc:
        raise error_for_response(exc.response, context) from exc
    except httpx.TooManyRedirects as exc:
        raise TransportError(
            f"{context.action}: too many redirects ({describe_exception(exc)})",
            slug="http_status",
        ) from exc
    except httpx.HTTPError as exc:
        raise TransportError(
            f"{context.action}: {describe_exception(exc)}", slug="connection"
        ) from exc
