"""What a pull reports: libimage-style events, and progress for displays.

The library never prints. A :class:`Reporter` writes podman's progress lines to
the caller's ``writer`` (if any) and hands :class:`ProgressEvent` objects to the
caller's ``progress`` callback (if any); the CLI turns those into bars.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TextIO

__all__ = ["Event", "ProgressEvent", "Reporter"]

EventType = Literal["pull", "pull-error"]
ProgressKind = Literal["start", "advance", "done", "skipped"]
BlobRole = Literal["layer", "config"]


@dataclass(frozen=True)
class Event:
    """One pull outcome, as libimage's ``Event``: ``name`` is what the user asked for."""

    type: EventType
    name: str
    id: str = ""
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    error: str | None = None


@dataclass(frozen=True)
class ProgressEvent:
    """Progress of one blob. ``done`` is bytes so far, ``total`` the expected size."""

    kind: ProgressKind
    digest: str
    role: BlobRole = "layer"
    done: int = 0
    total: int | None = None


def short_hex(digest: str) -> str:
    """The 12 hex digits podman shows for a digest."""
    return digest.partition(":")[2][:12]


class Reporter:
    """Narrates one pull. Thread-safe: layer downloads report concurrently."""

    def __init__(
        self,
        writer: TextIO | None,
        progress: Callable[[ProgressEvent], None] | None,
    ) -> None:
        self._writer = writer
        self._progress = progress
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        """A podman-style line (e.g. "Trying to pull …") for the writer."""
        if self._writer is not None:
            with self._lock:
                self._writer.write(text + "\n")
                self._writer.flush()

    def event(self, event: ProgressEvent) -> None:
        if self._progress is not None:
            self._progress(event)

    def blob_started(self, digest: str, role: BlobRole, total: int | None) -> None:
        self.event(ProgressEvent("start", digest, role, 0, total))

    def blob_advanced(self, digest: str, role: BlobRole, done: int, total: int | None) -> None:
        self.event(ProgressEvent("advance", digest, role, done, total))

    def blob_done(self, digest: str, role: BlobRole, total: int | None) -> None:
        self.event(ProgressEvent("done", digest, role, total or 0, total))
        self.line(f"Copying {'blob' if role == 'layer' else 'config'} {short_hex(digest)} done")

    def blob_skipped(self, digest: str, role: BlobRole) -> None:
        self.event(ProgressEvent("skipped", digest, role))
        self.line(f"Copying blob {short_hex(digest)} skipped: already exists")
