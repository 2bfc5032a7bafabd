"""The ``docker://`` transport: images in a registry, reached as registries.conf says.

:class:`DockerReference` is the transport's reference (``docker://host/repo:tag``).
:class:`RegistryAccess` holds what a pull knows about reaching registries
(configuration files plus the user's overrides) and hands out one pooled
:class:`~towline.registry.client.RegistryClient` per endpoint.
:func:`open_docker_source` tries the mirrors, then the primary location, in
order; the first endpoint whose ping and manifest GET succeed serves every blob,
as in containers/image.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from towline.config import (
    ConfigPaths,
    EngineSettings,
    RegistriesConf,
    lookup_credentials,
    ssl_context_for,
)
from towline.errors import TowlineError, TransportError
from towline.manifest import compute_digest
from towline.reference import Reference, parse_reference
from towline.registry.client import FetchedManifest, RegistryClient
from towline.transports.base import (
    BlobSink,
    ImageDestination,
    ProgressCallback,
    SourceCapabilities,
    TransportContext,
)

__all__ = [
    "DockerReference",
    "DockerSource",
    "RegistryAccess",
    "open_docker_source",
    "parse",
    "remote_digest",
]

_T = TypeVar("_T")


@dataclass
class RegistryAccess:
    """Configuration and overrides for talking to registries during one operation."""

    paths: ConfigPaths
    registries: RegistriesConf
    engine: EngineSettings
    tls_verify: bool | None = None
    credentials: str | None = None
    auth_file: Path | None = None
    cert_dir: Path | None = None
    max_retries: int = 3
    retry_delay: float | None = None
    _clients: dict[tuple[str, bool, bool], RegistryClient] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, ref: Reference, insecure: bool, *, explicit_creds: bool) -> RegistryClient:
        """The client for ``ref``'s registry (one per endpoint and trust setting).

        ``--tls-verify`` overrides registries.conf's ``insecure``; explicit
        ``--creds`` are not sent to a mirror on another domain (as c/image).
        """
        verify = self.tls_verify if self.tls_verify is not None else not insecure
        key = (ref.domain, verify, explicit_creds)
        with self._lock:
            cached = self._clients.get(key)
            if cached is not None:
                return cached
            found = lookup_credentials(
                ref.domain,
                ref.name,
                self.paths,
                creds=self.credentials if explicit_creds else None,
                auth_file=self.auth_file,
                helpers=list(self.registries.credential_helpers),
            )
            client = RegistryClient(
                ref.domain,
                tls_verify=verify,
                ssl_context=ssl_context_for(
                    ref.domain, self.paths, cert_dir=self.cert_dir, verify=verify
                ),
                credentials=None if found is None else (found.username, found.password),
                max_retries=self.max_retries,
                retry_delay=self.retry_delay,
            )
            self._clients[key] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


@dataclass(frozen=True)
class DockerReference:
    """``docker://NAME``: NAME normalized as docker does (``docker.io/library/``, ``:latest``)."""

    ref: Reference
    transport: str = "docker"

    def __str__(self) -> str:
        return f"docker://{self.ref}"

    def new_source(self, context: TransportContext) -> DockerSource:
        if context.registry is None:
            raise TransportError(f"{self}: no registry configuration was given to reach it")
        return open_docker_source(self.ref, context.registry)

    def new_destination(self, context: TransportContext) -> ImageDestination:
        raise TransportError(
            f"{self}: pushing to a registry is not supported by towline yet; "
            "copy to oci:, oci-archive:, docker-archive: or dir: instead",
            slug="unsupported_transport",
        )


def parse(rest: str) -> DockerReference:
    """The reference of ``docker://<rest>`` (``rest`` without the ``//``)."""
    return DockerReference(parse_reference(rest))


class DockerSource:
    """One image in a registry; the top-level manifest was fetched on open.

    Blob reads may run in parallel and resume with HTTP ``Range``.
    """

    capabilities = SourceCapabilities(parallel_reads=True, resumable=True)

    def __init__(
        self,
        client: RegistryClient,
        ref: Reference,
        top: FetchedManifest,
        requested: Reference | None = None,
    ) -> None:
        self._client = client
        self._ref = ref  # the endpoint serving it: a mirror, or the registry itself
        self._top = top
        self._requested = requested or ref

    @property
    def description(self) -> str:
        return f"docker://{self._ref}"

    def image_names(self) -> list[str]:
        return [str(self._requested)]

    @property
    def top_digest(self) -> str:
        return self._top.digest

    def get_manifest(self, digest: str | None = None) -> tuple[bytes, str]:
        if digest is None:
            return self._top.raw, self._top.media_type
        fetched = self._client.get_manifest(self._ref.path, digest)
        return fetched.raw, fetched.media_type

    def read_blob(self, digest: str, max_size: int) -> bytes:
        return self._client.get_blob(self._ref.path, digest, max_size)

    def get_blob(
        self,
        digest: str,
        size: int | None,
        sink: BlobSink,
        progress: ProgressCallback | None = None,
    ) -> None:
        self._client.copy_blob(self._ref.path, digest, size, sink, progress)

    def close(self) -> None:
        """Connections belong to the :class:`RegistryAccess`; nothing to do."""


def _reference_in_repo(ref: Reference) -> str:
    return ref.digest or ref.tag or "latest"


def _first_working(
    ref: Reference,
    access: RegistryAccess,
    attempt: Callable[[Reference, RegistryClient], _T],
) -> _T:
    failures: list[tuple[Reference, TowlineError]] = []
    sources = access.registries.pull_sources(ref)
    for source in sources:
        try:
            access.registries.check_not_blocked(source.reference.name)
            explicit = not (source.mirror and source.reference.domain != ref.domain)
            client = access.client(source.reference, source.insecure, explicit_creds=explicit)
            client.ping()
            return attempt(source.reference, client)
        except TowlineError as exc:
            failures.append((source.reference, exc))
    primary_ref, primary = failures[-1]
    if len(failures) == 1:
        raise primary
    mirrors = "; ".join(f"[{r}: {e}]" for r, e in failures[:-1])
    raise type(primary)(
        f"(Mirrors also failed: {mirrors}): {primary_ref}: {primary}",
        slug=primary.slug,
        expected=primary.expected,
        actual=primary.actual,
    ) from primary


def open_docker_source(ref: Reference, access: RegistryAccess) -> DockerSource:
    """Open ``ref`` at the first endpoint (mirrors first) that serves its manifest."""

    def fetch(endpoint: Reference, client: RegistryClient) -> DockerSource:
        top = client.get_manifest(endpoint.path, _reference_in_repo(endpoint))
        return DockerSource(client, endpoint, top, ref)

    return _first_working(ref, access, fetch)


def remote_digest(ref: Reference, access: RegistryAccess) -> str:
    """The digest of ``ref``'s top-level manifest, by HEAD where the registry answers it.

    HEAD requests do not count against registry pull quotas; a registry that
    sends no ``Docker-Content-Digest`` gets a GET instead.
    """

    def head(endpoint: Reference, client: RegistryClient) -> str:
        reference = _reference_in_repo(endpoint)
        digest = client.head_manifest(endpoint.path, reference)
        if digest is None:
            fetched = client.get_manifest(endpoint.path, reference)
            digest = compute_digest(fetched.raw)
        return digest

    return _first_working(ref, access, head)
