"""The store is private to its owner (issue 7, finding 3): 0700 as containers/storage.

An unpacked layer keeps its setuid files and device nodes; with a 0755 store every local
user could run or open them (the CVE-2021-41091 class).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from towline.store import Store

from . import pull

PRIVATE_DIRS = ("", "blobs", "blobs/sha256", "layers", "tmp")


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most users have, which alone leaves new directories 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(root: Path) -> dict[str, int]:
    return {name: stat.S_IMODE((root / name).stat().st_mode) for name in PRIVATE_DIRS}


def test_a_new_store_is_private(tmp_path: Path) -> None:
    root = tmp_path / "parent" / "store"
    with Store(root):
        pass
    assert modes(root) == dict.fromkeys(PRIVATE_DIRS, 0o700)
    assert stat.S_IMODE((tmp_path / "parent").stat().st_mode) == 0o755, "parents are not ours"


def test_opening_a_world_readable_store_makes_it_private(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        record = store.commit_image(**pull(store, [b"base"], ["example.com/a:1"]))
        layer_dir = store.layer_path(record.layers[0].chain_id)
    # What older towline versions created.
    for name in PRIVATE_DIRS:
        (tmp_path / name).chmod(0o755)
    layer_dir.chmod(0o755)
    (tmp_path / "blobs").chmod(0o2775)  # a setgid bit is the owner's choice: kept
    with Store(tmp_path) as store:
        assert store.image(record.id) == record
    assert modes(tmp_path) == {**dict.fromkeys(PRIVATE_DIRS, 0o700), "blobs": 0o2700}
    assert stat.S_IMODE(layer_dir.stat().st_mode) == 0o755, "layer contents are left as unpacked"


@pytest.mark.parametrize("code", [errno.EROFS, errno.EPERM], ids=["read-only-mount", "not-owner"])
def test_a_store_that_cannot_be_made_private_still_opens_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, code: int
) -> None:
    # A read-only mount (EROFS) or a store owned by someone else (EPERM).
    with Store(tmp_path) as store:
        record = store.commit_image(**pull(store, [b"base"], ["example.com/a:1"]))
    (tmp_path / "layers").chmod(0o755)

    def refuse(path: object, mode: int) -> None:
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(os, "chmod", refuse)
    with caplog.at_level(logging.WARNING, logger="towline.store"), Store(tmp_path) as store:
        assert store.list_images() == [record]
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = warning.getMessage()
    assert str(tmp_path / "layers") in message and os.strerror(code) in message
    assert "chmod go=" in message
