"""Fixtures for the CLI tests: an isolated ``towline`` runner and a repository with tags."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.images import TarBuilder, build_image
from support.registry import RegistryServer, push_image

from .runner import TowlineCLI

#: The tags of :func:`tagged_repo`, in the order the registry lists them.
TAGS = ("one", "two")


@pytest.fixture
def run_towline(tmp_path: Path) -> TowlineCLI:
    """``towline`` with a fresh store and an empty configuration under ``tmp_path``."""
    return TowlineCLI(tmp_path / "store", tmp_path / "home")


@pytest.fixture(scope="session")
def tagged_repo(registry: RegistryServer) -> dict[str, str]:
    """``cli/tags`` in ``registry`` with one small image per tag; tag -> image ID (hex)."""
    ids = {}
    for tag in TAGS:
        image = build_image([TarBuilder().add_file("tag.txt", tag.encode()).bytes()])
        push_image(registry, "cli/tags", tag, image)
        ids[tag] = image.config_digest.removeprefix("sha256:")
    return ids
