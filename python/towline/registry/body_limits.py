"""Bounded reads of registry and token-server bodies, as containers/image's ``iolimits``.

A registry decides how long its bodies are; towline decides how much of them it
holds. Three rules, one per kind of body:

* **Errors** (every non-2xx answer, redirects included): :func:`cap_error_body` is
  an httpx response hook that lets at most :data:`MAX_ERROR_BODY_SIZE` (1 MiB,
  c/image's ``MaxErrorBodySize``) through, then ends the body and closes the
  connection. It also keeps httpx from inflating the body: a 1 MiB gzip body
  would otherwise grow to 1 GiB when httpx reads it for a redirect or an auth
  retry. :func:`error_body` returns the (at most 1 MiB) text, gunzipped here
  within the same limit.
* **Small documents** (manifests, configs, tag lists, token answers):
  :func:`read_at_most` streams the body and stops with a ``too_large``
  :class:`~towline.errors.TransportError` past the limit, counting the bytes
  after decompression, which is done here within the limit.
* **Blobs** are streamed as they are sent (``Accept-Encoding: identity``; a
  ``Content-Encoding`` is not undone) and bounded by their descriptor's size.

Only gzip is undone (what Go's HTTP client asks for and decodes); registry
requests advertise ``Accept-Encoding: gzip`` (:data:`ACCEPT_ENCODING`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import httpx

from towline.errors import TransportError

__all__ = [
    "ACCEPT_ENCODING",
    "MAX_ERROR_BODY_SIZE",
    "MAX_TOKEN_BODY_SIZE",
    "cap_error_body",
    "error_body",
    "install_body_limits",
    "read_at_most",
]

#: Largest error body read (c/image ``iolimits.MaxErrorBodySize``).
MAX_ERROR_BODY_SIZE = 1 << 20
#: Largest token-server answer read (c/image ``iolimits.MaxAuthTokenBodySize``).
MAX_TOKEN_BODY_SIZE = 1 << 20
#: The only content coding towline undoes, so the only one it asks for.
ACCEPT_ENCODING = "gzip"


class _CappedStream(httpx.SyncByteStream):
    """At most ``limit`` raw bytes of ``inner``; remembers the Content-Encoding it hid."""

    def __init__(self, inner: httpx.SyncByteStream, limit: int, encoding: str) -> None:
        self._inner = inner
        self._limit = limit
        self.encoding = encoding

    def __iter__(self) -> Iterator[bytes]:
        left = self._limit
        for chunk in self._inner:
            if len(chunk) > left:
                if left:
                    yield chunk[:left]
                return  # the response closes the connection: the rest is never read
            left -= len(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


def cap_error_body(response: httpx.Response) -> None:
    """httpx ``response`` hook: a non-2xx body yields at most 1 MiB, never inflated."""
    if response.is_success or not isinstance(response.stream, httpx.SyncByteStream):
        return
    if isinstance(response.stream, _CappedStream):
        return
    encoding = response.headers.get("content-encoding", "")
    if encoding:
        del response.headers["content-encoding"]
    response.stream = _CappedStream(response.stream, MAX_ERROR_BODY_SIZE, encoding)


def install_body_limits(client: httpx.Client) -> None:
    """Add :func:`cap_error_body` to ``client``'s response hooks (once)."""
    hooks = client.event_hooks["response"]
    if cap_error_body not in hooks:
        hooks.append(cap_error_body)


class _Inflater:
    """Undo a response's Content-Encoding (identity or gzip), never beyond a limit."""

    def __init__(self, encoding: str) -> None:
        coding = encoding.strip().lower()
        self.supported = coding in ("", "identity", "gzip", "x-gzip")
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS) if "gzip" in coding else None

    def feed(self, data: bytes, room: int) -> bytes:
        """Decode ``data``; at most ``room`` bytes come out (``room + 1`` to detect excess)."""
        if self._zlib is None:
            return data[:room]
        return self._zlib.decompress(self._zlib.unconsumed_tail + data, room)


def error_body(response: httpx.Response) -> bytes:
    """At most :data:`MAX_ERROR_BODY_SIZE` bytes of a non-2xx body, decoded; closes it.

    A body that cannot be read or decoded counts as empty: the status still
    says what happened, and an error about the error would help no one.
    """
    stream = response.stream
    hidden = stream.encoding if isinstance(stream, _CappedStream) else None
    try:
        try:
            raw = response.content  # already read, by httpx or by the caller
        except httpx.ResponseNotRead:
            raw = _read_raw(response, MAX_ERROR_BODY_SIZE)
        else:
            if hidden is None:
                return raw[:MAX_ERROR_BODY_SIZE]  # httpx has decoded it
    except (httpx.HTTPError, httpx.StreamError):
        return b""
    finally:
        response.close()
    inflater = _Inflater(response.headers.get("content-encoding", "") if hidden is None else hidden)
    if not inflater.supported:
        return b""
    try:
        return inflater.feed(raw[:MAX_ERROR_BODY_SIZE], MAX_ERROR_BODY_SIZE)
    except zlib.error:
        return b""


def _read_raw(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    received = 0
    for chunk in response.iter_raw():
        chunks.append(chunk[: limit - received])
        received += len(chunks[-1])
        if received >= limit:
            break
    return b"".join(chunks)


def read_at_most(response: httpx.Response, limit: int, action: str, sender: str) -> bytes:
    """Stream a 2xx body of at most ``limit`` bytes (after gunzip) and return it.

    ``action`` starts the error message (``"reading manifest latest in host/app"``),
    ``sender`` names who sent too much (``"the registry"``). Raises
    :class:`TransportError` slug ``"too_large"`` (or ``"invalid_encoding"``) as soon
    as the limit is passed, without reading further; the caller closes the response.
    """
    try:
        content = response.content  # read already (a response built in memory)
    except httpx.ResponseNotRead:
        pass
    else:
        if len(content) > limit:
            raise TransportError(
                f"{action}: {sender} sent more than the {limit}-byte limit", slug="too_large"
            )
        return content
    encoding = response.headers.get("content-encoding", "")
    inflater = _Inflater(encoding)
    if not inflater.supported:
        raise TransportError(
            f"{action}: {sender} answered with Content-Encoding {encoding!r}, which towline "
            f"did not ask for (it accepts {ACCEPT_ENCODING})",
            slug="invalid_encoding",
        )
    length = response.headers.get("Content-Length", "")
    if not encoding and length.isdigit() and len(length) < 20 and int(length) > limit:
        raise TransportError(
            f"{action}: {sender} announced {length} bytes, more than the {limit}-byte limit",
            slug="too_large",
        )
    chunks: list[bytes] = []
    received = 0
    try:
        for data in response.iter_raw():
            chunk = inflater.feed(data, limit + 1 - received)
            received += len(chunk)
            if received > limit:
                raise TransportError(
                    f"{action}: {sender} sent more than the {limit}-byte limit",
                    slug="too_large",
                )
            chunks.append(chunk)
    except zlib.error as exc:
        raise TransportError(
            f"{action}: {sender} sent a body that is not valid gzip ({exc})",
            slug="invalid_encoding",
        ) from exc
    return b"".join(chunks)
