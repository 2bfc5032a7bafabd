"""Content-Range parsing and the checks on a resumed blob request (pure)."""

from __future__ import annotations

import httpx
import pytest

from towline.errors import TransportError
from towline.registry.blob_reader import ContentRange, check_range_response, parse_content_range


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/100", ContentRange(0, 99, 100)),
        ("bytes 100-199/*", ContentRange(100, 199, None)),
        (" bytes 5-5/6 ", ContentRange(5, 5, 6)),
        (None, None),
        ("bytes 10-5/100", None),  # last before first
        ("bytes 0-100/100", None),  # last beyond the total
        ("bytes */100", None),  # unsatisfied-range form
        ("items 0-1/2", None),
        ("bytes 0-1/2, bytes 3-4/5", None),
        ("bytes=0-1/2", None),
    ],
)
def test_parse_content_range(value: str | None, expected: ContentRange | None) -> None:
    assert parse_content_range(value) == expected


def test_a_206_continuing_at_the_offset_is_accepted() -> None:
    check_range_response(httpx.Response(206, headers={"Content-Range": "bytes 10-99/100"}), 10, "b")
    check_range_response(httpx.Response(206, headers={"Content-Range": "bytes 10-99/*"}), 10, "b")


def test_a_200_means_range_is_not_supported() -> None:
    with pytest.raises(TransportError, match="server did not process a Range: header") as info:
        check_range_response(httpx.Response(200), 10, "fetching blob sha256:x from r/a")
    assert info.value.slug == "range_not_supported"
    assert str(info.value).startswith("fetching blob sha256:x from r/a: ")


@pytest.mark.parametrize(
    ("status", "content_range"),
    [
        (206, None),
        (206, "bytes 0-99/100"),  # starts at the wrong offset
        (206, "bytes 10-49/100"),  # stops short of the total
        (206, "garbage"),
        (416, "bytes */100"),
    ],
)
def test_bad_range_answers_are_refused(status: int, content_range: str | None) -> None:
    headers = {"Content-Range": content_range} if content_range else {}
    with pytest.raises(TransportError) as info:
        check_range_response(httpx.Response(status, headers=headers), 10, "b")
    assert info.value.slug == "invalid_range"
