"""Converting manifests between OCI and Docker v2 schema 2, for destinations that store one.

As containers/image's ``manifest.OCI1FromManifest`` / ``Schema2FromManifest``: only
the media types change (manifest, config, layers; indexes and lists likewise),
so the config and every layer blob, and with them the image ID and the layer
digests, stay the same. What one format cannot say is refused, not dropped
silently: zstd layers have no Docker media type; annotations, which Docker v2s2
cannot carry, are dropped (as c/image does). Output is compact JSON in Go's field
order, as c/image serialises it.
"""

from __future__ import annotations

import json
from typing import Any

from towline.errors import TransportError
from towline.manifest import (
    DOCKER_CONFIG,
    DOCKER_FOREIGN_LAYER,
    DOCKER_FOREIGN_LAYER_GZIP,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE,
    OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    OCI_MANIFEST,
    Descriptor,
    ImageIndex,
    ImageManifest,
)

__all__ = ["convert_index", "convert_manifest"]

_TO_DOCKER = {
    OCI_CONFIG: DOCKER_CONFIG,
    OCI_LAYER: DOCKER_LAYER,
    OCI_LAYER_GZIP: DOCKER_LAYER_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE: DOCKER_FOREIGN_LAYER,
    OCI_LAYER_NONDISTRIBUTABLE_GZIP: DOCKER_FOREIGN_LAYER_GZIP,
}
_TO_OCI = {docker: oci for oci, docker in _TO_DOCKER.items()}


def _dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _oci_descriptor(desc: Descriptor, media_type: str) -> dict[str, Any]:
    out: dict[str, Any] = {"mediaType": media_type, "digest": desc.digest, "size": desc.size}
    if desc.urls:
        out["urls"] = desc.urls
    if desc.annotations:
        out["annotations"] = desc.annotations
    if desc.platform:
        out["platform"] = desc.platform
    return out


def _docker_descriptor(desc: Descriptor, media_type: str) -> dict[str, Any]:
    out: dict[str, Any] = {"mediaType": media_type, "size": desc.size, "digest": desc.digest}
    if desc.urls:
        out["urls"] = desc.urls
    if desc.platform:
        out["platform"] = desc.platform
    return out


def _map(media_type: str, table: dict[str, str], target: str, what: str) -> str:
    if media_type in table.values():
        return media_type
    mapped = table.get(media_type)
    if mapped is None:
        raise TransportError(
            f"cannot convert the manifest to {target}: {what} media type {media_type} has no "
            f"equivalent there; copy to a destination that stores {media_type} (oci:, dir:)",
            slug="manifest_conversion",
        )
    return mapped


def convert_manifest(manifest: ImageManifest, to: str) -> bytes:
    """``manifest`` as a ``to`` manifest (OCI_MANIFEST or DOCKER_MANIFEST): the new bytes."""
    if to == OCI_MANIFEST:
        config = _oci_descriptor(
            manifest.config, _map(manifest.config.media_type, _TO_OCI, to, "config")
        )
        layers = [
            _oci_descriptor(x, _map(x.media_type, _TO_OCI, to, "layer")) for x in manifest.layers
        ]
        document: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": layers,
        }
        if manifest.annotations:
            document["annotations"] = manifest.annotations
        return _dumps(document)
    if to == DOCKER_MANIFEST:
        return _dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": _docker_descriptor(
                    manifest.config, _map(manifest.config.media_type, _TO_DOCKER, to, "config")
                ),
                "layers": [
                    _docker_descriptor(x, _map(x.media_type, _TO_DOCKER, to, "layer"))
                    for x in manifest.layers
                ],
            }
        )
    raise TransportError(f"cannot convert a manifest to {to}", slug="manifest_conversion")


def convert_index(index: ImageIndex, to: str, instances: dict[str, tuple[str, int]]) -> bytes:
    """``index`` as a ``to`` index (OCI_INDEX or DOCKER_MANIFEST_LIST).

    ``instances`` maps each instance's old digest to its new (digest, size), for
    instances whose manifest was converted too.
    """
    entries = []
    for desc in index.manifests:
        digest, size = instances.get(desc.digest, (desc.digest, desc.size))
        moved = Descriptor(
            desc.media_type, digest, size, desc.platform, desc.annotations, desc.urls
        )
        if to == OCI_INDEX:
            entries.append(_oci_descriptor(moved, _instance_type(desc.media_type, OCI_MANIFEST)))
        else:
            entries.append(
                _docker_descriptor(moved, _instance_type(desc.media_type, DOCKER_MANIFEST))
            )
    if to == OCI_INDEX:
        document: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        }
        if index.annotations:
            document["annotations"] = index.annotations
        return _dumps(document)
    if to == DOCKER_MANIFEST_LIST:
        return _dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": entries})
    raise TransportError(f"cannot convert an index to {to}", slug="manifest_conversion")


def _instance_type(media_type: str, single: str) -> str:
    # Entries naming single-image manifests take the target family's type.
    return single if media_type in (OCI_MANIFEST, DOCKER_MANIFEST) else media_type
