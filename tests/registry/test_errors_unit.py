"""Error mapping from registry answers to towline errors (synthetic responses, no network)."""

from __future__ import annotations

import json

import httpx
import pytest

from towline.errors import AuthenticationError, ManifestUnknownError, TransportError
from towline.registry.errors import (
    DistributionError,
    RequestContext,
    error_for_response,
    map_http_errors,
    parse_error_body,
)

MANIFEST = RequestContext(
    "reading manifest latest in reg.example:5000/app", "manifest", "reg.example:5000", "app"
)
BLOB = RequestContext(
    "fetching blob sha256:abc from reg.example:5000/app", "blob", "reg.example:5000", "app"
)


def body(*errors: tuple[str, str]) -> bytes:
    return json.dumps(
        {"errors": [{"code": c, "message": m, "detail": {}} for c, m in errors]}
    ).encode()


def answer(
    status: int, content: bytes = b"", headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(status, content=content, headers=headers)


def test_parse_error_body() -> None:
    assert parse_error_body(body(("MANIFEST_UNKNOWN", "manifest unknown"))) == [
        DistributionError("MANIFEST_UNKNOWN", "manifest unknown", {})
    ]
    assert parse_error_body(b"<html>") == []
    assert parse_error_body(b'{"errors": "x"}') == []
    assert parse_error_body(b'{"errors": [{"message": "no code"}, {"code": "denied"}]}') == [
        DistributionError("DENIED", "", None)
    ]


@pytest.mark.parametrize(
    "hostile",
    [
        b"[" * 200_000,
        b'{"errors": [{"code": "DENIED", "detail": ' + b"9" * 5000 + b"}]}",
        b'{"errors": [{"code": "DENIED", "detail": NaN}]}',
        b'{"errors": [{"code": "DENIED", "detail": 1e999}]}',
        b'{"errors": [{"code": "DENIED", "detail": ' + b'{"a":' * 5000 + b"}",
        b"\xff\xfe{}",
    ],
)
def test_parse_error_body_never_raises(hostile: bytes) -> None:
    assert parse_error_body(hostile) == []


def test_registry_text_in_errors_is_one_line_and_short() -> None:
    # A registry's message goes into a one-line error: no newlines, no terminal escapes.
    [error] = parse_error_body(
        json.dumps(
            {"errors": [{"code": "DENIED", "message": "line one\nline two\x1b[31m" + "x" * 500}]}
        ).encode()
    )
    assert error.code == "DENIED"
    assert error.message.startswith("line one line two [31mxxx")
    assert len(error.message) == 200 and error.message.endswith("…")
    odd = error_for_response(answer(418, b"I am\r\na teapot\x1b]0;pwned\x07"), BLOB)
    assert str(odd).endswith('StatusCode: 418, "I am  a teapot ]0;pwned ..."')


def test_distribution_error_text_follows_errcode() -> None:
    assert str(DistributionError("MANIFEST_UNKNOWN", "manifest unknown")) == "manifest unknown"
    assert (
        str(DistributionError("NAME_UNKNOWN", "repository name not known to registry"))
        == "repository name not known to registry"
    )
    assert str(DistributionError("NAME_UNKNOWN", "no such repo")) == "name unknown: no such repo"
    assert str(DistributionError("DENIED", "")) == "denied"


@pytest.mark.parametrize(
    ("response", "text"),
    [
        (answer(404, body(("MANIFEST_UNKNOWN", "manifest unknown"))), "manifest unknown"),
        (
            answer(404, body(("NAME_UNKNOWN", "repository name not known to registry"))),
            "repository name not known to registry",
        ),
        (answer(404), "manifest unknown"),  # HEAD: no body
    ],
)
def test_manifest_unknown(response: httpx.Response, text: str) -> None:
    error = error_for_response(response, MANIFEST)
    assert type(error) is ManifestUnknownError
    assert str(error) == f"reading manifest latest in reg.example:5000/app: {text}"


@pytest.mark.parametrize(
    "response",
    [
        answer(401, body(("UNAUTHORIZED", "authentication required"))),
        answer(403, body(("DENIED", "requested access to the resource is denied"))),
        answer(401),
        answer(
            401,
            headers={"WWW-Authenticate": 'Bearer realm="r",error="insufficient_scope"'},
        ),
    ],
)
def test_auth_failures_suggest_credentials(response: httpx.Response) -> None:
    error = error_for_response(response, MANIFEST)
    assert type(error) is AuthenticationError
    message = str(error)
    assert message.startswith("reading manifest latest in reg.example:5000/app: ")
    assert "--creds user:pass" in message
    assert "reg.example:5000/app" in message


def test_auth_failure_with_credentials_says_check_them() -> None:
    context = RequestContext("reading manifest x in r/a", "manifest", "r", "a", authenticated=True)
    message = str(error_for_response(answer(401), context))
    assert "unauthorized: authentication required" in message
    assert "check the credentials" in message


def test_insufficient_scope_challenge_becomes_denied() -> None:
    response = answer(
        401,
        headers={
            "WWW-Authenticate": 'Bearer realm="r",error="insufficient_scope",'
            'error_description="no pull for you"'
        },
    )
    assert "denied: no pull for you" in str(error_for_response(response, MANIFEST))


@pytest.mark.parametrize(
    ("status", "reason"), [(500, "Internal Server Error"), (503, "Service Unavailable")]
)
def test_server_errors(status: int, reason: str) -> None:
    error = error_for_response(answer(status, b"oops"), MANIFEST)
    assert type(error) is TransportError
    assert str(error) == (
        f"reading manifest latest in reg.example:5000/app: received unexpected HTTP status: "
        f"{status} {reason}"
    )
    assert error.slug == "http_status"


def test_blob_unknown_and_other_statuses() -> None:
    error = error_for_response(
        answer(404, body(("BLOB_UNKNOWN", "blob unknown to registry"))), BLOB
    )
    assert (type(error), error.slug) == (TransportError, "blob_unknown")
    assert str(error).endswith(": blob unknown to registry")
    assert error_for_response(answer(404), BLOB).slug == "blob_unknown"
    too_many = error_for_response(answer(429), BLOB)
    assert too_many.slug == "too_many_requests"
    assert "too many requests to registry reg.example:5000" in str(too_many)
    teapot = b"I am a little teapot, short and stout; here is my handle"
    odd = error_for_response(answer(418, teapot), BLOB)
    assert str(odd).endswith(f'StatusCode: 418, "{teapot[:50].decode()}..."')
    empty = error_for_response(answer(400), BLOB)
    assert str(empty).endswith("received unexpected HTTP status: 400 Bad Request")


def test_map_http_errors_raises_from_the_httpx_exception() -> None:
    request = httpx.Request("GET", "http://reg.example:5000/v2/app/manifests/latest")
    response = httpx.Response(404, request=request)
    with pytest.raises(ManifestUnknownError) as info, map_http_errors(MANIFEST):
        response.raise_for_status()
    assert isinstance(info.value.__cause__, httpx.HTTPStatusError)
    with pytest.raises(TransportError) as network, map_http_errors(MANIFEST):
        raise httpx.ConnectError("[Errno 111] Connection refused")
    assert str(network.value) == (
        "reading manifest latest in reg.example:5000/app: [Errno 111] Connection refused"
    )
    assert network.value.slug == "connection"
    assert isinstance(network.value.__cause__, httpx.ConnectError)
