"""Streaming a blob into a sink, resuming a broken body with a Range request.

Modelled on containers/image ``docker/body_reader.go``: when the body breaks
off (connection reset, early EOF, read timeout), ask again for
``Range: bytes=<bytes already written>-``. The answer must be 206 with a
``Content-Range`` starting exactly there; a 200 means the server ignored the
Range header, and the caller has to restart the whole blob (slug
``"range_not_supported"``). Reconnecting is allowed the first time, after at
least 1 MiB of progress, or after 60 s; a body that keeps breaking without
progress is reported instead of retried for ever.

The digest is not checked here: the sink (``_native.LayerSink``/``BlobSink``)
verifies what it receives. This module only guarantees the sink gets each
byte exactly once, in order, and never more than ``size`` bytes.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import httpx

from towline.errors import DigestMismatchError, TransportError
from towline.registry.errors import describe_exception
from towline.transports.base import BlobSink

__all__ = [
    "CHUNK_SIZE",
    "ContentRange",
    "ResumePolicy",
    "check_range_response",
    "parse_content_range",
    "stream_blob",
]

CHUNK_SIZE = 1024 * 1024

_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class ContentRange:
    """A parsed ``Content-Range: bytes first-last/total`` (``total`` None for ``*``)."""

    first: int
    last: int
    total: int | None


@dataclass(frozen=True)
class ResumePolicy:
    """When and how fast to reconnect a broken body (c/image's body_reader rules)."""

    min_progress: int = 1024 * 1024
    min_interval: float = 60.0
    delay: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


def parse_content_range(value: str | None) -> ContentRange | None:
    """Parse a single-range ``Content-Range`` header; None when absent or malformed."""
    if value is None:
        return None
    match = _CONTENT_RANGE_RE.match(value.strip())
    if match is None:
        return None
    first, last = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if last < first or (total is not None and last >= total):
        return None
    return ContentRange(first, last, total)


def check_range_response(response: httpx.Response, offset: int, what: str) -> None:
    """Check the answer to ``Range: bytes=<offset>-`` (podman's rules).

    206 with ``Content-Range: bytes <offset>-<last>/<total|*>`` where, if the
    total is known, ``last + 1 == total``. A 200 raises TransportError slug
    ``"range_not_supported"``; anything else slug ``"invalid_range"``.
    """
    if response.status_code == 200:
        raise TransportError(
            f"{what}: server did not process a Range: header; restart the download",
            slug="range_not_supported",
        )
    header = response.headers.get("Content-Range")
    parsed = parse_content_range(header)
    if response.status_code != 206 or parsed is None:
        raise TransportError(
            f"{what}: resuming at byte {offset} got HTTP {response.status_code} "
            f"with Content-Range {header!r}; expected 206 and bytes {offset}-…",
            slug="invalid_range",
        )
    if parsed.first != offset or (parsed.total is not None and parsed.last + 1 != parsed.total):
        raise TransportError(
            f"{what}: resuming at byte {offset} got Content-Range {header!r}, "
            f"which does not continue the blob",
            slug="invalid_range",
        )


#: Failures that break a body in the middle and that a Range request can repair.
_RESUMABLE = (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout)


def stream_blob(
    open_body: Callable[[int], AbstractContextManager[httpx.Response]],
    sink: BlobSink,
    *,
    size: int | None,
    what: str,
    progress: Callable[[int], None] | None = None,
    policy: ResumePolicy | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> None:
    """Copy a blob into ``sink``, resuming after broken bodies.

    ``open_body(offset)`` returns a context manager for the streamed response:
    the whole blob when ``offset`` is 0, else the answer to
    ``Range: bytes=<offset>-`` (already checked for a 2xx status). ``size`` is
    the descriptor's size (None if unknown); more bytes than that, or fewer at
    the end, raise :class:`DigestMismatchError`. ``what`` names the blob in errors.
    """
    policy = policy or ResumePolicy()
    reconnects = 0
    last_reconnect_at = policy.clock()
    last_reconnect_offset = sink.bytes_written
    while True:
        offset = sink.bytes_written
        if size is not None and offset == size and offset > 0:
            return  # the body broke after the last byte: nothing left to fetch
        # Bytes are gathered into chunk_size writes; what arrived before a break is
        # still handed over, so the Range request asks only for what is missing.
        # Pieces are joined once per chunk_size (one copy), not appended to a buffer.
        buffer = _Pending()
        try:
            with open_body(offset) as response:
                if offset > 0:
                    check_range_response(response, offset, what)
                # Raw bytes: a blob is asked for with Accept-Encoding: identity, and a
                # Content-Encoding on it is not undone (no inflating past the size check).
                for data in response.iter_raw():
                    received = sink.bytes_written + buffer.size + len(data)
                    if size is not None and received > size:
                        raise _size_error(what, size, received, "more")
                    if buffer.size + len(data) > chunk_size:
                        _hand_over(sink, buffer.take(), progress)
                    buffer.add(data)
            _hand_over(sink, buffer.take(), progress)
        except _RESUMABLE as exc:
            _hand_over(sink, buffer.take(), progress)
            now = policy.clock()
            progressed = sink.bytes_written - last_reconnect_offset
            if not (
                reconnects == 0
                or progressed >= policy.min_progress
                or now - last_reconnect_at >= policy.min_interval
            ):
                raise TransportError(
                    f"{what}: the connection broke again after {progressed} bytes "
                    f"({describe_exception(exc)}); giving up after {reconnects} reconnects",
                    slug="connection",
                ) from exc
            reconnects += 1
            last_reconnect_at, last_reconnect_offset = now, sink.bytes_written
            # Like c/image: a short, jittered pause before asking for the rest.
            policy.sleep(policy.delay + random.uniform(0, policy.delay / 10))
            continue
        if size is not None and sink.bytes_written != size:
            raise _size_error(what, size, sink.bytes_written, "fewer")
        return


class _Pending:
    """Received pieces not yet handed to the sink."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> None:
        self.pieces.append(data)
        self.size += len(data)

    def take(self) -> bytes:
        data = self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)
        self.pieces.clear()
        self.size = 0
        return data


def _hand_over(sink: BlobSink, data: bytes, progress: Callable[[int], None] | None) -> None:
    if data:
        sink.write(data)
        if progress is not None:
            progress(len(data))


def _size_error(what: str, size: int, got: int, word: str) -> DigestMismatchError:
    return DigestMismatchError(
        f"{what}: the registry sent {word} bytes than the descriptor's size, "
        f"expected {size}, got {got}",
        slug="size_mismatch",
        expected=str(size),
        actual=str(got),
    )
