"""One pushed image in every source transport, made by the real peers, for tests run per transport.

:class:`SourceMaker` turns an image pushed to the test registry into a name towline
pulls it by in each source transport: ``docker`` (the registry itself); ``oci``,
``oci-archive``, ``docker-archive`` and ``dir`` (each written by ``skopeo copy`` from
the registry); ``docker-daemon`` (the fake engine serving a ``docker-archive`` skopeo
wrote). A :class:`Source` says what the pull must give: the names, by each
transport's naming rules (libimage ``copyFromDefault`` and
``storageReferencesReferencesFromArchiveReader``, libimage-pull.md section 7), and
the layer digests (a docker save archive holds uncompressed layers, so there the
blob digests are the diff_ids; the image ID, the config digest, is the same
everywhere). Sources are made once per session, on first use, and only read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from transports.peers import Peers

from .fake_docker_engine import FakeDockerEngine
from .registry import PushedImage

#: Every source transport, in the order tests run them.
SOURCE_TRANSPORTS = ("docker", "oci", "oci-archive", "docker-archive", "dir", "docker-daemon")

#: Transports that cannot hold an index, and why (platform-choice tests leave them out).
NO_INDEX = {
    "docker-archive": "a docker save archive holds one image per manifest.json item, no index",
    "docker-daemon": "the engine exports docker save streams, which hold no index",
}

#: The tag every file source gives its image.
TAG = "v1"


@dataclass(frozen=True)
class Source:
    """``pushed`` in one transport: the name to pull it by and what the pull must give."""

    transport: str
    #: The name to pull by (``transport:reference``; the registry name for ``docker``).
    name: str
    #: The names the pulled image must have (empty: unnamed, known by its ID).
    names: list[str]
    pushed: PushedImage
    #: True when the layers keep the registry's blobs; False when they are the
    #: uncompressed tars (docker save), so each layer digest is its diff_id.
    digests_preserved: bool
    #: A name in the same transport (same file or engine) that finds no image.
    missing: str
    #: The name ``skopeo inspect`` reads the same image by.
    skopeo_name: str
    peers: Peers = field(repr=False, compare=False)

    @property
    def layer_digests(self) -> list[str]:
        """The digests the pulled layers must have, in order."""
        if self.digests_preserved:
            return [layer.digest for layer in self.pushed.layers]
        return [layer.diff_id for layer in self.pushed.layers]

    @property
    def manifest_digest(self) -> str | None:
        """The manifest digest the pull must record; None where towline writes the manifest.

        A docker save archive has no manifest: towline describes its layers as what they
        are (uncompressed tars), where c/image labels them tar.gzip, so its digest differs
        from the one skopeo reports (transports/docker_archive.py ``_synthesise``).
        """
        return self.pushed.manifest_digest if self.digests_preserved else None

    @property
    def preamble(self) -> list[str]:
        """Progress lines before ``Getting image source signatures``.

        libimage writes ``Trying to pull`` only for a registry
        (``copySingleImageFromRegistry``); ``copyFromDefault`` writes nothing first.
        """
        return [f"Trying to pull {self.name}..."] if self.transport == "docker" else []

    @cached_property
    def reported(self) -> dict[str, Any]:
        """``skopeo inspect`` of the source (Digest, Layers, ...), read once."""
        out = self.peers.run("skopeo", "inspect", "--tls-verify=false", self.skopeo_name)
        document: dict[str, Any] = json.loads(out)
        return document


@dataclass(frozen=True)
class SourceTransport:
    """What the ``src_transport`` fixture gives: ``src_transport(pushed)`` is a :class:`Source`."""

    transport: str
    maker: SourceMaker = field(repr=False)

    def __call__(self, pushed: PushedImage) -> Source:
        return self.maker.source(self.transport, pushed)


class SourceMaker:
    """Makes (once) and remembers the sources of pushed images under ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.peers = Peers(workdir / "peer-home")
        self.engine = FakeDockerEngine()
        self._engine_started = False
        self._made: dict[tuple[str, str], Source] = {}

    @property
    def env(self) -> dict[str, str]:
        """What a runtime's env needs for ``docker-daemon`` sources: DOCKER_HOST."""
        return {"DOCKER_HOST": self.engine.docker_host}

    def close(self) -> None:
        """Stop the engine (when it was started)."""
        if self._engine_started:
            self.engine.__exit__(None, None, None)

    def source(self, transport: str, pushed: PushedImage) -> Source:
        """``pushed`` in ``transport``, made on first use (an index: every instance)."""
        key = (transport, pushed.reference)
        if key not in self._made:
            self._made[key] = self._make(transport, pushed)
        return self._made[key]

    def _make(self, transport: str, pushed: PushedImage) -> Source:
        if transport not in SOURCE_TRANSPORTS:
            raise ValueError(f"unknown source transport {transport!r}; {SOURCE_TRANSPORTS}")
        if pushed.config_digest is None and transport in NO_INDEX:
            raise ValueError(
                f"{transport} cannot hold the index {pushed.reference}: {NO_INDEX[transport]}"
            )
        slug = pushed.repo.rsplit("/", 1)[1]
        here = self.workdir / transport / slug  # a layout or dir:
        archive = here.parent / f"{slug}.tar"  # an oci-archive or docker-archive
        here.parent.mkdir(parents=True, exist_ok=True)
        copy_all = ["--all"] if pushed.config_digest is None else []
        made: dict[str, Any] = {"transport": transport, "pushed": pushed, "peers": self.peers}

        if transport == "docker":
            return Source(
                name=pushed.reference,
                names=[pushed.reference],
                digests_preserved=True,
                missing=f"{pushed.reference}-missing",
                skopeo_name=f"docker://{pushed.reference}",
                **made,
            )
        if transport == "oci":
            # libimage: the REF is the name, as ParseNormalizedNamed reads it (docker.io).
            name = f"oci:{here}:{slug}:{TAG}"
            self._copy(pushed, name, *copy_all)
            return Source(
                name=name,
                names=[f"docker.io/library/{slug}:{TAG}"],
                digests_preserved=True,
                missing=f"oci:{here}:missing:{TAG}",
                skopeo_name=name,
                **made,
            )
        if transport == "oci-archive":
            # libimage: the ref.name annotation through NormalizeName (localhost/).
            name = f"oci-archive:{archive}:{slug}:{TAG}"
            self._copy(pushed, name, *copy_all)
            return Source(
                name=name,
                names=[f"localhost/{slug}:{TAG}"],
                digests_preserved=True,
                missing=f"oci-archive:{archive}:missing:{TAG}",
                skopeo_name=name,
                **made,
            )
        if transport == "dir":
            # libimage: path-based transports give unnamed images.
            name = f"dir:{here}"
            self._copy(pushed, name, *copy_all)
            return Source(
                name=name,
                names=[],
                digests_preserved=True,
                missing=f"dir:{here}-missing",
                skopeo_name=name,
                **made,
            )
        if transport == "docker-archive":
            # Pulled without a name: named by its RepoTags, normalized.
            repo_tag = f"example.com/src/{slug}:{TAG}"
            self._copy(pushed, f"docker-archive:{archive}:{repo_tag}")
            return Source(
                name=f"docker-archive:{archive}",
                names=[repo_tag],
                digests_preserved=False,
                missing=f"docker-archive:{archive}:example.com/src/missing:{TAG}",
                skopeo_name=f"docker-archive:{archive}",
                **made,
            )
        # docker-daemon: `docker save` of a Docker Hub name, named as ParseNormalizedNamed.
        familiar = f"{slug}:{TAG}"
        self._copy(pushed, f"docker-archive:{archive}:{familiar}")
        if not self._engine_started:
            self.engine.__enter__()
            self._engine_started = True
        self.engine.add(archive, familiar)
        return Source(
            name=f"docker-daemon:{familiar}",
            names=[f"docker.io/library/{familiar}"],
            digests_preserved=False,
            missing=f"docker-daemon:missing:{TAG}",
            skopeo_name=f"docker-archive:{archive}",
            **made,
        )

    def _copy(self, pushed: PushedImage, dest: str, *extra: str) -> None:
        self.peers.skopeo_copy(f"docker://{pushed.reference}", dest, *extra)
