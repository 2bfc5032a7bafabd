"""Content digests: the ``algorithm:hex`` strings that name blobs and manifests.

Only algorithms towline can verify are accepted (the native core hashes with the
same three), so a digest that parses here is one the pull path can check. The
encoded part must be lowercase hex of the algorithm's exact length, as
go-digest's ``Digest.Validate`` requires.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from towline.errors import InvalidReferenceError
from towline.quoting import go_quote

__all__ = ["SUPPORTED_ALGORITHMS", "Digest", "parse_digest"]

#: Algorithm name → length of its hex encoding. blake3 is a registered OCI
#: algorithm (image-spec descriptor.md) with a 256-bit output.
SUPPORTED_ALGORITHMS: Mapping[str, int] = MappingProxyType(
    {"sha256": 64, "sha512": 128, "blake3": 64}
)

_LOWER_HEX = re.compile(r"[0-9a-f]+")


def _supported() -> str:
    return ", ".join(SUPPORTED_ALGORITHMS)


def _problem(algorithm: str, encoded: str) -> str | None:
    """Say what is wrong with ``algorithm:encoded``, or None when it is a valid digest."""
    if not algorithm:
        return "the algorithm is missing; use algorithm:hex, e.g. sha256:<64 hex digits>"
    length = SUPPORTED_ALGORITHMS.get(algorithm)
    if length is None:
        return f"unsupported digest algorithm {go_quote(algorithm)}; supported: {_supported()}"
    if not encoded:
        return f"the {algorithm} value is missing; it needs {length} lowercase hex digits"
    if not _LOWER_HEX.fullmatch(encoded):
        return f"the {algorithm} value must be lowercase hexadecimal (0-9, a-f)"
    if len(encoded) != length:
        return f"a {algorithm} value has {length} hex digits, this one has {len(encoded)}"
    return None


@dataclass(frozen=True)
class Digest:
    """A validated content digest; ``str()`` gives the canonical ``algorithm:hex`` form."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        problem = _problem(self.algorithm, self.hex)
        if problem is not None:
            raise InvalidReferenceError(f"invalid digest {go_quote(str(self))}: {problem}")

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def parse_digest(value: str) -> Digest:
    """Parse ``algorithm:hex`` into a :class:`Digest`.

    Raises :class:`~towline.errors.InvalidReferenceError` (a ``ValueError``) when
    the separator is missing, the algorithm is not one of
    :data:`SUPPORTED_ALGORITHMS`, or the hex part has the wrong length or case.
    """
    algorithm, sep, encoded = value.partition(":")
    if not sep:
        raise InvalidReferenceError(
            f"invalid digest {go_quote(value)}: no ':' separator; "
            "use algorithm:hex, e.g. sha256:<64 hex digits>"
        )
    return Digest(algorithm, encoded)
