"""Retrying registry requests: transient network failures, 502-504 and 429.

Two independent budgets, as containers/image and libimage have:

* transient failures (connection errors, timeouts, a connection closed before
  the response, HTTP 502/503/504) get up to ``max_retries`` extra attempts,
  waiting ``delay`` (or 2^attempt seconds) plus up to 10% jitter; HTTP 500 and
  other statuses are final;
* HTTP 429 gets up to 5 attempts in total, waiting for ``Retry-After`` (seconds
  or an HTTP-date, capped at 60 s) or 2 s doubling; after the last one the 429
  response is handed back for the caller to report.

Sleeping goes through an injectable function so tests do not wait.
"""

from __future__ import annotations

import email.utils
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

__all__ = [
    "RETRYABLE_STATUSES",
    "RetryPolicy",
    "format_delay",
    "is_retryable_exception",
    "is_tls_error",
    "retry_after_seconds",
    "send_with_retries",
]

logger = logging.getLogger("towline.registry")

#: Statuses retried like network failures (podman retries only these, not 500).
RETRYABLE_STATUSES = frozenset({502, 503, 504})

_RATE_LIMIT_CAP = 60.0
_RATE_LIMIT_FIRST_DELAY = 2.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; ``sleep`` and ``jitter`` are injectable for tests."""

    max_retries: int = 3
    delay: float | None = None
    rate_limit_attempts: int = 5
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[float], float] = field(default=lambda base: random.uniform(0, base / 10))
    clock: Callable[[], float] = time.time

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        base = self.delay if self.delay is not None else float(2**attempt)
        return base + self.jitter(base) if base > 0 else 0.0


def is_retryable_exception(exc: BaseException) -> bool:
    """True for failures worth another attempt: network errors, timeouts, early EOF.

    TLS failures (bad certificate, HTTP spoken on an HTTPS port) are excluded:
    they will fail the same way again.
    """
    if not isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError):
        return False
    return not is_tls_error(exc)


def is_tls_error(exc: BaseException) -> bool:
    """True when ``exc`` was caused by TLS (certificate, handshake, HTTP on an HTTPS port)."""
    cause: BaseException | None = exc
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse a Retry-After header (delta-seconds or HTTP-date); None when absent or invalid.

    The result is capped at 60 s and never negative.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), _RATE_LIMIT_CAP)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return min(max(when.timestamp() - current, 0.0), _RATE_LIMIT_CAP)


def format_delay(seconds: float) -> str:
    """Render a delay the way Go prints durations in podman's log lines ("1s", "1.043s")."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def send_with_retries(
    send: Callable[[], httpx.Response], policy: RetryPolicy, describe: str
) -> httpx.Response:
    """Call ``send`` until it yields a final response, retrying as the module describes.

    ``describe`` names the request in log lines (e.g. "GET .../manifests/latest").
    Responses that are retried are closed here; the returned one belongs to the
    caller. The last exception is re-raised when every attempt failed.
    """
    failures = 0
    rate_limited = 0
    while True:
        try:
            response = send()
        except httpx.HTTPError as exc:
            if not is_retryable_exception(exc) or failures >= policy.max_retries:
                raise
            error = _describe(exc)
        else:
            status = response.status_code
            if status == 429 and rate_limited + 1 < policy.rate_limit_attempts:
                header = retry_after_seconds(response.headers.get("Retry-After"), policy.clock())
                delay = (
                    header
                    if header is not None
                    else min(_RATE_LIMIT_FIRST_DELAY * 2**rate_limited, _RATE_LIMIT_CAP)
                )
                rate_limited += 1
                response.close()
                logger.warning(
                    "Too many requests to %s, retrying in %s (%d/%d)",
                    describe,
                    format_delay(delay),
                    rate_limited,
                    policy.rate_limit_attempts - 1,
                )
                policy.sleep(delay)
                continue
            if status not in RETRYABLE_STATUSES or failures >= policy.max_retries:
                return response
            response.close()
            error = f"received unexpected HTTP status: {status} {response.reason_phrase}"
        delay = policy.backoff(failures)
        failures += 1
        logger.warning(
            "Failed, retrying in %s ... (%d/%d). Error: %s: %s",
            format_delay(delay),
            failures,
            policy.max_retries,
            describe,
            error,
        )
        policy.sleep(delay)
