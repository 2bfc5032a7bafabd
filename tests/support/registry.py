"""Real ``docker-registry`` (distribution 2.8) processes on 127.0.0.1, and push helpers.

:class:`RegistryServer` writes a config into its own directory, starts the registry on a
free port and waits for ``GET /v2/`` to answer. Three kinds: open, htpasswd Basic auth
(bcrypt hashes made with the ``bcrypt`` package) and token auth (see ``token_server``).
The push helpers speak the distribution API with httpx, as any client would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import bcrypt
import httpx

from .images import Image, Index, LayerInfo, sha256_digest, standard_images
from .token_server import IssuerAuth, TokenServer

BASIC_USER = "alice"
BASIC_PASSWORD = "s3cret"
#: How long a registry may take to answer /v2/ before the fixture gives up.
START_TIMEOUT = 20.0
_PORT_ATTEMPTS = 3


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago on ``host`` (callers retry on a race)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class RegistryStartError(RuntimeError):
    """The registry process did not come up; the message carries its log tail."""


class RegistryServer:
    """One ``docker-registry serve`` process with its own storage, config and log file.

    Build it with :meth:`open_access`, :meth:`basic_auth` or :meth:`token_auth`, then
    :meth:`start` / :meth:`stop` (or use it as a context manager).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        auth_section: Mapping[str, Any] | None = None,
        client_auth: httpx.Auth | None = None,
        executable: str = "docker-registry",
    ) -> None:
        self.workdir = workdir
        self.storage_dir = workdir / "storage"
        self.config_path = workdir / "config.yml"
        self.log_path = workdir / "registry.log"
        self.auth = client_auth
        #: Images the fixtures pushed here, by name (see conftest).
        self.pushed: dict[str, PushedImage] = {}
        self._auth_section = dict(auth_section) if auth_section else None
        self._executable = executable
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.port = 0

    @classmethod
    def open_access(cls, workdir: Path, **kwargs: Any) -> RegistryServer:
        """A registry anyone may pull from and push to."""
        return cls(workdir, **kwargs)

    @classmethod
    def basic_auth(
        cls,
        workdir: Path,
        users: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> RegistryServer:
        """A registry behind htpasswd Basic auth; ``.auth`` logs in as alice."""
        users = users or {BASIC_USER: BASIC_PASSWORD}
        workdir.mkdir(parents=True, exist_ok=True)
        htpasswd = workdir / "htpasswd"
        # Cost 4 (bcrypt's minimum) because the registry checks the hash on every request.
        htpasswd.write_text(
            "".join(
                f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
                for user, pw in users.items()
            )
        )
        section = {"htpasswd": {"realm": "towline-test", "path": str(htpasswd)}}
        first = next(iter(users.items()))
        return cls(workdir, auth_section=section, client_auth=httpx.BasicAuth(*first), **kwargs)

    @classmethod
    def token_auth(cls, workdir: Path, token_server: TokenServer, **kwargs: Any) -> RegistryServer:
        """A registry that trusts ``token_server`` (which must be started); pushes as alice."""
        section = {
            "token": {
                "realm": token_server.realm,
                "service": token_server.service,
                "issuer": token_server.issuer,
                "rootcertbundle": str(token_server.cert_path),
            }
        }
        return cls(workdir, auth_section=section, client_auth=IssuerAuth(token_server), **kwargs)

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, as it appears in image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}"

    def blob_data_path(self, digest: str) -> Path:
        """Where the registry keeps the bytes of ``digest`` (overwrite it to tamper)."""
        algorithm, _, hexpart = digest.partition(":")
        return (
            self.storage_dir / f"docker/registry/v2/blobs/{algorithm}/{hexpart[:2]}/{hexpart}/data"
        )

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the registry's log file."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"

    def _write_config(self) -> None:
        config: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": "error", "formatter": "text", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": self.host, "secret": "towline-tests-only"},
        }
        if self._auth_section is not None:
            config["auth"] = self._auth_section
        # JSON is YAML, so no YAML writer is needed.
        self.config_path.write_text(json.dumps(config, indent=2))

    def start(self) -> None:
        """Start on a free port and wait for /v2/; retries when another process took the port."""
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        # REGISTRY_* variables override the config file; a test's REGISTRY_AUTH_FILE must not.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        for _ in range(_PORT_ATTEMPTS):
            self.port = free_port()
            self._write_config()
            self._log = self.log_path.open("ab")
            self._process = subprocess.Popen(
                [self._executable, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            if self._wait_ready():
                return
            self.stop()
            if "address already in use" not in self.log_tail(5):
                break
        raise RegistryStartError(
            f"docker-registry did not answer GET {self.url}/v2/ within {START_TIMEOUT:.0f}s "
            f"(config {self.config_path}); log tail:\n{self.log_tail()}"
        )

    def _wait_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(trust_env=False, timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    return False
                try:
                    # 401 counts: an auth registry is up when it challenges.
                    if client.get(f"{self.url}/v2/").status_code in (200, 401):
                        return True
                except httpx.TransportError:
                    pass  # not listening yet
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Terminate the process (kill it after 5 s) and close its log."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> RegistryServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# === pushing


@dataclass(frozen=True)
class PushedImage:
    """What a test needs to know about an image (or index) pushed to a registry."""

    repo: str
    tag: str
    reference: str  # "127.0.0.1:PORT/repo:tag"
    manifest_digest: str
    media_type: str
    config_digest: str | None  # None for an index
    layers: list[LayerInfo]  # empty for an index
    artifact: Image | Index
    platforms: dict[str, PushedImage] = field(default_factory=dict)  # index entries

    @property
    def digest_reference(self) -> str:
        """``127.0.0.1:PORT/repo@sha256:…``."""
        return f"{self.reference.rsplit(':', 1)[0]}@{self.manifest_digest}"


def _client(server: RegistryServer, via: str | None) -> httpx.Client:
    return httpx.Client(base_url=via or server.url, auth=server.auth, trust_env=False, timeout=30.0)


def _push_blob(client: httpx.Client, repo: str, digest: str, data: bytes) -> None:
    if client.head(f"/v2/{repo}/blobs/{digest}").status_code == 200:
        return
    start = client.post(f"/v2/{repo}/blobs/uploads/")
    start.raise_for_status()
    location = httpx.URL(start.headers["Location"])
    upload = client.base_url.join(location).copy_merge_params({"digest": digest})
    done = client.put(upload, content=data, headers={"Content-Type": "application/octet-stream"})
    done.raise_for_status()


def _push_manifest(
    client: httpx.Client, repo: str, ref: str, body: bytes, media_type: str, digest: str
) -> str:
    response = client.put(
        f"/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": media_type}
    )
    response.raise_for_status()
    answered = response.headers.get("Docker-Content-Digest", digest)
    if answered != digest:
        raise AssertionError(f"registry stored {repo}:{ref} as {answered}, expected {digest}")
    return digest


def _push_image_with(client: httpx.Client, repo: str, ref: str, image: Image) -> str:
    for digest, data in image.blobs.items():
        _push_blob(client, repo, digest, data)
    return _push_manifest(
        client, repo, ref, image.manifest, image.media_type, image.manifest_digest
    )


def push_blob(server: RegistryServer, repo: str, data: bytes, *, via: str | None = None) -> str:
    """Upload one blob (monolithic) unless present; return its digest."""
    digest = sha256_digest(data)
    with _client(server, via) as client:
        _push_blob(client, repo, digest, data)
    return digest


def push_image(
    server: RegistryServer, repo: str, tag: str, image: Image, *, via: str | None = None
) -> str:
    """Push blobs (skipping those present) and the manifest; return the manifest digest.

    ``via`` is another base URL to push through, e.g. a fault proxy's ``.url``.
    """
    with _client(server, via) as client:
        return _push_image_with(client, repo, tag, image)


def push_index(
    server: RegistryServer, repo: str, tag: str, index: Index, *, via: str | None = None
) -> str:
    """Push every image by digest, then the index under ``tag``; return the index digest."""
    with _client(server, via) as client:
        for image in index.images:
            _push_image_with(client, repo, image.manifest_digest, image)
        return _push_manifest(
            client, repo, tag, index.manifest, index.media_type, index.manifest_digest
        )


def push_named(
    server: RegistryServer, repo: str, artifact: Image | Index, tag: str = "latest"
) -> PushedImage:
    """Push an image or index and describe it as a :class:`PushedImage`."""
    reference = f"{server.host}/{repo}:{tag}"
    if isinstance(artifact, Image):
        digest = push_image(server, repo, tag, artifact)
        return PushedImage(
            repo,
            tag,
            reference,
            digest,
            artifact.media_type,
            artifact.config_digest,
            list(artifact.layers),
            artifact,
        )
    digest = push_index(server, repo, tag, artifact)
    children = {
        image.platform: PushedImage(
            repo,
            tag,
            f"{server.host}/{repo}@{image.manifest_digest}",
            image.manifest_digest,
            image.media_type,
            image.config_digest,
            list(image.layers),
            image,
        )
        for image in artifact.images
    }
    return PushedImage(
        repo, tag, reference, digest, artifact.media_type, None, [], artifact, children
    )


def push_standard_images(server: RegistryServer, prefix: str = "test/") -> dict[str, PushedImage]:
    """Push every image of :func:`standard_images` as ``<prefix><name>:latest``."""
    return {
        name: push_named(server, prefix + name, artifact)
        for name, artifact in standard_images().items()
    }
