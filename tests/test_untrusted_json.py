"""towline.untrusted_json: JSON from registries parsed with Go encoding/json's limits (pure)."""

from __future__ import annotations

import json
import time

import pytest

from towline.untrusted_json import MAX_DEPTH, UntrustedJSONError, load_object


@pytest.mark.parametrize(
    "document",
    [
        {"schemaVersion": 2, "layers": [{"size": 0}, {"size": 2**63 - 1}]},
        {"min": -(2**63), "max": 2**64 - 1, "float": 1.5e308, "tiny": 5e-324, "neg": -0.0},
        {"text": "héllo ☃ 😀", "nested": {"a": [[[]]], "b": {"c": None, "d": True}}},
        {"brackets in strings": "[[[[{{{{" * 1000, 'quote"and\\backslash': "\\"},
        {},
    ],
)
def test_ordinary_documents_parse_as_json_loads_does(document: dict[str, object]) -> None:
    raw = json.dumps(document, ensure_ascii=False).encode()
    assert load_object(raw) == json.loads(raw)


def nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"[1]" + b"}" * (depth - 1)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert load_object(nested(MAX_DEPTH))["a"] is not None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 200_000, "nested more than 100 levels deep"),
        (b'{"a":' * 200_000, "nested more than 100 levels deep"),
        (nested(MAX_DEPTH + 1), "nested more than 100 levels deep"),
        (b'{"size": NaN}', "NaN is not a JSON value"),
        (b'{"size": Infinity}', "Infinity is not a JSON value"),
        (b'{"size": -Infinity}', "-Infinity is not a JSON value"),
        (b'{"size": 1e400}', "number 1e400 does not fit in 64 bits"),
        (b'{"size": -1e400}', "number -1e400 does not fit in 64 bits"),
        (b'{"size": %d}' % 2**64, f"number {2**64} does not fit in 64 bits"),
        (b'{"size": %d}' % (2**70), f"number {2**70} does not fit in 64 bits"),
        (b'{"size": %d}' % (-(2**63) - 1), "does not fit in 64 bits"),
        (b'{"size": 1' + b"0" * 5000 + b"}", "number 10000000000000000000… (5001 characters)"),
        (b'{"size": 1' + b"0" * 5000 + b".5}", "does not fit in 64 bits"),
        (b'{"a": "\xff"}', "not UTF-8: invalid start byte at byte 7"),
        ('{"a": 1}'.encode("utf-16"), "not UTF-8"),
        (b'\xef\xbb\xbf{"a": 1}', "Unexpected UTF-8 BOM"),
        (b"", "Expecting value: line 1 column 1 (char 0)"),
        (b'{"a": 1', "Expecting ',' delimiter"),
        (b'"\\"' * (1 << 20), "Extra data"),  # a quote storm: refused, and quickly
    ],
)
def test_hostile_documents_are_refused_with_a_short_reason(raw: bytes, reason: str) -> None:
    started = time.monotonic()
    with pytest.raises(UntrustedJSONError) as info:
        load_object(raw)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert message.startswith("is not valid JSON (")
    assert reason in message
    assert "\n" not in message and len(message) < 200


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"[1, 2]", "list"), (b'"text"', "str"), (b"12", "int"), (b"null", "NoneType")],
)
def test_the_top_level_must_be_an_object(raw: bytes, kind: str) -> None:
    with pytest.raises(UntrustedJSONError, match=f"^must be a JSON object, not {kind}$"):
        load_object(raw)


def test_it_is_a_value_error_and_nothing_else_escapes() -> None:
    assert issubclass(UntrustedJSONError, ValueError)
    for raw in (b"[" * 10_000 + b"]" * 10_000, b"{" * 150, b"\x00", b"\\", b'"' * 3):
        with pytest.raises(UntrustedJSONError):
            load_object(raw)


def test_lone_surrogates_become_the_replacement_character_as_in_go() -> None:
    raw = b'{"a": "x\\ud800y", "\\udc00": ["\\ud83d\\ude00", "\\uDBFF"]}'
    assert load_object(raw) == {"a": "x\ufffdy", "\ufffd": ["\U0001f600", "\ufffd"]}
    # what comes out can be encoded again (it goes to SQLite, files and terminals)
    json.dumps(load_object(raw), ensure_ascii=False).encode()
