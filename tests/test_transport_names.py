"""Splitting ``transport:reference`` names as libimage does."""

from __future__ import annotations

import pytest

from towline.errors import TransportError
from towline.transports import (
    KNOWN_TRANSPORTS,
    SUPPORTED_TRANSPORTS,
    TRANSPORTS,
    require_supported,
    split_transport,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("docker://alpine", ("docker", "alpine")),
        ("docker://quay.io/a/b:1", ("docker", "quay.io/a/b:1")),
        ("docker://", ("docker", "")),
        # docker: without // is the image "docker" with a tag (libimage falls back).
        ("docker:latest", (None, "docker:latest")),
        ("docker:/x", (None, "docker:/x")),
        ("docker", (None, "docker")),
        ("oci:/tmp/layout:tag", ("oci", "/tmp/layout:tag")),
        ("oci-archive:/tmp/a.tar", ("oci-archive", "/tmp/a.tar")),
        (
            "docker-archive:/tmp/a.tar:busybox:latest",
            ("docker-archive", "/tmp/a.tar:busybox:latest"),
        ),
        ("dir:/tmp/d", ("dir", "/tmp/d")),
        ("docker-daemon:alpine:latest", ("docker-daemon", "alpine:latest")),
        ("containers-storage:alpine", ("containers-storage", "alpine")),
        ("sif:/x.sif", ("sif", "/x.sif")),
        ("tarball:/x.tar", ("tarball", "/x.tar")),
        ("oci:", ("oci", "")),
        # Not transports: registries, ports, tags, unknown or differently-cased prefixes.
        ("alpine", (None, "alpine")),
        ("alpine:3.20", (None, "alpine:3.20")),
        ("localhost:5000/a/b:t", (None, "localhost:5000/a/b:t")),
        ("quay.io/x:1", (None, "quay.io/x:1")),
        ("atomic:x", (None, "atomic:x")),
        ("ostree:x", (None, "ostree:x")),
        ("Docker://alpine", (None, "Docker://alpine")),
        ("http://example.com/x", (None, "http://example.com/x")),
        ("sha256:" + "a" * 64, (None, "sha256:" + "a" * 64)),
        ("", (None, "")),
    ],
)
def test_split(name: str, expected: tuple[str | None, str]) -> None:
    assert split_transport(name) == expected


def test_tables() -> None:
    assert set(KNOWN_TRANSPORTS) == {
        "dir",
        "docker",
        "docker-archive",
        "oci",
        "oci-archive",
        "docker-daemon",
        "containers-storage",
        "sif",
        "tarball",
    }
    # Every transport podman pulls from, except sif and tarball (build artefacts, not images).
    assert set(SUPPORTED_TRANSPORTS) == KNOWN_TRANSPORTS - {"sif", "tarball"}
    assert set(TRANSPORTS) == set(SUPPORTED_TRANSPORTS)


@pytest.mark.parametrize("transport", [None, *sorted(SUPPORTED_TRANSPORTS)])
def test_supported(transport: str | None) -> None:
    require_supported(transport)


@pytest.mark.parametrize("transport", sorted(KNOWN_TRANSPORTS - SUPPORTED_TRANSPORTS))
def test_known_but_unsupported(transport: str) -> None:
    with pytest.raises(TransportError) as info:
        require_supported(transport)
    supported = ", ".join(sorted(SUPPORTED_TRANSPORTS))
    assert str(info.value) == (
        f'transport "{transport}" is not supported by towline; supported: {supported}'
    )
    assert info.value.slug == "unsupported_transport"


def test_unknown_transport() -> None:
    with pytest.raises(TransportError, match='unknown transport "ftp"'):
        require_supported("ftp")


def test_split_then_require() -> None:
    transport, rest = split_transport("sif:/tmp/x.sif")
    with pytest.raises(TransportError, match='"sif" is not supported by towline'):
        require_supported(transport)
    transport, rest = split_transport("docker:latest")
    require_supported(transport)
    assert rest == "docker:latest"
