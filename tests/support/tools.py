"""Peer tools (skopeo, umoci, podman, docker-registry): skip locally, fail on CI."""

from __future__ import annotations

import os
import shutil

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
    message = f"{name} is not installed (apt-get install {package})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must provide it", pytrace=False)
    pytest.skip(message)
