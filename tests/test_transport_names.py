"""Splitting ``transport:reference`` names as libimage does."""

from __future__ import annotations

import pytest

from towline.errors import TransportError
from towline.transports import (
    KNOWN_TRANSPORTS,
    SUPPORTED_TRANSPORTS,
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
    assert set(SUPPORTED_TRANSPORTS) == {"docker"}
    assert SUPPORTED_TRANSPORTS <= KNOWN_TRANSPORTS


@pytest.mark.parametrize("transport", [None, "docker"])
def test_supported(transport: str | None) -> None:
    require_supported(transport)


@pytest.mark.parametrize("transport", sorted(KNOWN_TRANSPORTS - {"docker"}))
def test_known_but_unsupported(transport: str) -> None:
    with pytest.raises(TransportError) as info:
        require_supported(transport)
    assert str(info.value) == (
        f'transport "{transport}" is not supported yet by towline; supported: docker'
    )
    assert info.value.slug == "unsupported_transport"


def test_unknown_transport() -> None:
    with pytest.raises(TransportError, match='unknown transport "ftp"'):
        require_supported("ftp")


def test_split_then_require() -> None:
    transport, rest = split_transport("oci:/tmp/l")
    with pytest.raises(TransportError, match='"oci" is not supported yet'):
        require_supported(transport)
    transport, rest = split_transport("docker:latest")
    require_supported(transport)
    assert rest == "docker:latest"
