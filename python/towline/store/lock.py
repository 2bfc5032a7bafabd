"""The store's inter-process lock: shared while a store is open, exclusive for recovery.

Every open :class:`~towline.store.Store` holds a SHARED ``flock`` on ``<root>/lock``.
Recovery at open (clearing ``tmp/``, stray ``.tmp-*`` files and orphans) deletes files
that another process may be in the middle of writing, so it runs only when a
non-blocking EXCLUSIVE ``flock`` succeeds, which proves that no other store is open.

``flock`` locks belong to the open file description, so two stores opened in one
process exclude each other exactly as two processes do. SQLite has its own locks for
the database; this one only guards files outside it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from towline.errors import StoreError

__all__ = ["StoreLock"]


class StoreLock:
    """A ``flock`` on one lock file, held shared or exclusive until :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.mode: str | None = None

    def _open(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise StoreError(
                    f"cannot open the store lock {self.path}: {exc.strerror}; "
                    "check the store directory's permissions"
                ) from exc
        return self._fd

    def _flock(self, operation: int) -> bool:
        fd = self._open()
        try:
            fcntl.flock(fd, operation)
        except BlockingIOError:
            return False
        except OSError as exc:
            raise StoreError(
                f"cannot lock {self.path}: {exc.strerror}; "
                "put the store on a filesystem that supports flock"
            ) from exc
        return True

    def try_exclusive(self) -> bool:
        """Take the exclusive lock if nobody else holds the file locked; never wait.

        Call it before :meth:`acquire_shared`: converting a held lock is not atomic with
        ``flock``. Returns False, holding nothing, when another holder exists.
        """
        if self._flock(fcntl.LOCK_EX | fcntl.LOCK_NB):
            self.mode = "exclusive"
            return True
        return False

    def acquire_shared(self) -> None:
        """Take (or downgrade to) the shared lock, waiting while a recovery holds it.

        The wait is bounded by the recovery of one opening store: nobody holds the
        exclusive lock for longer.
        """
        self._flock(fcntl.LOCK_SH)
        self.mode = "shared"

    def release(self) -> None:
        """Drop the lock and close the file; a no-op when nothing is held."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self.mode = None
            # Closing the only descriptor of the open file description drops the flock.
            os.close(fd)

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
