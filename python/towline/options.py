"""PullOptions: every knob of a pull, with every default in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from towline.events import ProgressEvent

__all__ = ["DEFAULT_PARALLEL_DOWNLOADS", "PullOptions"]

#: Layers downloaded at once when neither the option nor containers.conf says (as c/image).
DEFAULT_PARALLEL_DOWNLOADS = 6


@dataclass(frozen=True)
class PullOptions:
    """Options of :meth:`towline.Runtime.pull`. ``None`` means "as configured".

    - ``platform``: ``"os/arch[/variant]"`` to pick from a multi-platform index
      (default: this machine's platform).
    - ``all_tags``: pull every tag of the repository.
    - ``writer``: a text stream for podman-style progress lines (None: quiet).
    - ``progress``: a callback receiving :class:`~towline.events.ProgressEvent`
      (bytes per layer), for progress bars; called from download threads.
    - ``max_retries`` / ``retry_delay``: retries of failed requests (default:
      containers.conf ``[engine] retry`` = 3 and ``retry_delay``, else backoff).
    - ``tls_verify``: False allows unverified TLS and plain HTTP; None leaves it to
      registries.conf (``insecure = true``).
    - ``credentials``: ``"user:password"``; ``auth_file``: an auth.json to use
      instead of the default ones; ``registries_conf``; ``cert_dir``.
    - ``unpack``: unpack layers into the store as they arrive (the default).
    - ``max_parallel_downloads``: layers fetched at once (default:
      containers.conf ``image_parallel_copies``, else 6).
    - ``durable``: fsync what is written before it becomes visible (default);
      False trades crash-durability of the new files for speed.
    """

    platform: str | None = None
    all_tags: bool = False
    writer: TextIO | None = None
    progress: Callable[[ProgressEvent], None] | None = None
    max_retries: int | None = None
    retry_delay: float | None = None
    tls_verify: bool | None = None
    credentials: str | None = None
    auth_file: str | Path | None = None
    registries_conf: str | Path | None = None
    cert_dir: str | Path | None = None
    unpack: bool = True
    max_parallel_downloads: int | None = None
    durable: bool = True
