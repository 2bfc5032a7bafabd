"""blobs/<alg>/<hex>: paths, verified atomic writes, reads."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import pytest

from towline.errors import DigestMismatchError, InvalidReferenceError, StoreError
from towline.store import Store
from towline.store.blobs import split_digest

from . import sha256


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "root") as opened:
        yield opened


def test_blob_path_is_content_addressed(store: Store) -> None:
    digest = "sha256:" + "ab" * 32
    path = store.blob_path(digest)
    assert path == store.root / "blobs" / "sha256" / ("ab" * 32)
    assert path.parent.is_dir(), "a sink stages its .tmp- sibling in this directory"


@pytest.mark.parametrize(
    ("alg", "digest_of"),
    [
        ("sha256", lambda d: hashlib.sha256(d).hexdigest()),
        ("sha512", lambda d: hashlib.sha512(d).hexdigest()),
        ("blake3", lambda d: blake3.blake3(d).hexdigest()),
    ],
)
def test_write_blob_round_trip(store: Store, alg: str, digest_of: Callable[[bytes], str]) -> None:
    data = b'{"schemaVersion": 2}'
    digest = f"{alg}:{digest_of(data)}"
    assert not store.has_blob(digest)
    path = store.write_blob(digest, data)
    assert path == store.blob_path(digest)
    assert store.has_blob(digest)
    assert store.read_blob(digest) == data
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no staging file left"


def test_write_blob_rejects_wrong_content_and_leaves_nothing(store: Store) -> None:
    wanted = sha256(b"right")
    with pytest.raises(DigestMismatchError) as info:
        store.write_blob(wanted, b"wrong")
    assert info.value.expected == wanted
    assert info.value.actual == sha256(b"wrong")
    assert wanted in str(info.value)
    assert not store.has_blob(wanted)
    assert list(store.blob_path(wanted).parent.iterdir()) == []


def test_write_blob_keeps_an_existing_file(store: Store) -> None:
    digest = sha256(b"x")
    first = store.write_blob(digest, b"x")
    mtime = first.stat().st_mtime_ns
    assert store.write_blob(digest, b"x") == first
    assert first.stat().st_mtime_ns == mtime


def test_read_missing_blob_names_it(store: Store) -> None:
    digest = sha256(b"absent")
    with pytest.raises(StoreError, match=f"blob {digest} is not in the store"):
        store.read_blob(digest)


@pytest.mark.parametrize(
    "bad",
    ["", "sha256", "sha256:abc", "md5:" + "0" * 32, "sha256:" + "A" * 64, "sha512:" + "0" * 64],
)
def test_invalid_digests_are_refused(store: Store, bad: str) -> None:
    with pytest.raises(InvalidReferenceError, match="invalid digest"):
        store.blob_path(bad)
    with pytest.raises(InvalidReferenceError):
        split_digest(bad)
    with pytest.raises(InvalidReferenceError):
        store.write_blob(bad, b"")
    # Only the sha256 directory the store creates when it opens.
    assert list((store.root / "blobs").rglob("*")) == [store.root / "blobs" / "sha256"]
