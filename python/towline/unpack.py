"""Unpacking layers that the store holds only as blobs (pulled with ``unpack=False``)."""

from __future__ import annotations

from towline import _native
from towline.errors import StoreError
from towline.store import LayerRecord, Store

__all__ = ["unpack_stored_layer"]

_CHUNK = 1 << 20


def unpack_stored_layer(store: Store, layer: LayerRecord, *, durable: bool = True) -> None:
    """Unpack ``layer`` from its stored blob into ``layers/<chain-id>``.

    The blob is verified again on the way (digest, size, diff_id): the store's
    files are trusted no more than the network.
    """
    if store.is_unpacked(layer.chain_id):
        return
    if not store.has_blob(layer.blob_digest):
        raise StoreError(
            f"layer {layer.chain_id} is neither unpacked nor stored as blob "
            f"{layer.blob_digest} in {store.root}; pull the image again",
            slug="layer_unknown",
        )
    sink = _native.LayerSink(
        None,
        store.layer_path(layer.chain_id),
        layer.blob_digest,
        layer.compressed_size,
        layer.diff_id,
        durable=durable,
    )
    try:
        with open(store.blob_path(layer.blob_digest), "rb") as blob:
            while chunk := blob.read(_CHUNK):
                sink.write(chunk)
        sink.finish()
    except BaseException:
        sink.abort()
        raise
