"""Fixtures for the layout, archive and dir transports: an isolated Runtime, the peers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import towline

from .peers import Peers

#: The options every test registry needs (plain HTTP on 127.0.0.1).
INSECURE = towline.PullOptions(tls_verify=False)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment in which no host configuration is read."""
    home = tmp_path / "home"
    (tmp_path / "config-root/etc/containers").mkdir(parents=True)
    home.mkdir()
    return {
        "HOME": str(home),
        "TOWLINE_CONFIG_ROOT": str(tmp_path / "config-root"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }


@pytest.fixture
def runtime(tmp_path: Path, env: dict[str, str]) -> Iterator[towline.Runtime]:
    """A Runtime on a fresh store under ``tmp_path``."""
    with towline.Runtime(tmp_path / "store", env=env) as rt:
        yield rt


@pytest.fixture
def other_runtime(tmp_path: Path, env: dict[str, str]) -> Iterator[towline.Runtime]:
    """A second, independent store: where a round trip ends."""
    with towline.Runtime(tmp_path / "store2", env=env) as rt:
        yield rt


@pytest.fixture
def peers(tmp_path: Path) -> Peers:
    """skopeo and umoci, isolated from the host's configuration."""
    return Peers(tmp_path / "peer-home")


def store_files(root: Path) -> set[str]:
    """Every file and directory in a store's blobs/ and layers/ (its visible content)."""
    found = set()
    for part in ("blobs", "layers"):
        for dirpath, dirnames, filenames in os.walk(root / part):
            for name in dirnames + filenames:
                found.add(str(Path(dirpath, name).relative_to(root)))
    return found
