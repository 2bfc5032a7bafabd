"""The towline exception hierarchy.

Every error towline raises on purpose is a subclass of :class:`TowlineError`,
with a one-line message a person can act on (what failed, for which image or
registry, and what to do about it)::

    TowlineError
     ├── InvalidReferenceError     a name that is not a valid image reference
     ├── ShortNameError            a short name that cannot be resolved to one registry
     ├── ImageUnknownError         no such image in the local store
     ├── PolicyError               a pull policy that forbids the operation, or an unknown one
     ├── ConfigError               a configuration file (registries.conf, auth.json...) is invalid
     ├── PlatformNotFoundError     an index with no entry for the wanted platform
     ├── TransportError            talking to a registry, archive or daemon failed
     │    ├── AuthenticationError  credentials missing or refused
     │    └── ManifestUnknownError the registry does not know the tag or digest
     ├── DigestMismatchError       content whose digest, size or diff_id is not what was promised
     ├── InvalidLayerError         a layer that is unsafe or malformed (paths, tar, compression)
     └── StoreError                the local store cannot be read or written

Errors raised by the native core (``towline._native``) use these same classes,
so callers catch one tree. Errors carry a stable ``slug`` (e.g.
``"digest_mismatch"``, ``"unsafe_path"``) for programs, and, where it makes
sense, the ``expected`` and ``actual`` values.
"""

from __future__ import annotations

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


class TowlineError(Exception):
    """Base class of every error towline raises on purpose.

    ``slug`` is a short stable identifier of the kind of failure; ``expected``
    and ``actual`` carry the two values that disagreed, when there are two.
    """

    slug: str = "error"

    def __init__(
        self,
        message: str,
        slug: str | None = None,
        expected: str | None = None,
        actual: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if slug is not None:
            self.slug = slug
        self.expected = expected
        self.actual = actual

    def __str__(self) -> str:
        return self.message


class InvalidReferenceError(TowlineError, ValueError):
    """The string is not a valid image reference (or transport name)."""

    slug = "invalid_reference"


class ShortNameError(TowlineError):
    """A short name could not be resolved (no alias, no search registries, no TTY)."""

    slug = "short_name"


class ImageUnknownError(TowlineError, LookupError):
    """No image with that name or ID exists in the local store."""

    slug = "image_unknown"


class PolicyError(TowlineError):
    """The pull policy is unknown or forbids what was asked (e.g. ``always`` with an ID)."""

    slug = "policy"


class ConfigError(TowlineError):
    """A configuration file or option is invalid; the message names the file and the key."""

    slug = "invalid_config"


class PlatformNotFoundError(TowlineError):
    """A manifest list / image index has no image for the wanted platform."""

    slug = "platform_not_found"


class TransportError(TowlineError):
    """Reading from or writing to a transport (registry, archive, daemon) failed."""

    slug = "transport"


class AuthenticationError(TransportError):
    """The registry refused the credentials, or needs some and none were given."""

    slug = "unauthorized"


class ManifestUnknownError(TransportError):
    """The registry does not know the repository, tag or digest."""

    slug = "manifest_unknown"


class DigestMismatchError(TowlineError):
    """Content does not match its digest, size or diff_id; nothing of it was kept."""

    slug = "digest_mismatch"


class InvalidLayerError(TowlineError):
    """A layer is unsafe or malformed: an escaping path, a bad tar, unknown compression."""

    slug = "invalid_layer"


class StoreError(TowlineError):
    """The local store (or a destination directory) could not be read or written."""

    slug = "store"
