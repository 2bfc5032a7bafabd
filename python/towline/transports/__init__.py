"""Transport names: which ``transport:reference`` prefixes exist and which towline serves.

This module only splits names, following libimage's ``Runtime.Pull`` and
containers/image ``alltransports.ParseImageName``: the text before the
**first** ``:`` is a transport if it is a known transport name. ``docker:``
counts only when followed by ``//``, so ``docker:latest`` stays the image
``docker:latest``. Anything else is a plain registry name.
"""

from __future__ import annotations

from towline.errors import TransportError

__all__ = ["KNOWN_TRANSPORTS", "SUPPORTED_TRANSPORTS", "require_supported", "split_transport"]

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

#: Transports towline implements so far.
SUPPORTED_TRANSPORTS: frozenset[str] = frozenset({"docker"})


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
            f'transport "{transport}" is not supported yet by towline; supported: {supported}',
            slug="unsupported_transport",
        )
    raise TransportError(
        f'unknown transport "{transport}": use one of {", ".join(sorted(KNOWN_TRANSPORTS))}'
        f" (towline supports: {supported})",
        slug="unknown_transport",
    )
