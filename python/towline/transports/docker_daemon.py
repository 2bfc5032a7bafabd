"""The ``docker-daemon:`` transport: images of a Docker Engine, read over its unix socket.

References follow containers/image ``docker/daemon``: ``docker-daemon:NAME:TAG``
or ``NAME@DIGEST`` (``ParseNormalizedNamed``; a bare NAME is refused, because
the engine would export every tag of it), or ``docker-daemon:sha256:<64 hex>``
for an image ID. The engine is reached at ``$DOCKER_HOST`` (``unix://`` only)
or ``/var/run/docker.sock``, taken from the runtime's environment.

The image is exported with the Engine API's ``GET /images/{name}/get``, streamed
into a temporary file under the transport context's ``tmp_dir`` (removed when
the source closes), and read as a ``docker-archive:``. A pulled image is named
by the requested name (libimage ``copyFromDefault``); by ID it stays unnamed.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket as sockets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from towline.errors import (
    InvalidReferenceError,
    ManifestUnknownError,
    TransportError,
)
from towline.quoting import go_quote
from towline.reference import Reference, parse_normalized_named
from towline.transports.base import ImageDestination, TransportContext
from towline.transports.docker_archive import (
    DockerArchiveReference,
    DockerArchiveSource,
    open_archive_source,
)
from towline.untrusted_json import UntrustedJSONError, load_object

__all__ = ["DEFAULT_SOCKET", "DockerDaemonReference", "engine_socket", "parse"]

#: Where the Docker Engine listens when ``DOCKER_HOST`` is not set.
DEFAULT_SOCKET = "/var/run/docker.sock"
#: Algorithms go-digest knows, by the length of their hex value.
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX_RE = re.compile(r"[0-9a-f]+")
_CHUNK = 1 << 20
_ERROR_BODY_LIMIT = 64 << 10
# Connecting is quick or broken; an export may take a while before its first byte.
_TIMEOUT = httpx.Timeout(30.0, read=600.0)


@dataclass(frozen=True)
class DockerDaemonReference:
    """``docker-daemon:NAME:TAG``, ``NAME@DIGEST`` or ``sha256:<id>``; one of the two is set."""

    ref: Reference | None = None
    image_id: str | None = None
    transport: str = "docker-daemon"

    @property
    def within(self) -> str:
        """The reference as the engine takes it: the ID, or the familiar name."""
        if self.image_id is not None:
            return self.image_id
        assert self.ref is not None
        return self.ref.familiar()

    def __str__(self) -> str:
        return f"docker-daemon:{self.within}"

    def new_source(self, context: TransportContext) -> DockerArchiveSource:
        socket = engine_socket(context.env, str(self))
        names = [str(self.ref)] if self.ref is not None else []
        export = _export(socket, self, context.tmp_dir)
        try:
            archive = DockerArchiveReference(export)
        except BaseException:
            export.unlink(missing_ok=True)
            raise
        return open_archive_source(
            archive,
            context.tmp_dir,
            names=names,
            cleanup=lambda: export.unlink(missing_ok=True),
            description=str(self),
        )

    def new_destination(self, context: TransportContext) -> ImageDestination:
        raise TransportError(
            f"{self}: towline reads from the Docker engine but does not write to it; copy to "
            "docker-archive:FILE and run `docker load -i FILE`",
            slug="unsupported_transport",
        )


def parse(rest: str) -> DockerDaemonReference:
    """The reference of ``docker-daemon:<rest>`` (c/image ``daemon.ParseReference``)."""
    algorithm, sep, encoded = rest.partition(":")
    # What go-digest parses as a digest is an image ID, never a name:tag.
    if sep and len(encoded) == _DIGEST_LENGTHS.get(algorithm) and _HEX_RE.fullmatch(encoded):
        if algorithm != "sha256":
            raise InvalidReferenceError(
                f"Invalid docker-daemon: reference {rest}: only digest algorithm sha256 accepted"
            )
        return DockerDaemonReference(image_id=rest)
    ref = parse_normalized_named(rest)
    if Reference(ref.domain, ref.path).familiar() == "sha256":
        raise InvalidReferenceError(
            f"Invalid docker-daemon: reference {rest}: The sha256 repository name is reserved "
            "for (non-shortened) digest references; give the full image ID, sha256:<64 hex>"
        )
    if ref.tag is None and ref.digest is None:
        raise InvalidReferenceError(
            f"docker-daemon: reference {ref.familiar()} has neither a tag nor a digest; "
            f"add one, e.g. docker-daemon:{ref.familiar()}:latest"
        )
    if ref.tag is not None and ref.digest is not None:
        raise InvalidReferenceError(
            "docker-daemon: references with both a tag and digest are currently not "
            f"supported; drop one from {rest}"
        )
    return DockerDaemonReference(ref=ref)


def engine_socket(env: Mapping[str, str], what: str) -> Path:
    """The engine's unix socket: ``$DOCKER_HOST`` (``unix://PATH``) or the default.

    Other schemes (``tcp://``, ``ssh://``, ``npipe://``) are refused with a message.
    """
    host = env.get("DOCKER_HOST", "")
    if not host:
        return Path(DEFAULT_SOCKET)
    scheme, sep, path = host.partition("://")
    if sep and scheme == "unix" and path:
        return Path(path)
    if sep and scheme in ("tcp", "http", "https", "ssh", "npipe", "fd"):
        raise TransportError(
            f"{what}: DOCKER_HOST={host} is not supported: towline reaches the Docker engine "
            "over a unix socket only; set DOCKER_HOST=unix:///path/to/docker.sock (or unset it "
            f"for {DEFAULT_SOCKET})",
            slug="daemon_unsupported",
        )
    raise TransportError(
        f"{what}: DOCKER_HOST={go_quote(host)} is not a valid engine address; "
        "use unix:///path/to/docker.sock",
        slug="daemon_unsupported",
    )


def _unreachable(what: str, socket: Path, reason: str) -> TransportError:
    return TransportError(
        f"{what}: cannot reach the Docker engine at unix://{socket}: {reason}; start Docker, "
        "or point DOCKER_HOST at its socket (DOCKER_HOST=unix:///path/to/docker.sock)",
        slug="daemon_unreachable",
    )


def _export(socket: Path, ref: DockerDaemonReference, tmp_dir: Path) -> Path:
    """``GET /images/{name}/get`` into a new file under ``tmp_dir``; its path."""
    what = str(ref)
    if not socket.exists():
        raise _unreachable(what, socket, "the socket does not exist")
    _probe(socket, what)
    fd, name = tempfile.mkstemp(prefix="docker-daemon-", suffix=".tar", dir=tmp_dir)
    target = Path(name)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            httpx.Client(
                transport=httpx.HTTPTransport(uds=str(socket)), timeout=_TIMEOUT
            ) as client,
            client.stream("GET", f"http://docker/images/{quote(ref.within, safe='')}/get") as reply,
        ):
            if reply.status_code != 200:
                raise _engine_error(what, socket, reply)
            for chunk in reply.iter_bytes(_CHUNK):
                out.write(chunk)
    except httpx.ConnectError as exc:
        target.unlink(missing_ok=True)
        raise _unreachable(what, socket, str(exc) or type(exc).__name__) from exc
    except httpx.HTTPError as exc:
        target.unlink(missing_ok=True)
        raise TransportError(
            f"{what}: reading the export from the Docker engine at unix://{socket} failed: "
            f"{exc or type(exc).__name__}; try again",
            slug="daemon_error",
        ) from exc
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def _probe(path: Path, what: str) -> None:
    """Connect once, so a dead socket gets its own message.

    Also spares httpcore's failing unix connect, which leaves its socket open.
    """
    with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as probe:
        probe.settimeout(_TIMEOUT.connect)
        try:
            probe.connect(str(path))
        except OSError as exc:
            raise _unreachable(what, path, exc.strerror or str(exc)) from exc


def _engine_error(what: str, socket: Path, reply: httpx.Response) -> TransportError:
    body = b""
    with contextlib.suppress(httpx.HTTPError):
        for chunk in reply.iter_bytes():
            body += chunk
            if len(body) > _ERROR_BODY_LIMIT:
                break
    message = body[:_ERROR_BODY_LIMIT].decode("utf-8", "replace").strip()
    with contextlib.suppress(UntrustedJSONError):
        found = load_object(body).get("message")
        if isinstance(found, str):
            message = found
    if reply.status_code == 404:
        return ManifestUnknownError(
            f"{what}: image not known to the Docker engine at unix://{socket} "
            f"({message or 'reference does not exist'}); check the name with `docker images`"
        )
    return TransportError(
        f"{what}: the Docker engine at unix://{socket} answered {reply.status_code}: "
        f"{message or reply.reason_phrase}",
        slug="daemon_error",
    )
