"""WWW-Authenticate parsing (pure)."""

from __future__ import annotations

import pytest

from towline.registry.auth import Challenge, basic_authorization, parse_challenges


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.example/token",service="registry.example",'
            'scope="repository:a/b:pull"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://auth.example/token",
                        "service": "registry.example",
                        "scope": "repository:a/b:pull",
                    },
                )
            ],
        ),
        ('Basic realm="towline-test"', [Challenge("basic", {"realm": "towline-test"})]),
        # scheme and parameter names are case-insensitive; values keep their case
        ('BEARER Realm="R", SERVICE=Svc', [Challenge("bearer", {"realm": "R", "service": "Svc"})]),
        # spaces around "=" and between parameters
        ('Bearer realm = "r" ,  service= s', [Challenge("bearer", {"realm": "r", "service": "s"})]),
        # quoted strings with escapes and commas inside
        (
            r'Bearer realm="a\"b\\c", error_description="x, y"',
            [Challenge("bearer", {"realm": 'a"b\\c', "error_description": "x, y"})],
        ),
        # several challenges in one header
        (
            'Basic realm="simple", Bearer realm="https://t/token",service="s"',
            [
                Challenge("basic", {"realm": "simple"}),
                Challenge("bearer", {"realm": "https://t/token", "service": "s"}),
            ],
        ),
        (
            'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"',
            [
                Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
                Challenge("basic", {"realm": "simple"}),
            ],
        ),
        # token68 and bare schemes
        ("Negotiate abc+/def==", [Challenge("negotiate", {}, "abc+/def==")]),
        ("Negotiate, Basic", [Challenge("negotiate"), Challenge("basic")]),
        (
            "Negotiate abc==, Basic realm=x",
            [Challenge("negotiate", {}, "abc=="), Challenge("basic", {"realm": "x"})],
        ),
        # distribution's insufficient_scope challenge
        (
            'Bearer realm="http://127.0.0.1:1/token",service="s",scope="repository:p/x:pull",'
            'error="insufficient_scope"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "http://127.0.0.1:1/token",
                        "service": "s",
                        "scope": "repository:p/x:pull",
                        "error": "insufficient_scope",
                    },
                )
            ],
        ),
        # malformed input: unterminated quote, junk, empty
        ('Bearer realm="unterminated', [Challenge("bearer", {"realm": "unterminated"})]),
        ("", []),
        ("  ,, ", []),
        ('@@ Bearer realm="r"', [Challenge("bearer", {"realm": "r"})]),
        ("Bearer realm=", [Challenge("bearer", {}, "realm=")]),
    ],
)
def test_parse_challenges(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected


def test_basic_authorization() -> None:
    assert basic_authorization("alice", "s3cret") == "Basic YWxpY2U6czNjcmV0"
