"""towline: pull container images into a local store and copy them between transports."""

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

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "DigestMismatchError",
    "ImageUnknownError",
    "InvalidLayerError",
    "InvalidReferenceError",
    "ManifestUnknownError",
    "PlatformNotFoundError",
    "PolicyError",
    "ShortNameError",
    "StoreError",
    "TowlineError",
    "TransportError",
]
