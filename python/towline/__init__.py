"""towline: pull container images into a local store and copy them between transports.

Start with :class:`Runtime`::

    import towline
    rt = towline.Runtime()
    image = rt.pull("alpine:3.20")[0]
    image.unpack("/tmp/rootfs")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from towline._native import __version__ as __version__
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

if TYPE_CHECKING:
    from towline.runtime import Runtime

# Loaded on first use: the runtime brings in httpx, ssl and the registry client
# (~60 ms), which `import towline` for parse_reference or the errors does not need,
# and which the CLI wants to import only after its own start-up settings.
_LAZY = {"Runtime": "towline.runtime"}

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


def _present(obj: Any) -> Any:
    """Show ``obj`` under its public name (repr, docs), as httpx does."""
    if getattr(obj, "__module__", "").startswith("towline."):
        obj.__module__ = "towline"
    return obj


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'towline' has no attribute {name!r}")
    obj = _present(getattr(importlib.import_module(module), name))
    globals()[name] = obj
    return obj


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


for _name in __all__:
    if _name not in _LAZY:
        _present(globals()[_name])
del _name
