"""Digest parsing: the three algorithms towline verifies, lowercase hex of exact length."""

from __future__ import annotations

import dataclasses

import pytest

from towline.digest import SUPPORTED_ALGORITHMS, Digest, parse_digest
from towline.errors import InvalidReferenceError, TowlineError

SHA256 = "a" * 64
SHA512 = "0123456789abcdef" * 8
BLAKE3 = "f" * 64


@pytest.mark.parametrize(
    ("text", "algorithm", "hex_"),
    [
        (f"sha256:{SHA256}", "sha256", SHA256),
        (f"sha512:{SHA512}", "sha512", SHA512),
        (f"blake3:{BLAKE3}", "blake3", BLAKE3),
    ],
)
def test_parse_valid(text: str, algorithm: str, hex_: str) -> None:
    d = parse_digest(text)
    assert (d.algorithm, d.hex) == (algorithm, hex_)
    assert str(d) == text
    assert parse_digest(str(d)) == d


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "no ':' separator"),
        (SHA256, "no ':' separator"),
        (f":{SHA256}", "algorithm is missing"),
        ("sha256:", "value is missing"),
        (
            f"md5:{'a' * 32}",
            'unsupported digest algorithm "md5"; supported: sha256, sha512, blake3',
        ),
        (f"SHA256:{SHA256}", 'unsupported digest algorithm "SHA256"'),
        (f"sha384:{'a' * 96}", "unsupported digest algorithm"),
        ("sha256:abc", "has 64 hex digits, this one has 3"),
        (f"sha256:{SHA256}0", "this one has 65"),
        (f"sha512:{SHA256}", "a sha512 value has 128 hex digits"),
        (f"sha256:{SHA256.upper()}", "lowercase hexadecimal"),
        (f"sha256:{'g' * 64}", "lowercase hexadecimal"),
        (f"sha256:{'a' * 63} ", "lowercase hexadecimal"),
        (f"sha256:{'a' * 63}\n", "lowercase hexadecimal"),
    ],
)
def test_parse_invalid(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_digest(text)
    message = str(info.value)
    assert fragment in message
    assert message.startswith("invalid digest ")
    assert "\n" not in message


def test_error_is_a_value_error_and_a_towline_error() -> None:
    with pytest.raises(ValueError, match="invalid digest"):
        parse_digest("nope")
    with pytest.raises(TowlineError) as info:
        parse_digest("nope")
    assert info.value.slug == "invalid_reference"


def test_constructor_validates() -> None:
    with pytest.raises(InvalidReferenceError, match="this one has 2"):
        Digest("sha256", "ab")
    assert str(Digest("sha256", SHA256)) == f"sha256:{SHA256}"


def test_frozen_and_hashable() -> None:
    d = parse_digest(f"sha256:{SHA256}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.hex = "0" * 64  # type: ignore[misc]
    assert {d, parse_digest(f"sha256:{SHA256}")} == {d}


def test_supported_algorithms_table() -> None:
    assert dict(SUPPORTED_ALGORITHMS) == {"sha256": 64, "sha512": 128, "blake3": 64}
