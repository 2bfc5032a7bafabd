"""The records the store hands out (one layer, one image) and how they are read from rows.

They are frozen snapshots of what the database held at the time of the read; change the
store through :class:`towline.store.Store`, then read again.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from towline.errors import ImageUnknownError, InvalidReferenceError
from towline.store.blobs import split_digest

__all__ = [
    "ImageRecord",
    "LayerRecord",
    "check_name",
    "move_names",
    "parse_image_id",
    "read_image",
    "repository_of",
    "write_image",
]

_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class LayerRecord:
    """One unpacked layer, identified by its OCI ChainID.

    ``blob_digest``, ``compressed_size`` and ``media_type`` describe the blob the layer was
    pulled from. Two images can share a layer (same ChainID) pulled from differently
    compressed blobs; each image's ``layers`` then carries its own blob, while
    :meth:`Store.layer` reports the blob of one image that uses it.
    """

    chain_id: str
    diff_id: str
    parent: str | None
    blob_digest: str
    compressed_size: int
    uncompressed_size: int
    media_type: str


@dataclass(frozen=True)
class ImageRecord:
    """One image in the store, as podman's image record (``storage.Image``).

    ``id`` is the 64-hex config digest. ``names`` are unique across the store, oldest
    first. ``digest`` is the manifest digest the image was last pulled by (the list digest
    when pulled through a list); ``digests`` holds it first, then every other manifest
    digest known for the image, for ``repo@digest`` lookups.
    """

    id: str
    names: tuple[str, ...]
    digest: str
    digests: tuple[str, ...]
    manifest_digest: str
    manifest_media_type: str
    config_digest: str
    list_digest: str | None
    platform: str
    created: str
    pulled: float
    layers: tuple[LayerRecord, ...]
    size: int

    @property
    def top_layer(self) -> str | None:
        """The ChainID of the topmost layer, or None for an image without layers."""
        return self.layers[-1].chain_id if self.layers else None


def read_image(conn: sqlite3.Connection, image_id: str) -> ImageRecord | None:
    """Build the record of ``image_id`` from its rows; call inside one read transaction."""
    row = conn.execute(
        "SELECT id, digest, manifest_digest, manifest_media_type, config_digest, list_digest,"
        " platform, created, pulled, size FROM images WHERE id = ?",
        (image_id,),
    ).fetchone()
    if row is None:
        return None
    (id_, digest, manifest_digest, media_type, config_digest, list_digest) = row[:6]
    platform, created, pulled, size = row[6:]
    names = tuple(
        r[0]
        for r in conn.execute(
            "SELECT name FROM image_names WHERE image_id = ? ORDER BY rowid", (image_id,)
        )
    )
    others = [
        r[0]
        for r in conn.execute(
            "SELECT digest FROM image_digests WHERE image_id = ? ORDER BY rowid", (image_id,)
        )
    ]
    layers = tuple(
        LayerRecord(*r)
        for r in conn.execute(
            "SELECT l.chain_id, l.diff_id, l.parent, il.blob_digest, il.compressed_size,"
            " l.uncompressed_size, il.media_type"
            " FROM image_layers il JOIN layers l USING (chain_id)"
            " WHERE il.image_id = ? ORDER BY il.idx",
            (image_id,),
        )
    )
    return ImageRecord(
        id=id_,
        names=names,
        digest=digest,
        digests=tuple(dict.fromkeys([digest, *others])),
        manifest_digest=manifest_digest,
        manifest_media_type=media_type,
        config_digest=config_digest,
        list_digest=list_digest,
        platform=platform,
        created=created,
        pulled=pulled,
        layers=layers,
        size=size,
    )


def write_image(conn: sqlite3.Connection, record: ImageRecord) -> None:
    """Insert or update the image's rows; call inside a write transaction.

    An existing image keeps its other names and digests: its current manifest, layer
    blobs and pull time are replaced, ``record.digests`` and ``record.names`` are added.
    The layer rows must exist already.
    """
    conn.execute(
        "INSERT INTO images (id, digest, manifest_digest, manifest_media_type,"
        " config_digest, list_digest, platform, created, pulled, size)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET digest = excluded.digest,"
        " manifest_digest = excluded.manifest_digest,"
        " manifest_media_type = excluded.manifest_media_type,"
        " list_digest = excluded.list_digest, platform = excluded.platform,"
        " created = excluded.created, pulled = excluded.pulled, size = excluded.size",
        (
            record.id,
            record.digest,
            record.manifest_digest,
            record.manifest_media_type,
            record.config_digest,
            record.list_digest,
            record.platform,
            record.created,
            record.pulled,
            record.size,
        ),
    )
    conn.execute("DELETE FROM image_layers WHERE image_id = ?", (record.id,))
    conn.executemany(
        "INSERT INTO image_layers (image_id, idx, chain_id, blob_digest,"
        " compressed_size, media_type) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (record.id, i, x.chain_id, x.blob_digest, x.compressed_size, x.media_type)
            for i, x in enumerate(record.layers)
        ],
    )
    conn.executemany(
        "INSERT OR IGNORE INTO image_digests (image_id, digest) VALUES (?, ?)",
        [(record.id, d) for d in record.digests],
    )
    move_names(conn, record.id, record.names)


def move_names(conn: sqlite3.Connection, image_id: str, names: Iterable[str]) -> None:
    """Give ``names`` to the image, taking each from any other image that holds it.

    As c/storage: names are unique across the store, and an image that loses its last
    name stays (dangling). Call inside a write transaction.
    """
    for name in names:
        conn.execute("DELETE FROM image_names WHERE name = ? AND image_id != ?", (name, image_id))
        conn.execute(
            "INSERT OR IGNORE INTO image_names (name, image_id) VALUES (?, ?)", (name, image_id)
        )


def repository_of(name: str) -> str:
    """``"host/path"`` of a normalized ``host/path:tag`` or ``host/path@alg:hex`` name."""
    if "@" in name:
        return name.partition("@")[0]
    head, slash, last = name.rpartition("/")
    return f"{head}{slash}{last.partition(':')[0]}"


def check_name(name: str) -> str:
    """Return ``name`` if it looks normalized (``host/path:tag`` or ``host/path@digest``).

    The store keeps names exactly as given, so it rejects what is clearly not normalized
    (full parsing is parse_reference's job) rather than store a name no lookup matches.
    """
    _, slash, last = name.rpartition("/")
    tagged = ":" in last and "@" not in name
    digested = "@" in name and ":" in name.partition("@")[2]
    if not slash or not (tagged or digested) or name != name.strip() or " " in name:
        raise InvalidReferenceError(
            f"{name!r} is not a normalized image name (host/path:tag or host/path@digest); "
            "normalize it with towline.parse_reference first"
        )
    if digested:
        split_digest(name.partition("@")[2])
    return name


def parse_image_id(image_id: str) -> str:
    """The 64-hex image ID, with an optional ``sha256:`` prefix removed; podman's error else."""
    hex_ = image_id.removeprefix("sha256:")
    if len(hex_) != 64 or not _HEX.fullmatch(hex_):
        raise ImageUnknownError(
            f"{image_id}: invalid format: no 64-byte hexadecimal value", slug="invalid_id"
        )
    return hex_
