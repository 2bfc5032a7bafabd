"""The transport table: ``transport:reference`` names, and which module serves each transport.

Names are split as libimage's ``Runtime.Pull`` and containers/image
``alltransports.ParseImageName`` do: the text before the **first** ``:`` is a
transport if it is a known transport name. ``docker:`` counts only when
followed by ``//``, so ``docker:latest`` stays the image ``docker:latest``.
Anything else is a plain registry name.

:data:`TRANSPORTS` maps each transport towline serves to the module that parses
its references (a ``parse(rest) -> ImageReference`` function), imported only
when that transport is used: importing towline stays cheap, and nothing is
registered as a side effect of an import (as c/image's ``alltransports``, but
explicit). Callers dispatch through :func:`parse_image_name` and the
:class:`~towline.transports.base.ImageReference` it returns; nothing else in
towline branches on a transport's name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from towline.errors import TransportError

if TYPE_CHECKING:
    from towline.transports.base import ImageReference

__all__ = [
    "KNOWN_TRANSPORTS",
    "SUPPORTED_TRANSPORTS",
    "TRANSPORTS",
    "parse_image_name",
    "parse_transport_reference",
    "require_supported",
    "split_transport",
]

#: Transport names containers/image registers (containers-transports(5)).
KNOWN_TRANSPORTS: frozenset[str] = frozenset(
    {
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
)

#: Transport name → the module whose ``parse(rest)`` makes its references.
TRANSPORTS: dict[str, str] = {
    "containers-storage": "towline.transports.storage",
    "dir": "towline.transports.dir",
    "docker": "towline.transports.docker",
    "docker-archive": "towline.transports.docker_archive",
    "docker-daemon": "towline.transports.docker_daemon",
    "oci": "towline.transports.oci_layout",
    "oci-archive": "towline.transports.oci_archive",
}

#: Transports towline implements.
SUPPORTED_TRANSPORTS: frozenset[str] = frozenset(TRANSPORTS)


def split_transport(name: str) -> tuple[str | None, str]:
    """Split ``transport:rest`` into ``(transport, rest)``, or ``(None, name)`` for a plain name.

    ``docker://alpine`` → ``("docker", "alpine")``; ``oci:/tmp/l:tag`` →
    ``("oci", "/tmp/l:tag")``; ``docker:latest`` and ``quay.io/x:1`` →
    ``(None, name)``.
    """
    prefix, sep, rest = name.partition(":")
    if not sep or prefix not in KNOWN_TRANSPORTS:
        return None, name
    if prefix == "docker":
        if not rest.startswith("//"):
            # The docker transport rejects it; libimage then reads it as an image name.
            return None, name
        return "docker", rest.removeprefix("//")
    return prefix, rest


def require_supported(transport: str | None) -> None:
    """Raise :class:`~towline.errors.TransportError` unless towline can use ``transport``.

    None (a plain registry name) is always fine.
    """
    if transport is None or transport in SUPPORTED_TRANSPORTS:
        return
    supported = ", ".join(sorted(SUPPORTED_TRANSPORTS))
    if transport in KNOWN_TRANSPORTS:
        raise TransportError(
            f'transport "{transport}" is not supported by towline; supported: {supported}',
            slug="unsupported_transport",
        )
    raise TransportError(
        f'unknown transport "{transport}": use one of {", ".join(sorted(KNOWN_TRANSPORTS))}'
        f" (towline supports: {supported})",
        slug="unknown_transport",
    )


def parse_transport_reference(transport: str, rest: str) -> ImageReference:
    """The reference ``rest`` of ``transport`` (which must be supported)."""
    require_supported(transport)
    module = importlib.import_module(TRANSPORTS[transport])
    reference: ImageReference = module.parse(rest)
    return reference


def parse_image_name(name: str) -> ImageReference:
    """The reference a full ``transport:reference`` name denotes.

    A name without a known transport prefix is refused (as skopeo's arguments):
    callers that accept plain registry names handle them before calling this.
    """
    transport, rest = split_transport(name)
    if transport is None:
        raise TransportError(
            f"invalid image name {name!r}: expected transport:reference, e.g. "
            f"docker://{name}, oci:DIR[:REF] or containers-storage:{name}",
            slug="invalid_transport_name",
        )
    return parse_transport_reference(transport, rest)
