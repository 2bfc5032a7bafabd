"""Pull policy names and podman's aliases."""

from __future__ import annotations

import pytest

from towline.errors import PolicyError
from towline.policy import PULL_POLICIES, parse_pull_policy


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("always", "always"),
        ("Always", "always"),
        ("true", "always"),
        ("TRUE", "always"),
        ("missing", "missing"),
        ("ifmissing", "missing"),
        ("IfNotPresent", "missing"),
        ("", "missing"),
        ("newer", "newer"),
        ("ifnewer", "newer"),
        ("IFNEWER", "newer"),
        ("never", "never"),
        ("false", "never"),
        ("False", "never"),
    ],
)
def test_parse(value: str, expected: str) -> None:
    assert parse_pull_policy(value) == expected


@pytest.mark.parametrize("value", ["x", "sometimes", " always", "always ", "1", "yes", "ifpresent"])
def test_unsupported(value: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_pull_policy(value)
    assert str(info.value) == (
        f'unsupported pull policy "{value}": use always, missing, newer or never'
    )
    assert info.value.slug == "policy"


def test_every_policy_parses_to_itself() -> None:
    assert PULL_POLICIES == ("always", "missing", "newer", "never")
    for policy in PULL_POLICIES:
        assert parse_pull_policy(policy) == policy
