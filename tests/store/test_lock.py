"""The inter-process flock: shared while open, exclusive only when alone."""

from __future__ import annotations

from pathlib import Path

from towline.store.lock import StoreLock


def test_exclusive_only_when_nobody_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    with StoreLock(path) as first, StoreLock(path) as second:
        assert first.try_exclusive()
        assert not second.try_exclusive()
        first.acquire_shared()
        assert first.mode == "shared"
        assert not second.try_exclusive(), "a shared holder still blocks recovery"
        second.acquire_shared()
        first.release()
        with StoreLock(path) as third:
            assert not third.try_exclusive(), "second still holds it shared"
        second.release()
        with StoreLock(path) as fourth:
            assert fourth.try_exclusive()


def test_release_is_idempotent(tmp_path: Path) -> None:
    lock = StoreLock(tmp_path / "lock")
    lock.acquire_shared()
    lock.release()
    lock.release()
    assert lock.mode is None
