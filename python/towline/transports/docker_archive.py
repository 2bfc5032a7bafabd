"""The ``docker-archive:`` transport: ``docker save`` archives, read in place and written.

References are ``docker-archive:PATH[:NAME[:TAG]|:@INDEX]``, parsed as
containers/image's ``docker/archive`` transport: the text is cut at the first
``:``, NAME is normalized with ``latest`` added, digests are refused.

As a source (c/image ``docker/internal/tarfile``), the archive is never
extracted: ``manifest.json`` and the chosen image's config are read from it, and
a Docker v2s2 manifest is synthesised whose layers are the archive's layer
files. An uncompressed layer file is described by its diff_id, media type
``rootfs.diff.tar`` and its size; a gzip or zstd one (hand-made archives) as
what it is, by its own digest. Pulled images are named by the chosen item's
RepoTags, as libimage names them (:func:`~towline.transports.docker_archive_format.item_names`).

As a destination it writes what ``docker save`` and ``podman save`` write, see
:mod:`towline.transports.docker_archive_dest`.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from towline import _native
from towline.copy import CONFIG_SIZE_LIMIT
from towline.errors import InvalidReferenceError, ManifestUnknownError, TransportError
from towline.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    compute_digest,
    parse_image_config,
)
from towline.quoting import go_quote
from towline.reference import Reference, parse_normalized_named
from towline.transports.base import (
    BlobSink,
    ProgressCallback,
    SourceCapabilities,
    TransportContext,
)
from towline.transports.docker_archive_format import (
    MANIFEST_JSON,
    MANIFEST_JSON_LIMIT,
    ManifestItem,
    choose_item,
    config_member,
    item_names,
    layer_member,
    parse_manifest_json,
)
from towline.transports.docker_archive_members import open_members
from towline.transports.tar_members import CHUNK, Member, TarMembers

if TYPE_CHECKING:
    from towline.transports.docker_archive_dest import DockerArchiveDestination

__all__ = [
    "DockerArchiveReference",
    "DockerArchiveSource",
    "list_archive_images",
    "open_archive_source",
    "parse",
]

_INDEX_RE = re.compile(r"[+-]?[0-9]+")  # what Go's strconv.Atoi accepts

# Magic numbers of the compressions a layer file may carry (as c/image's AutoDecompress).
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


@dataclass(frozen=True)
class DockerArchiveReference:
    """``docker-archive:PATH[:NAME[:TAG]|:@INDEX]``; at most one of ``name`` and ``index``."""

    path: Path
    name: Reference | None = None
    index: int | None = None
    transport: str = "docker-archive"

    def __post_init__(self) -> None:
        if self.name is not None and self.index is not None:
            raise InvalidReferenceError(
                "Invalid docker-archive: reference: cannot use both a tag and a source index"
            )
        if ":" in str(self.path):
            raise InvalidReferenceError(
                f"Invalid docker-archive: reference: colon in path {go_quote(str(self.path))} "
                "is not supported; rename the file or link to it from a path without ':'"
            )

    def __str__(self) -> str:
        if self.name is not None:
            return f"docker-archive:{self.path}:{self.name}"
        if self.index is not None:
            return f"docker-archive:{self.path}:@{self.index}"
        return f"docker-archive:{self.path}"

    def new_source(self, context: TransportContext) -> DockerArchiveSource:
        return open_archive_source(self, context.tmp_dir)

    def new_destination(self, context: TransportContext) -> DockerArchiveDestination:
        from towline.transports.docker_archive_dest import open_archive_destination

        return open_archive_destination(self, durable=context.options.durable)


def parse(rest: str) -> DockerArchiveReference:
    """The reference of ``docker-archive:<rest>`` (c/image ``docker/archive.ParseReference``)."""
    if not rest:
        raise InvalidReferenceError(
            'docker-archive reference "" isn\'t of the form <path>[:<reference>]; '
            "give the archive's path, e.g. docker-archive:/tmp/image.tar"
        )
    path, sep, spec = rest.partition(":")
    if not path:
        raise InvalidReferenceError(
            f"docker-archive reference {go_quote(rest)} has no path; "
            "use docker-archive:PATH[:NAME[:TAG]|:@INDEX]"
        )
    if not sep:
        return DockerArchiveReference(Path(path))
    if spec.startswith("@"):
        if not _INDEX_RE.fullmatch(spec[1:]):
            raise InvalidReferenceError(
                f"Invalid source index {spec}: use @ and a number, e.g. docker-archive:{path}:@0"
            )
        index = int(spec[1:])
        if index < 0:
            raise InvalidReferenceError(f"Invalid source index @{index}: must not be negative")
        return DockerArchiveReference(Path(path), index=index)
    try:
        name = parse_normalized_named(spec)
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(f"docker-archive parsing reference: {exc}") from exc
    if name.digest is not None:
        raise InvalidReferenceError(
            f"docker-archive doesn't support digest references: {name}; "
            "name the image by tag or by @INDEX"
        )
    if name.tag is None:
        name = name.with_tag("latest")
    return DockerArchiveReference(Path(path), name=name)


def list_archive_images(path: str | Path) -> list[DockerArchiveReference]:
    """One reference per image of the archive, ``docker-archive:PATH:@N``, in archive order.

    For ``towline load``: pulling each gives every image under its RepoTags (an
    untagged one by its ID), as ``podman load``.
    """
    base = DockerArchiveReference(Path(path))
    members = open_members(base.path, str(base))
    try:
        items = _read_items(members, str(base))
    finally:
        members.close()
    return [DockerArchiveReference(base.path, index=i) for i in range(len(items))]


def _read_items(members: TarMembers, archive: str) -> list[ManifestItem]:
    member = members.lookup(MANIFEST_JSON, "")
    return parse_manifest_json(members.read(member, MANIFEST_JSON_LIMIT, ""), archive)


@dataclass(frozen=True)
class _Layer:
    """How one layer blob is served: from a member, or from a staged copy of one."""

    digest: str
    size: int
    media_type: str
    member: Member
    staged: Path | None = None


def open_archive_source(
    ref: DockerArchiveReference,
    tmp_dir: Path,
    *,
    names: list[str] | None = None,
    cleanup: Callable[[], None] | None = None,
    description: str | None = None,
) -> DockerArchiveSource:
    """Open the image ``ref`` names.

    The docker-daemon transport reads its export with this: ``names`` then
    replaces the names from the archive, ``description`` names the source in
    messages, and ``cleanup`` runs when the source is closed (or now, when
    opening fails).
    """
    description = description or str(ref)
    try:
        members = open_members(ref.path, description)
    except BaseException:
        if cleanup is not None:
            cleanup()
        raise
    source = DockerArchiveSource(members, description, tmp_dir, cleanup)
    try:
        source._load(ref, names)
    except BaseException:
        source.close()
        raise
    return source


class DockerArchiveSource:
    """One image of a ``docker save`` archive, with a synthesised manifest."""

    def __init__(
        self,
        members: TarMembers,
        description: str,
        tmp_dir: Path,
        cleanup: Callable[[], None] | None,
    ) -> None:
        self._members = members
        self._description = description
        self._tmp_dir = tmp_dir
        self._staging: Path | None = None
        self._cleanup = cleanup
        self.capabilities = SourceCapabilities(parallel_reads=members.parallel)
        self._names: list[str] = []
        self._config = b""
        self._config_digest = ""
        self._layers: dict[str, _Layer] = {}
        self._manifest = b""
        self._manifest_type = DOCKER_MANIFEST

    @property
    def description(self) -> str:
        return self._description

    # === opening: manifest.json, the item, its config and layer files
    def _load(self, ref: DockerArchiveReference, names: list[str] | None) -> None:
        archive = self._description
        items = _read_items(self._members, archive)
        item, tag_index = choose_item(items, ref.name, ref.index, archive)
        self._names = item_names(item, tag_index, archive) if names is None else names
        config_file = self._members.lookup(config_member(item, archive), "config")
        self._config = self._members.read(config_file, CONFIG_SIZE_LIMIT, "config")
        self._config_digest = compute_digest(self._config)
        config = parse_image_config(
            self._config, f"image config {self._config_digest} of {archive}"
        )
        if len(item.layers) != len(config.diff_ids):
            raise TransportError(
                f"{archive}: Inconsistent layer count: {len(item.layers)} in manifest, "
                f"{len(config.diff_ids)} in config; the archive is malformed",
                slug="invalid_archive",
            )
        ordered: list[_Layer] = []
        by_diff_id: dict[str, _Layer] = {}
        diff_id_of: dict[str, str] = {}
        for i, diff_id in enumerate(config.diff_ids):
            path = layer_member(item, i, archive)
            if diff_id_of.setdefault(path, diff_id) != diff_id:
                raise TransportError(
                    f"{archive}: Layer tarfile {go_quote(path)} used for two different DiffID "
                    "values; the archive is malformed",
                    slug="invalid_archive",
                )
            layer = by_diff_id.get(diff_id)
            if layer is None:  # the same layer twice in one image: one file serves both
                layer = by_diff_id[diff_id] = self._describe(path, diff_id)
            ordered.append(layer)
        self._layers = {layer.digest: layer for layer in ordered}
        self._manifest, self._manifest_type = self._synthesise(ordered)

    def _describe(self, path: str, diff_id: str) -> _Layer:
        member = self._members.lookup(path, "layer")
        compression = _compression(self._members.head(member))
        if compression == "none":
            return _Layer(diff_id, member.size, DOCKER_LAYER, member)
        if compression not in ("gzip", "zstd"):
            raise TransportError(
                f"{self._description}: layer {path} is {compression}-compressed; towline reads "
                "uncompressed, gzip or zstd layer files: decompress it and re-create the archive",
                slug="unsupported_compression",
            )
        # Its digest is that of the compressed bytes: stage it once to hash it natively.
        staged = self._stage(member)
        digest = _native.hash_file(staged, diff_id.partition(":")[0])
        media_type = DOCKER_LAYER_GZIP if compression == "gzip" else OCI_LAYER_ZSTD
        return _Layer(digest, member.size, media_type, member, staged)

    def _stage(self, member: Member) -> Path:
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="docker-archive-", dir=self._tmp_dir))
        target = self._staging / str(member.ordinal)
        with open(target, "wb") as out:
            self._members.copy(member, out.write)
        return target

    def _synthesise(self, layers: list[_Layer]) -> tuple[bytes, str]:
        # v2s2 as c/image, unless a zstd layer needs OCI media types to be described truly.
        oci = any(layer.media_type == OCI_LAYER_ZSTD for layer in layers)
        if oci:
            to_oci = {DOCKER_LAYER: OCI_LAYER, DOCKER_LAYER_GZIP: OCI_LAYER_GZIP}
            document: dict[str, Any] = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": _descriptor(OCI_CONFIG, self._config_digest, len(self._config), oci),
                "layers": [
                    _descriptor(to_oci.get(x.media_type, x.media_type), x.digest, x.size, oci)
                    for x in layers
                ],
            }
        else:
            document = {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": _descriptor(DOCKER_CONFIG, self._config_digest, len(self._config), oci),
                "layers": [_descriptor(x.media_type, x.digest, x.size, oci) for x in layers],
            }
        raw = json.dumps(document, separators=(",", ":")).encode()
        return raw, OCI_MANIFEST if oci else DOCKER_MANIFEST

    # === the ImageSource protocol
    def image_names(self) -> list[str]:
        return list(self._names)

    def get_manifest(self, digest: str | None = None) -> tuple[bytes, str]:
        if digest is not None and digest != compute_digest(self._manifest):
            raise ManifestUnknownError(
                f"{self._description}: no manifest {digest}: a docker archive holds single "
                "images, not manifest lists",
            )
        return self._manifest, self._manifest_type

    def read_blob(self, digest: str, max_size: int) -> bytes:
        if digest != self._config_digest:
            raise TransportError(
                f"{self._description}: blob {digest} is not a config of this image",
                slug="blob_unknown",
            )
        if len(self._config) > max_size:
            raise TransportError(
                f"{self._description}: config {digest} is larger than {max_size} bytes",
                slug="too_large",
            )
        return self._config

    def get_blob(
        self,
        digest: str,
        size: int | None,
        sink: BlobSink,
        progress: ProgressCallback | None = None,
    ) -> None:
        if digest == self._config_digest:
            sink.write(self._config)
            if progress is not None:
                progress(len(self._config))
            return
        layer = self._layers.get(digest)
        if layer is None:
            raise TransportError(
                f"{self._description}: blob {digest} is not a layer of this image",
                slug="blob_unknown",
            )
        if layer.staged is None:
            self._members.stream(layer.member, sink, progress)
            return
        with open(layer.staged, "rb") as staged:
            while chunk := staged.read(CHUNK):
                sink.write(chunk)
                if progress is not None:
                    progress(len(chunk))

    def close(self) -> None:
        self._members.close()
        staging, self._staging = self._staging, None
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        cleanup, self._cleanup = self._cleanup, None
        if cleanup is not None:
            cleanup()


def _compression(head: bytes) -> str:
    return next((name for magic, name in _MAGIC if head.startswith(magic)), "none")


def _descriptor(media_type: str, digest: str, size: int, oci: bool) -> dict[str, Any]:
    # Field order as Go serialises each format's descriptor (c/image manifest package).
    if oci:
        return {"mediaType": media_type, "digest": digest, "size": size}
    return {"mediaType": media_type, "size": size, "digest": digest}
