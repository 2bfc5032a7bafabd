"""Peer tools (skopeo, umoci, podman, docker-registry): skip locally, fail on CI."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

#: The Debian package that provides each peer tool, for the message.
DEBIAN_PACKAGES = {
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "umoci": "umoci",
    "podman": "podman",
}


def require_tool(name: str) -> str:
    """The path of ``name`` on PATH.

    When it is missing the test is skipped, except on CI (``CI=true``), where a missing
    peer means the machine is not set up as the tests assume, so the test fails.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    package = DEBIAN_PACKAGES.get(name, name)
    skip_or_fail(f"{name} is not installed (apt-get install {package})")


def skip_or_fail(message: str) -> NoReturn:
    """Skip on a developer machine; on CI (``CI=true``) the machine must have it: fail."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must provide it", pytrace=False)
    pytest.skip(message)
