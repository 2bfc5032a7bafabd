"""OCI layouts and ``dir:`` images written by hand, so tests can damage them at will."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from support.images import Image, Index

REF_NAME = "org.opencontainers.image.ref.name"


def blob_path(layout: Path, digest: str) -> Path:
    """Where a layout keeps ``digest``."""
    algorithm, _, hex_part = digest.partition(":")
    return layout / "blobs" / algorithm / hex_part


def _put(layout: Path, digest: str, data: bytes) -> None:
    path = blob_path(layout, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_blobs(layout: Path, artifact: Image | Index) -> None:
    """Every blob and manifest of ``artifact`` into ``layout/blobs``."""
    images = artifact.images if isinstance(artifact, Index) else [artifact]
    for image in images:
        for digest, data in image.blobs.items():
            _put(layout, digest, data)
        _put(layout, image.manifest_digest, image.manifest)
    if isinstance(artifact, Index):
        _put(layout, artifact.manifest_digest, artifact.manifest)


def entry(artifact: Image | Index, name: str | None = None, **annotations: str) -> dict[str, Any]:
    """The index.json entry of ``artifact``, named ``name`` (ref.name) when given."""
    raw = artifact.manifest
    document: dict[str, Any] = {
        "mediaType": artifact.media_type,
        "digest": artifact.manifest_digest,
        "size": len(raw),
    }
    notes = dict(annotations)
    if name is not None:
        notes[REF_NAME] = name
    if notes:
        document["annotations"] = notes
    return document


def write_layout(
    layout: Path,
    artifacts: Sequence[Image | Index],
    entries: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """A layout holding ``artifacts``; index.json lists ``entries`` (default: each, unnamed)."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for artifact in artifacts:
        write_blobs(layout, artifact)
    listed = list(entries) if entries is not None else [entry(a) for a in artifacts]
    index = {"schemaVersion": 2, "manifests": listed}
    (layout / "index.json").write_text(json.dumps(index))
    return layout


def write_dir_image(path: Path, image: Image) -> Path:
    """``image`` in c/image's ``dir:`` format."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "version").write_text("Directory Transport Version: 1.1\n")
    (path / "manifest.json").write_bytes(image.manifest)
    for digest, data in image.blobs.items():
        (path / digest.partition(":")[2]).write_bytes(data)
    return path
