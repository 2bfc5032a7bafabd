"""The store's directories are private to their owner (0700), as containers/storage's.

An unpacked layer keeps its setuid files and device nodes, and ``tmp/`` holds layers on
their way to deletion: if another local user could reach them, they could run a setuid
binary of an image or open its device nodes (the CVE-2021-41091 class). ``blobs/`` holds
the images' content, which is nobody else's business either. So the root and everything
directly under it is created 0700, and an older store is fixed when it is opened.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PRIVATE_MODE", "make_private"]

PRIVATE_MODE = 0o700

_log = logging.getLogger(__name__)


def make_private(root: Path, subdirs: Iterable[str]) -> None:
    """Create ``root`` and ``root/<subdir>`` private; take group and other access off old ones.

    The parents of ``root`` (e.g. ``~/.local/share``) are created as ordinary
    directories. A directory whose mode cannot be changed (a read-only mount, another
    owner) is only warned about: such a store must still open for reading. OSError from
    creating a directory propagates.
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    for directory in (root, *(root / name for name in subdirs)):
        directory.mkdir(mode=PRIVATE_MODE, exist_ok=True)
        mode = stat.S_IMODE(directory.stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            _restrict(directory, mode)


def _restrict(directory: Path, mode: int) -> None:
    try:
        # Owner bits are left alone: a store made read-only on purpose stays so.
        os.chmod(directory, mode & ~(stat.S_IRWXG | stat.S_IRWXO))
    except OSError as exc:
        _log.warning(
            "cannot make %s private (mode %o): %s; other users may reach the setuid files and "
            "devices of unpacked layers: run chmod go= %s as its owner",
            directory,
            mode,
            exc.strerror,
            directory,
        )
