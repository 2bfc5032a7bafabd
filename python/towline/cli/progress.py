"""Pull progress for people: live bars on a terminal, podman's plain lines elsewhere."""

from __future__ import annotations

import io
import threading
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)

from towline.events import ProgressEvent, short_hex

__all__ = ["LiveProgress"]


class LiveProgress:
    """Rich progress bars, one per blob, fed by :class:`~towline.events.ProgressEvent`.

    Used as the ``progress`` callback of a pull (called from download threads),
    with :attr:`lines` as its ``writer``: podman's other lines print above the bars.
    """

    def __init__(self, stream: TextIO) -> None:
        self._progress = Progress(
            TextColumn("Copying {task.fields[role]} {task.fields[short]}"),
            BarColumn(bar_width=40),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TextColumn("{task.fields[status]}"),
            console=Console(file=stream),
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    @property
    def lines(self) -> io.StringIO:
        """A writer for podman's lines while the bars show ("Trying to pull …")."""
        return _LinesAboveBars(self._progress.console)

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def _task(self, event: ProgressEvent) -> TaskID:
        with self._lock:
            task = self._tasks.get(event.digest)
            if task is None:
                task = self._progress.add_task(
                    "",
                    total=event.total,
                    role="blob" if event.role == "layer" else "config",
                    short=short_hex(event.digest),
                    status="",
                )
                self._tasks[event.digest] = task
            return task

    def __call__(self, event: ProgressEvent) -> None:
        task = self._task(event)
        if event.kind == "advance":
            self._progress.update(task, completed=event.done)
        elif event.kind == "done":
            self._progress.update(task, completed=event.total or event.done, status="done")
        elif event.kind == "skipped":
            self._progress.update(task, total=1, completed=1, status="skipped: already exists")


class _LinesAboveBars(io.StringIO):
    """Prints each line written above the live bars, except the per-blob ones.

    "Copying blob <id> done" would repeat what that blob's bar already says.
    """

    def __init__(self, console: Console) -> None:
        super().__init__()
        self._console = console

    def write(self, s: str) -> int:
        for line in s.splitlines():
            if not line.startswith("Copying "):
                self._console.print(line, markup=False, highlight=False, soft_wrap=True)
        return len(s)
