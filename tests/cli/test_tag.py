"""``towline tag NAME NEW...`` as ``podman tag``: names normalized as libimage's
``NormalizeName`` (``foo`` → ``localhost/foo:latest``), nothing printed, errors exit 125."""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.registry import PushedImage

from .runner import TowlineCLI


def inspect(run_towline: TowlineCLI, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(run_towline("inspect", name).ok().stdout)
    return document


def test_tag_adds_names_and_prints_nothing(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage]
) -> None:
    image = test_images["gzip"]
    image_id = run_towline.pull(image.reference)
    result = run_towline("tag", image_id[:12], "foo", "bar:2", "quay.io/x/y:3", "docker.io/z").ok()
    assert (result.stdout, result.stderr) == ("", "")
    assert sorted(inspect(run_towline, image.reference)["names"]) == sorted(
        [
            image.reference,
            "localhost/foo:latest",
            "localhost/bar:2",
            "quay.io/x/y:3",
            "docker.io/library/z:latest",
        ]
    )
    for name in ("foo", "bar:2", "quay.io/x/y:3", "z"):
        assert inspect(run_towline, name)["id"] == image_id
    # rmi of a new name only takes that name away.
    assert run_towline("rmi", "foo").ok().stdout == "Untagged: localhost/foo:latest\n"
    assert inspect(run_towline, "bar:2")["id"] == image_id


def test_tag_moves_a_name_between_images(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage]
) -> None:
    first = run_towline.pull(test_images["gzip"].reference)
    second = run_towline.pull(test_images["shared-a"].reference)
    run_towline("tag", first, "moving:1").ok()
    run_towline("tag", second, "moving:1").ok()
    assert inspect(run_towline, "moving:1")["id"] == second
    assert "localhost/moving:1" not in inspect(run_towline, first)["names"]


def test_tag_of_an_unknown_image(run_towline: TowlineCLI) -> None:
    assert run_towline("tag", "nothere", "foo").error() == "nothere: image not known"


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ("Foo", "must be lowercase"),
        ("a b", "invalid reference"),
        ("foo@sha256:" + "b" * 64, "tag by digest not supported"),
    ],
)
def test_tag_refuses_an_invalid_name_and_adds_none(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage], new: str, message: str
) -> None:
    image = test_images["gzip"]
    run_towline.pull(image.reference)
    assert message in run_towline("tag", image.reference, "good:1", new).error()
    assert inspect(run_towline, image.reference)["names"] == [image.reference]


def test_tag_needs_a_new_name(run_towline: TowlineCLI) -> None:
    assert "Missing argument 'NEW_NAMES...'" in run_towline("tag", "alpine").error()
