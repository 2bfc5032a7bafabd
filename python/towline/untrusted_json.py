"""Parsing JSON that strangers wrote: what a registry or token server sends.

``json.loads`` trusts its input more than a registry deserves. 200,000 ``[``
raise ``RecursionError``, a 5,000-digit number ``ValueError``, ``NaN`` and
``Infinity`` are accepted although they are not JSON, a size of 2^70 is a
Python int that later overflows a native u64 or SQLite, and an escaped lone
surrogate (``"\\ud800"``) makes a ``str`` that cannot be encoded again.
:func:`load_object` applies the limits of Go's ``encoding/json`` (which podman
and containers/image use), and is a little stricter where noted:

* the bytes must be UTF-8, without a byte-order mark (Go refuses UTF-16 and a
  BOM too; invalid bytes inside a string, which Go would turn into U+FFFD, are
  refused: every such document is one towline refused before as well);
* no ``NaN``, ``Infinity`` or ``-Infinity``;
* integers must fit in 64 bits (int64 or uint64), floats in a float64;
* nesting is bounded (:data:`MAX_DEPTH`; Go's scanner stops at 10,000, Python's
  C parser dies near its recursion limit, so towline stops well before);
* a lone surrogate escape becomes U+FFFD, as Go decodes it;
* the top level is an object: every document a registry sends is one.

Every refusal is an :class:`UntrustedJSONError` (a ``ValueError``) with a short
reason, which callers turn into their own error (``invalid_manifest``,
``invalid_image_config``, ``invalid_tags``, an authentication error) naming
the document. Nothing here raises anything else for any input.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any, NoReturn

__all__ = ["MAX_DEPTH", "UntrustedJSONError", "load_object"]

#: Deepest nesting of arrays and objects accepted. Manifests, configs, error bodies
#: and token answers nest fewer than 10 levels.
MAX_DEPTH = 100

_INT64_MIN = -(2**63)
_UINT64_END = 2**64
# A 64-bit integer has at most 20 digits; anything longer is refused before int() sees it.
_MAX_INT_CHARS = 21

# A JSON string, possessively (each byte is looked at once). An unterminated string runs
# to the end of the input, so a hostile run of quotes cannot make the scan quadratic.
_STRING_RE = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
_DEPTH_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes
_SURROGATE_ESCAPE_RE = re.compile(rb"\\u[dD][89abAB]")
_LONE_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class UntrustedJSONError(ValueError):
    """A document refused by :func:`load_object`; ``str()`` is a short phrase for a message.

    The phrase completes a subject: ``f"manifest {exc}"`` reads "manifest is not
    valid JSON (NaN is not a JSON value)" or "manifest must be a JSON object, not
    list".
    """


def _refuse(reason: str) -> NoReturn:
    raise UntrustedJSONError(f"is not valid JSON ({reason})")


def _shorten(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:20]}… ({len(text)} characters)"


def _parse_int(text: str) -> int:
    if len(text) > _MAX_INT_CHARS:
        _refuse(f"number {_shorten(text)} does not fit in 64 bits")
    value = int(text)
    if not _INT64_MIN <= value < _UINT64_END:
        _refuse(f"number {text} does not fit in 64 bits")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _refuse(f"number {_shorten(text)} does not fit in 64 bits")
    return value


def _parse_constant(name: str) -> NoReturn:
    _refuse(f"{name} is not a JSON value")


def _depth(raw: bytes) -> int:
    """The deepest nesting of ``[``/``{`` outside strings (for valid JSON, exactly)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return 0  # cannot be deeper than that: skip the scan
    steps = _STRING_RE.sub(b"", raw).translate(_DEPTH_STEPS, _NOT_BRACKETS)
    return max(itertools.accumulate(memoryview(steps).cast("b")), default=0)


def _replace_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE_RE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {
            _replace_lone_surrogates(key): _replace_lone_surrogates(item)
            for key, item in value.items()
        }
    return value


def load_object(raw: bytes) -> dict[str, Any]:
    """Parse ``raw`` as one JSON object under the rules above.

    Raises :class:`UntrustedJSONError`, and nothing else, for input that breaks them.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _refuse(f"not UTF-8: {exc.reason} at byte {exc.start}")
    if _depth(raw) > MAX_DEPTH:
        _refuse(f"nested more than {MAX_DEPTH} levels deep")
    try:
        document = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except json.JSONDecodeError as exc:
        _refuse(str(exc))
    except RecursionError:  # unreachable after the depth check; kept as the last guard
        _refuse("nested too deeply")
    if not isinstance(document, dict):
        raise UntrustedJSONError(f"must be a JSON object, not {type(document).__name__}")
    if _SURROGATE_ESCAPE_RE.search(raw) is not None:
        fixed: dict[str, Any] = _replace_lone_surrogates(document)
        return fixed
    return document
