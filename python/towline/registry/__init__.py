"""The registry client: distribution v2 API over httpx (auth, retries, resumable blobs)."""

from __future__ import annotations

from towline.registry.auth import BearerChallengeAuth
from towline.registry.client import FetchedManifest, RegistryClient

__all__ = ["BearerChallengeAuth", "FetchedManifest", "RegistryClient"]
