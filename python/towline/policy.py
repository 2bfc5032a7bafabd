"""Pull policies: when to contact the registry and when the local store is enough.

The four policies and their aliases are podman's (containers/common
``pkg/config/pull_policy.go``), plus ``--pull=true``/``--pull=false``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from towline.errors import PolicyError
from towline.quoting import go_quote

__all__ = ["PULL_POLICIES", "PullPolicy", "parse_pull_policy"]

#: ``always``: pull even when the image is present; ``missing``: pull only when
#: absent; ``newer``: pull when the registry's digest differs from the local one;
#: ``never``: use only the local store.
PullPolicy = Literal["always", "missing", "newer", "never"]

PULL_POLICIES: tuple[PullPolicy, ...] = ("always", "missing", "newer", "never")

_BY_NAME: Mapping[str, PullPolicy] = {
    "always": "always",
    "true": "always",
    "missing": "missing",
    "ifmissing": "missing",
    "ifnotpresent": "missing",
    "": "missing",
    "newer": "newer",
    "ifnewer": "newer",
    "never": "never",
    "false": "never",
}


def parse_pull_policy(value: str) -> PullPolicy:
    """Map a policy name or alias (case-insensitive) to a :data:`PullPolicy`.

    An empty string means ``missing``, podman's default. Raises
    :class:`~towline.errors.PolicyError` for anything else.
    """
    policy = _BY_NAME.get(value.lower())
    if policy is None:
        raise PolicyError(
            f"unsupported pull policy {go_quote(value)}: use always, missing, newer or never"
        )
    return policy
