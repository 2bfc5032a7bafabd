"""The local image store: SQLite metadata, content-addressed blobs, unpacked layers.

``Store(root)`` opens (creating if needed) a store root; ``chain_ids`` computes the
OCI ChainIDs that name unpacked layers; ``ImageRecord``/``LayerRecord`` are what the
store hands out; a ``Lease`` (``Store.lease()``) keeps what a writer is about to commit
from being deleted.
"""

from __future__ import annotations

from towline.store.layers import chain_ids
from towline.store.leases import Lease
from towline.store.records import ImageRecord, LayerRecord, repository_of
from towline.store.store import MIN_ID_PREFIX, Store

__all__ = [
    "MIN_ID_PREFIX",
    "ImageRecord",
    "LayerRecord",
    "Lease",
    "Store",
    "chain_ids",
    "repository_of",
]
