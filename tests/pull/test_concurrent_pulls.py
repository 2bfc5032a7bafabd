"""Pulls, failures and removals racing on one store (issue 7, finding 13).

Each test runs two Runtimes on the same root in two threads (each has its own Store, so
its own SQLite connection and flock, exactly as two processes) against the real
registry. The interleaving is forced with the pulls' progress callbacks, which run in
the download threads: a layer download waits at its start for the other side to reach
a given point, so every run takes the same path.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import towline
from support.images import TarBuilder, build_image, sha256_digest, with_config
from support.registry import PushedImage, RegistryServer, push_named
from towline.store import chain_ids

# Generous: a gate that is never opened means the test is broken, not slow.
GATE_TIMEOUT = 20.0


def _layer(label: str) -> bytes:
    return TarBuilder().add_file(f"data/{label}", os.urandom(512) + label.encode()).bytes()


def _push(registry: RegistryServer, repo: str, layers: list[bytes]) -> PushedImage:
    return push_named(registry, repo, build_image(layers))


def _push_with_lying_top_layer(
    registry: RegistryServer, repo: str, layers: list[bytes]
) -> PushedImage:
    """An image whose config gives its top layer a wrong diff_id: the pull fails at that layer."""
    image = build_image(layers)
    lie = sha256_digest(b"not the layer").encode()
    liar = with_config(image, image.config.replace(image.layers[-1].diff_id.encode(), lie))
    return push_named(registry, repo, liar)


def _wait(event: threading.Event, what: str) -> None:
    if not event.wait(GATE_TIMEOUT):
        raise TimeoutError(f"test gate never opened: {what}")


@dataclass
class _Pull:
    """One pull in its own thread with its own Runtime; ``done`` is set when it ends."""

    root: Path
    env: dict[str, str]
    reference: str
    progress: Callable[[towline.ProgressEvent], None]
    parallel: int = 2

    def __post_init__(self) -> None:
        self.done = threading.Event()
        self.images: list[towline.Image] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"pull {self.reference}")

    def _run(self) -> None:
        options = towline.PullOptions(
            tls_verify=False, progress=self.progress, max_parallel_downloads=self.parallel
        )
        try:
            with towline.Runtime(self.root, env=self.env) as rt:
                self.images = rt.pull(self.reference, options=options)
        except BaseException as exc:  # handed to the test thread, which asserts on it
            self.error = exc
        finally:
            self.done.set()

    def start(self) -> _Pull:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(GATE_TIMEOUT * 3)
        assert not self._thread.is_alive(), f"{self.reference}: pull hangs"


def _assert_whole(root: Path, env: dict[str, str], pushed: PushedImage, tmp_path: Path) -> None:
    """The image is in the store with every file its record names, and it unpacks."""
    with towline.Runtime(root, env=env) as rt:
        image, _ = rt.lookup_image(pushed.reference)
        assert image.id == pushed.config_digest.removeprefix("sha256:")
        for layer, chain_id in zip(
            image.layers, chain_ids([x.diff_id for x in image.layers]), strict=True
        ):
            assert rt.store.has_blob(layer.digest), f"blob {layer.digest} of the record is gone"
            assert rt.store.layer(chain_id) is not None, f"layer {chain_id} is gone"
        rootfs = image.unpack(tmp_path / f"rootfs-{image.id[:12]}")
        assert {p.name for p in (rootfs / "data").iterdir()}


def _assert_no_leases_left(root: Path) -> None:
    conn = sqlite3.connect(f"file:{root / 'towline.db'}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT count(*) FROM leases").fetchone()[0] == 0
    finally:
        conn.close()
    assert [p.name for p in (root / "tmp").iterdir()] == []


@pytest.mark.parametrize("first", ["ok_pull_first", "failing_pull_first"])
def test_a_failing_pull_keeps_the_files_a_concurrent_pull_adopted(
    tmp_path: Path, env: dict[str, str], registry: RegistryServer, first: str
) -> None:
    # The reproducer: A = [base, slow], B = [base, bad diff_id], overlapping.
    # ok_pull_first: A writes base, B rewrites the blob and then discards it, so A's
    # record named a missing blob. failing_pull_first: B writes base, A adopts B's
    # directory, B discards it, and A's commit failed "not unpacked".
    base, n = _layer("base"), os.urandom(4).hex()
    ok = _push(registry, f"race/ok-{n}", [base, _layer("slow")])
    bad = _push_with_lying_top_layer(registry, f"race/bad-{n}", [base, _layer("bad")])
    base_digest, slow_digest, bad_digest = (
        ok.layers[0].digest,
        ok.layers[1].digest,
        bad.layers[1].digest,
    )
    root = tmp_path / "store"
    ok_has_base, bad_has_base = threading.Event(), threading.Event()

    def ok_progress(event: towline.ProgressEvent) -> None:
        if event.digest == base_digest and event.kind in ("done", "skipped"):
            ok_has_base.set()
        elif event.digest == slow_digest and event.kind == "start":
            _wait(failing.done, "the failing pull ended")  # A is slow: B fails meanwhile

    def bad_progress(event: towline.ProgressEvent) -> None:
        if event.digest == base_digest and event.kind == "done":
            bad_has_base.set()
        elif event.digest == bad_digest and event.kind == "start":
            # Fail only once both pulls have base in place.
            _wait(ok_has_base, "the ok pull has base")
            _wait(bad_has_base, "the failing pull has base")

    succeeding = _Pull(root, env, ok.reference, ok_progress)
    failing = _Pull(root, env, bad.reference, bad_progress)
    if first == "ok_pull_first":
        succeeding.start()
        _wait(ok_has_base, "the ok pull has base")
        failing.start()
    else:
        failing.start()
        _wait(bad_has_base, "the failing pull has base")
        succeeding.start()
    failing.join()
    succeeding.join()

    assert isinstance(failing.error, towline.DigestMismatchError), failing.error
    assert failing.error.slug == "diff_id_mismatch"
    assert succeeding.error is None, f"the ok pull lost the race: {succeeding.error}"
    _assert_whole(root, env, ok, tmp_path)
    with towline.Runtime(root, env=env) as rt:
        assert [i.id for i in rt.list_images()] == [ok.config_digest.removeprefix("sha256:")]
        assert not rt.store.has_blob(bad_digest), "the failed pull's own layer is cleaned up"
    _assert_no_leases_left(root)


def _pull_shared_base_while(
    tmp_path: Path,
    env: dict[str, str],
    registry: RegistryServer,
    meanwhile: Callable[[towline.Runtime, PushedImage, PushedImage], None],
) -> tuple[_Pull, PushedImage, PushedImage, list[towline.ProgressEvent]]:
    """Pull ``old`` = [base, x], then ``new`` = [base, slow]; run ``meanwhile`` once the
    new pull has found base in the store and before it commits."""
    base, n = _layer("base"), os.urandom(4).hex()
    old = _push(registry, f"race/old-{n}", [base, _layer("old")])
    new = _push(registry, f"race/new-{n}", [base, _layer("new")])
    base_digest, slow_digest = new.layers[0].digest, new.layers[1].digest
    root = tmp_path / "store"
    has_base, released = threading.Event(), threading.Event()
    events: list[towline.ProgressEvent] = []

    def progress(event: towline.ProgressEvent) -> None:
        events.append(event)
        if event.digest == base_digest and event.kind == "skipped":
            has_base.set()
        elif event.digest == slow_digest and event.kind == "start":
            _wait(released, "the concurrent removal is done")

    with towline.Runtime(root, env=env) as rt:
        rt.pull(old.reference, options=towline.PullOptions(tls_verify=False))
        pulling = _Pull(root, env, new.reference, progress, parallel=1).start()
        try:
            _wait(has_base, "the pull found base in the store")
            meanwhile(rt, old, new)
        finally:
            released.set()
            pulling.join()
    return pulling, old, new, events


def test_rmi_keeps_a_layer_that_an_in_flight_pull_uses(
    tmp_path: Path, env: dict[str, str], registry: RegistryServer
) -> None:
    def rmi(rt: towline.Runtime, old: PushedImage, new: PushedImage) -> None:
        rt.remove_image(old.reference)

    pulling, old, new, _ = _pull_shared_base_while(tmp_path, env, registry, rmi)
    assert pulling.error is None, f"the pull lost its base layer to rmi: {pulling.error}"
    _assert_whole(tmp_path / "store", env, new, tmp_path)
    with towline.Runtime(tmp_path / "store", env=env) as rt:
        assert [i.id for i in rt.list_images()] == [new.config_digest.removeprefix("sha256:")]
        assert not rt.store.has_blob(old.layers[1].digest), "what nobody holds is removed"
    _assert_no_leases_left(tmp_path / "store")


def test_a_commit_that_finds_a_layer_gone_fetches_it_again(
    tmp_path: Path, env: dict[str, str], registry: RegistryServer
) -> None:
    # Nothing in towline removes leased files; this stands for whatever still does (a
    # person, another tool): the pull must repair its image instead of failing.
    def remove_base_files(rt: towline.Runtime, old: PushedImage, new: PushedImage) -> None:
        [chain_id] = chain_ids([old.layers[0].diff_id])
        shutil.rmtree(rt.store.layer_path(chain_id))
        rt.store.blob_path(old.layers[0].digest).unlink()

    pulling, _, new, events = _pull_shared_base_while(tmp_path, env, registry, remove_base_files)
    assert pulling.error is None, f"the commit did not retry: {pulling.error}"
    _assert_whole(tmp_path / "store", env, new, tmp_path)
    base_events = [e.kind for e in events if e.digest == new.layers[0].digest]
    assert base_events[0] == "skipped" and "done" in base_events, "base fetched again"
