"""towline: pull container images into a local store and copy them between transports.

Start with :class:`Runtime`::

    import towline
    rt = towline.Runtime()
    image = rt.pull("alpine:3.20")[0]
    image.unpack("/tmp/rootfs")
"""

from __future__ import annotations

from towline.errors import (
    AuthenticationError,
    ConfigError,
    DigestMismatchError,
    ImageUnknownError,
    InvalidLayerError,
    InvalidReferenceError,
    ManifestUnknownError,
    PlatformNotFoundError,
    PolicyError,
    ShortNameError,
    StoreError,
    TowlineError,
    TransportError,
)
from towline.events import Event, ProgressEvent
from towline.image import Image, Layer
from towline.options import PullOptions
from towline.reference import Reference, parse_reference
from towline.runtime import Runtime

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "DigestMismatchError",
    "Event",
    "Image",
    "ImageUnknownError",
    "InvalidLayerError",
    "InvalidReferenceError",
    "Layer",
    "ManifestUnknownError",
    "PlatformNotFoundError",
    "PolicyError",
    "ProgressEvent",
    "PullOptions",
    "Reference",
    "Runtime",
    "ShortNameError",
    "StoreError",
    "TowlineError",
    "TransportError",
    "parse_reference",
]

# Present everything under its public name (repr, docs), as httpx does.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("towline."):
        _obj.__module__ = "towline"
del _name, _obj
