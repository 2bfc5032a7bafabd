"""Backoff, Retry-After and the retry loop, with synthetic responses and no sleeping."""

from __future__ import annotations

import email.utils
import logging

import httpx
import pytest

from towline.registry.retry import (
    RetryPolicy,
    format_delay,
    is_retryable_exception,
    retry_after_seconds,
    send_with_retries,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("1", 1.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("3600", 60.0),  # capped
        ("-1", None),
        ("soon", None),
        ("1.5", None),
        (email.utils.formatdate(NOW + 10, usegmt=True), 10.0),
        (email.utils.formatdate(NOW + 600, usegmt=True), 60.0),
        (email.utils.formatdate(NOW - 600, usegmt=True), 0.0),  # in the past: no wait
        ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: not an HTTP-date
    ],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, now=NOW) == expected


def test_backoff_is_exponential_with_at_most_ten_percent_jitter() -> None:
    policy = RetryPolicy()
    for attempt, base in enumerate([1.0, 2.0, 4.0, 8.0]):
        for _ in range(20):
            assert base <= policy.backoff(attempt) <= base * 1.1
    fixed = RetryPolicy(delay=0.5, jitter=lambda base: 0.0)
    assert [fixed.backoff(a) for a in range(3)] == [0.5, 0.5, 0.5]
    assert RetryPolicy(delay=0.0).backoff(3) == 0.0


@pytest.mark.parametrize(
    ("seconds", "text"), [(1.0, "1s"), (2.0, "2s"), (1.0432, "1.043s"), (0.0, "0s"), (0.5, "0.5s")]
)
def test_format_delay(seconds: float, text: str) -> None:
    assert format_delay(seconds) == text


def test_retryable_exceptions() -> None:
    assert is_retryable_exception(httpx.ConnectError("refused"))
    assert is_retryable_exception(httpx.ReadTimeout("slow"))
    assert is_retryable_exception(httpx.RemoteProtocolError("peer closed connection"))
    assert not is_retryable_exception(httpx.UnsupportedProtocol("ftp"))
    assert not is_retryable_exception(ValueError("x"))
    import ssl

    tls = httpx.ConnectError("wrong version number")
    tls.__cause__ = ssl.SSLError(1, "WRONG_VERSION_NUMBER")
    assert not is_retryable_exception(tls)


class Script:
    """Plays back responses/exceptions and records sleeps."""

    def __init__(self, *steps: int | Exception, headers: dict[str, str] | None = None) -> None:
        self.steps = list(steps)
        self.headers = headers or {}
        self.calls = 0
        self.sleeps: list[float] = []
        self.responses: list[httpx.Response] = []

    def send(self) -> httpx.Response:
        step = self.steps[self.calls]
        self.calls += 1
        if isinstance(step, Exception):
            raise step
        response = httpx.Response(step, headers=self.headers)
        self.responses.append(response)
        return response

    def policy(self, max_retries: int = 3, delay: float | None = None) -> RetryPolicy:
        return RetryPolicy(
            max_retries=max_retries,
            delay=delay,
            sleep=self.sleeps.append,
            jitter=lambda base: 0.0,
            clock=lambda: NOW,
        )


def test_503_then_success_is_retried_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    script = Script(503, httpx.ConnectError("Connection refused"), 200)
    with caplog.at_level(logging.WARNING, logger="towline.registry"):
        response = send_with_retries(script.send, script.policy(delay=1.0), "GET /v2/x")
    assert response.status_code == 200
    assert script.calls == 3
    assert script.sleeps == [1.0, 1.0]
    assert script.responses[0].is_closed
    assert caplog.messages == [
        "Failed, retrying in 1s ... (1/3). Error: GET /v2/x: received unexpected HTTP "
        "status: 503 Service Unavailable",
        "Failed, retrying in 1s ... (2/3). Error: GET /v2/x: ConnectError: Connection refused",
    ]


def test_default_delays_double() -> None:
    script = Script(502, 504, 503, 200)
    assert send_with_retries(script.send, script.policy(), "GET /").status_code == 200
    assert script.sleeps == [1.0, 2.0, 4.0]


def test_retries_run_out_and_the_last_answer_or_error_is_returned() -> None:
    script = Script(503, 503, 503, 503, 200)
    assert send_with_retries(script.send, script.policy(), "GET /").status_code == 503
    assert script.calls == 4  # 1 + max_retries
    errors = Script(*[httpx.ReadTimeout("t")] * 3)
    with pytest.raises(httpx.ReadTimeout):
        send_with_retries(errors.send, errors.policy(max_retries=2), "GET /")
    assert errors.calls == 3


@pytest.mark.parametrize("status", [500, 404, 401, 400])
def test_other_statuses_are_final(status: int) -> None:
    script = Script(status, 200)
    assert send_with_retries(script.send, script.policy(), "GET /").status_code == status
    assert script.calls == 1


def test_non_retryable_exceptions_propagate_at_once() -> None:
    script = Script(httpx.UnsupportedProtocol("nope"), 200)
    with pytest.raises(httpx.UnsupportedProtocol):
        send_with_retries(script.send, script.policy(), "GET /")
    assert script.calls == 1


def test_429_honours_retry_after() -> None:
    script = Script(429, 429, 200, headers={"Retry-After": "3"})
    assert send_with_retries(script.send, script.policy(), "GET /").status_code == 200
    assert script.sleeps == [3.0, 3.0]


def test_429_without_retry_after_doubles_from_two_seconds_and_gives_up_after_five() -> None:
    script = Script(429, 429, 429, 429, 429, 200)
    response = send_with_retries(script.send, script.policy(max_retries=0), "GET /")
    assert response.status_code == 429
    assert script.calls == 5
    assert script.sleeps == [2.0, 4.0, 8.0, 16.0]


def test_429_budget_is_separate_from_the_failure_budget() -> None:
    script = Script(429, 503, 429, 503, 200)
    response = send_with_retries(script.send, script.policy(max_retries=2, delay=0.0), "GET /")
    assert response.status_code == 200
