"""Image manifests, indexes and configs: media types, parsing and validation.

Understands OCI image manifests and indexes and Docker v2 schema 2 manifests and
manifest lists. Docker schema 1 is recognised only to be refused with a clear
message. Every parse error is a :class:`~towline.errors.TransportError` with slug
``"invalid_manifest"`` (``"invalid_image_config"`` for configs) whose message
names what is wrong. The JSON itself is read by :mod:`towline.untrusted_json`
(Go's encoding/json rules: no NaN, 64-bit numbers, bounded nesting).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from towline.digest import parse_digest
from towline.errors import DigestMismatchError, InvalidReferenceError, TransportError
from towline.untrusted_json import UntrustedJSONError, load_object

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_FOREIGN_LAYER",
    "DOCKER_FOREIGN_LAYER_GZIP",
    "DOCKER_LAYER",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_SCHEMA1_MANIFEST",
    "DOCKER_SCHEMA1_SIGNED_MANIFEST",
    "INDEX_TYPES",
    "LAYER_TYPES",
    "MANIFEST_ACCEPT",
    "MANIFEST_TYPES",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_NONDISTRIBUTABLE",
    "OCI_LAYER_NONDISTRIBUTABLE_GZIP",
    "OCI_LAYER_NONDISTRIBUTABLE_ZSTD",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "SCHEMA1_TYPES",
    "SUPPORTED_MANIFEST_TYPES",
    "Descriptor",
    "ImageConfig",
    "ImageIndex",
    "ImageManifest",
    "compute_digest",
    "detect_media_type",
    "is_digest",
    "layer_compression",
    "parse_image_config",
    "parse_manifest",
    "verify_digest",
]

# === media types
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED_MANIFEST = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
SUPPORTED_MANIFEST_TYPES = MANIFEST_TYPES | INDEX_TYPES
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_SIGNED_MANIFEST})

#: Layer media type → compression ("gzip", "zstd" or "none").
LAYER_TYPES: dict[str, str] = {
    OCI_LAYER: "none",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDISTRIBUTABLE: "none",
    OCI_LAYER_NONDISTRIBUTABLE_GZIP: "gzip",
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD: "zstd",
    DOCKER_LAYER: "none",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_FOREIGN_LAYER: "none",
    DOCKER_FOREIGN_LAYER_GZIP: "gzip",
}

#: The Accept header value for manifest requests: single images first, then lists.
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX])

_SCHEMA1_MESSAGE = (
    "Docker schema1 manifests are not supported; push the image again with a current "
    "docker/podman/skopeo (schema 2 or OCI)"
)


def _digest_problem(value: object) -> str | None:
    """Return why ``value`` is not a valid "alg:hex" digest, or None when it is."""
    if not isinstance(value, str):
        return f"digest {value!r} is not a string"
    try:
        parse_digest(value)
    except InvalidReferenceError as exc:
        return str(exc)
    return None


def is_digest(value: object) -> bool:
    """True when ``value`` is a well-formed digest of a supported algorithm."""
    return _digest_problem(value) is None


def _hasher(algorithm: str) -> Any:
    if algorithm in ("sha256", "sha512"):
        return hashlib.new(algorithm)
    if algorithm == "blake3":
        # blake3 is optional at run time: registries serve sha256 in practice.
        try:
            from blake3 import blake3
        except ImportError as exc:
            raise TransportError(
                "cannot verify a blake3 digest: install the 'blake3' package",
                slug="unsupported_digest",
            ) from exc
        return blake3()
    raise TransportError(
        f"cannot verify digests with algorithm {algorithm!r}: use sha256, sha512 or blake3",
        slug="unsupported_digest",
    )


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    """Return the "alg:hex" digest of ``data``."""
    hasher = _hasher(algorithm)
    hasher.update(data)
    return f"{algorithm}:{hasher.hexdigest()}"


def verify_digest(data: bytes, expected: str, what: str) -> str:
    """Check that ``data`` hashes to ``expected``; return the digest.

    ``what`` names the content in the error, e.g. ``"manifest of 127.0.0.1:5000/app"``.
    Raises :class:`DigestMismatchError` naming both digests.
    """
    problem = _digest_problem(expected)
    if problem is not None:
        raise TransportError(f"{what}: {problem}", slug="invalid_digest")
    algorithm = expected.split(":", 1)[0]
    actual = compute_digest(data, algorithm)
    if actual != expected:
        raise DigestMismatchError(
            f"{what}: digest mismatch, expected {expected}, got {actual}",
            expected=expected,
            actual=actual,
        )
    return actual


# === data model
@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor: what a manifest or index says about one blob."""

    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """A single-image manifest (OCI image manifest or Docker v2 schema 2)."""

    media_type: str
    config: Descriptor
    layers: list[Descriptor]
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImageIndex:
    """A multi-platform list (OCI image index or Docker manifest list)."""

    media_type: str
    manifests: list[Descriptor]
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an image config the pull path needs; ``raw`` is the whole document."""

    os: str
    architecture: str
    variant: str
    diff_ids: list[str]
    created: str | None
    raw: dict[str, Any]

    @property
    def platform(self) -> str:
        """The platform as "os/arch[/variant]"."""
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base


# === parsing
def _invalid(message: str) -> TransportError:
    return TransportError(f"invalid manifest: {message}", slug="invalid_manifest")


def _load_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        return load_object(raw)
    except UntrustedJSONError as exc:
        raise _invalid(f"{what} {exc}") from exc


def _strip_parameters(content_type: str | None) -> str:
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def detect_media_type(raw: bytes, content_type: str | None) -> str:
    """Return the manifest media type of ``raw``.

    The JSON ``mediaType`` field wins, because it is covered by the digest; the
    Content-Type is used when the field is absent (OCI allows that), and the
    shape of the document decides when neither is useful. Schema 1 and unknown
    types raise :class:`TransportError` (slug ``"invalid_manifest"``).
    """
    document = _load_object(raw, "manifest")
    return _media_type_of(document, content_type)


def _media_type_of(document: dict[str, Any], content_type: str | None) -> str:
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    header = _strip_parameters(content_type)
    if declared in SCHEMA1_TYPES or header in SCHEMA1_TYPES or document.get("schemaVersion") == 1:
        raise TransportError(_SCHEMA1_MESSAGE, slug="invalid_manifest")
    if declared:
        media_type = declared
    elif header in SUPPORTED_MANIFEST_TYPES:
        media_type = header
    elif "manifests" in document:
        media_type = OCI_INDEX
    elif "config" in document:
        media_type = OCI_MANIFEST
    else:
        raise _invalid("cannot tell its type: no mediaType, no known Content-Type, no config")
    if media_type not in SUPPORTED_MANIFEST_TYPES:
        raise _invalid(
            f"unsupported media type {media_type!r}; expected an OCI or Docker v2 manifest or index"
        )
    return media_type


def _string_map(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _invalid(f"{where} must be an object of strings")
    return dict(value)


def _descriptor(value: object, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be an object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where} has no mediaType")
    digest = value.get("digest")
    problem = _digest_problem(digest)
    if problem is not None:
        raise _invalid(f"{where}: {problem}")
    assert isinstance(digest, str)
    size = value.get("size")
    # bool is an int in Python; JSON true is not a size. Sizes are Go int64s, as in c/image.
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 2**63:
        raise _invalid(f"{where} size must be a non-negative integer below 2^63, not {size!r}")
    platform = value.get("platform")
    if platform is not None:
        if not isinstance(platform, dict):
            raise _invalid(f"{where} platform must be an object")
        for key in ("os", "architecture"):
            if not isinstance(platform.get(key), str) or not platform[key]:
                raise _invalid(f"{where} platform has no {key}")
    urls = value.get("urls")
    if urls is None:
        urls = []
    elif not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise _invalid(f"{where} urls must be a list of strings")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        platform=dict(platform) if platform is not None else None,
        annotations=_string_map(value.get("annotations"), f"{where} annotations"),
        urls=list(urls),
    )


def parse_manifest(raw: bytes, content_type: str | None) -> ImageManifest | ImageIndex:
    """Parse and validate a manifest or index fetched with the given Content-Type.

    Returns :class:`ImageManifest` for single images and :class:`ImageIndex` for
    lists. Raises :class:`TransportError` with slug ``"invalid_manifest"``.
    """
    document = _load_object(raw, "manifest")
    media_type = _media_type_of(document, content_type)
    if document.get("schemaVersion") != 2:
        raise _invalid(f"schemaVersion must be 2, not {document.get('schemaVersion')!r}")
    annotations = _string_map(document.get("annotations"), "annotations")
    if media_type in INDEX_TYPES:
        if "config" in document or "layers" in document:
            raise _invalid(f"{media_type} must not have config or layers")
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise _invalid("an index needs a manifests list")
        manifests = [_descriptor(e, f"manifests[{i}]") for i, e in enumerate(entries)]
        return ImageIndex(media_type=media_type, manifests=manifests, annotations=annotations)
    if "manifests" in document:
        raise _invalid(f"{media_type} must not have a manifests list")
    config = _descriptor(document.get("config"), "config")
    entries = document.get("layers")
    if not isinstance(entries, list):
        raise _invalid("an image manifest needs a layers list")
    layers = [_descriptor(e, f"layers[{i}]") for i, e in enumerate(entries)]
    return ImageManifest(
        media_type=media_type, config=config, layers=layers, annotations=annotations
    )


def layer_compression(media_type: str) -> str | None:
    """Return "gzip", "zstd" or "none" for a known layer media type, else None."""
    return LAYER_TYPES.get(media_type.removesuffix("+encrypted"))


def parse_image_config(raw: bytes, what: str = "image config") -> ImageConfig:
    """Parse an image config (OCI or Docker) and check the fields a pull relies on.

    ``what`` names the config in errors (e.g. ``"image config sha256:… of
    docker://…"``). Raises :class:`TransportError` with slug ``"invalid_image_config"``;
    NaN, Infinity and out-of-range numbers are refused, as Go's decoder does.
    """

    def invalid(message: str) -> TransportError:
        return TransportError(f"invalid {what}: {message}", slug="invalid_image_config")

    try:
        document = load_object(raw)
    except UntrustedJSONError as exc:
        raise invalid(f"the document {exc}") from exc
    values: dict[str, str] = {}
    for key in ("os", "architecture", "variant", "created"):
        value = document.get(key)
        if value is not None and not isinstance(value, str):
            raise invalid(f"{key} must be a string")
        values[key] = value or ""
    for key in ("os", "architecture"):
        if not values[key]:
            raise invalid(f"{key} is missing")
    rootfs = document.get("rootfs")
    if not isinstance(rootfs, dict):
        raise invalid("rootfs is missing")
    if rootfs.get("type") != "layers":
        raise invalid(f"rootfs.type must be 'layers', not {rootfs.get('type')!r}")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise invalid("rootfs.diff_ids must be a list")
    for i, diff_id in enumerate(diff_ids):
        problem = _digest_problem(diff_id)
        if problem is not None:
            raise invalid(f"rootfs.diff_ids[{i}]: {problem}")
    return ImageConfig(
        os=values["os"],
        architecture=values["architecture"],
        variant=values["variant"],
        diff_ids=list(diff_ids),
        created=values["created"] or None,
        raw=document,
    )
