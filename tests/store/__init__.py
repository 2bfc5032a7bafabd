"""Helpers for the store tests: stand-ins for the native sinks and for a pull's commit.

The sinks write a ``.tmp-*`` sibling, then rename it into place; these helpers do the
same, so the store sees exactly what a real pull leaves on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from towline.store import LayerRecord, Store, chain_ids

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sink_blob(store: Store, data: bytes) -> str:
    """Write a blob as BlobSink does: a .tmp- sibling renamed into place."""
    digest = sha256(data)
    final = store.blob_path(digest)
    tmp = final.with_name(f".tmp-{secrets.token_hex(4)}")
    tmp.write_bytes(data)
    os.rename(tmp, final)
    return digest


def sink_layer(store: Store, chain_id: str, files: dict[str, bytes]) -> Path:
    """Unpack a layer as LayerSink does: fill layers/.tmp-*, then rename to layers/<hex>."""
    final = store.layer_path(chain_id)
    if final.is_dir():
        return final
    tmp = final.with_name(f".tmp-{secrets.token_hex(4)}")
    tmp.mkdir()
    for name, content in files.items():
        (tmp / name).write_bytes(content)
    try:
        os.rename(tmp, final)
    except OSError:
        # Another pull renamed the same layer into place first; keep theirs.
        if not final.is_dir():
            raise
        shutil.rmtree(tmp)
    return final


def pull_layers(
    store: Store, contents: list[bytes], *, variant: bytes = b"gz"
) -> list[LayerRecord]:
    """Sink one layer per content (diff_id = sha256(content)) and its compressed blob.

    ``variant`` changes the blob bytes but not the diff_id: the same layer compressed
    another way.
    """
    diff_ids = [sha256(c) for c in contents]
    records = []
    for content, diff_id, chain_id, parent in zip(
        contents, diff_ids, chain_ids(diff_ids), [None, *chain_ids(diff_ids)], strict=False
    ):
        blob = variant + b":" + content
        digest = sink_blob(store, blob)
        sink_layer(store, chain_id, {"content": content})
        records.append(
            LayerRecord(
                chain_id=chain_id,
                diff_id=diff_id,
                parent=parent,
                blob_digest=digest,
                compressed_size=len(blob),
                uncompressed_size=len(content),
                media_type=LAYER_MEDIA_TYPE,
            )
        )
    return records


def config_bytes(diff_ids: list[str], *, label: str = "", platform: str = "linux/amd64") -> bytes:
    """An image config; its sha256 is the image ID."""
    return json.dumps(
        {
            "created": "2024-01-02T03:04:05Z",
            "architecture": platform.split("/")[1],
            "os": platform.split("/")[0],
            "config": {"Labels": {"label": label}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        },
        sort_keys=True,
    ).encode()


def pull(
    store: Store,
    contents: list[bytes],
    names: list[str],
    *,
    label: str = "",
    platform: str = "linux/amd64",
    via_list: bytes | None = None,
    variant: bytes = b"gz",
) -> dict[str, Any]:
    """Everything a pull writes before its commit; returns the commit_image keywords.

    ``label`` makes the config (hence the image ID) differ between images that share
    layers; ``via_list`` is the list bytes when the image is pulled through an index.
    """
    layers = pull_layers(store, contents, variant=variant)
    config = config_bytes([x.diff_id for x in layers], label=label, platform=platform)
    config_digest = sink_blob(store, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"digest": config_digest, "size": len(config)},
            "layers": [{"digest": x.blob_digest, "size": x.compressed_size} for x in layers],
        },
        sort_keys=True,
    ).encode()
    manifest_digest = sha256(manifest)
    store.write_blob(manifest_digest, manifest)
    list_digest = None
    if via_list is not None:
        list_digest = sha256(via_list)
        store.write_blob(list_digest, via_list)
    return {
        "image_id": config_digest.removeprefix("sha256:"),
        "names": names,
        "manifest_digest": manifest_digest,
        "manifest_media_type": MANIFEST_MEDIA_TYPE,
        "config_digest": config_digest,
        "list_digest": list_digest,
        "platform": platform,
        "created": "2024-01-02T03:04:05Z",
        "layers": layers,
    }


def check_consistent(store: Store, *, recovered: bool = False) -> None:
    """Assert the store shows whole images only: no row without its files.

    With ``recovered`` (the store was just opened alone), also assert that recovery left
    no debris: no staging, no orphan layer dir, no unreferenced blob, no layer row that
    no image uses.
    """
    images = store.list_images()
    names = [n for image in images for n in image.names]
    assert len(names) == len(set(names)), "names are unique across the store"
    for image in images:
        assert image.layers, f"image {image.id} has no layers"
        for digest in (image.manifest_digest, image.config_digest, image.list_digest):
            assert digest is None or store.has_blob(digest), f"{image.id}: {digest} missing"
        for layer in image.layers:
            assert store.layer(layer.chain_id) is not None, f"{image.id}: {layer.chain_id}"
    conn = sqlite3.connect(f"file:{store.root / 'towline.db'}?mode=ro", uri=True)
    try:
        unused = conn.execute(
            "SELECT chain_id FROM layers WHERE chain_id NOT IN (SELECT chain_id FROM image_layers)"
        ).fetchall()
        known = {r[0].split(":")[1] for r in conn.execute("SELECT chain_id FROM layers")}
    finally:
        conn.close()
    assert unused == [], "layer rows and their images are committed together"
    if recovered:
        assert list(store.tmp_dir.iterdir()) == []
        on_disk = {p.name for p in (store.root / "layers").iterdir()}
        assert on_disk == known, "no staging or orphan layer dirs"
        used = {d for i in images for d in (*i.digests, i.config_digest)}
        used |= {x.blob_digest for i in images for x in i.layers}
        blobs = {f"{p.parent.name}:{p.name}" for p in (store.root / "blobs").glob("*/*")}
        assert blobs <= used, f"unreferenced blobs left: {blobs - used}"
