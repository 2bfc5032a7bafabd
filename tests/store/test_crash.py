"""Concurrency and crash consistency, with real processes and SIGKILL.

A child process pulls and removes images in a loop; the parent kills it with SIGKILL,
either at a chosen step (a test hook that announces itself and sleeps) or after a
random delay, then reopens the store and checks it shows the old or the new state,
never a half one.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from towline.store import Store

from . import check_consistent, pull

TESTS_DIR = Path(__file__).resolve().parents[1]
PYTHON_DIR = TESTS_DIR.parent / "python"

# Runs in the child. argv: root, worker name, count, hook ("" for none).
CHILD = textwrap.dedent(
    """
    import sys, time
    from store import pull
    from towline.errors import StoreError
    from towline.store import Store
    import towline.store.layers as layers_mod
    import towline.store.records as records_mod
    import towline.store.schema as schema_mod

    root, worker, count, hook = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

    def announce(name, real):
        def wrapper(*args, **kwargs):
            result = real(*args, **kwargs)
            print("AT", name, flush=True)
            time.sleep(60)
            return result
        return wrapper

    def before_purge(real):
        def wrapper(trash):
            if trash.dir.exists():
                print("AT committed", flush=True)
                time.sleep(60)
            return real(trash)
        return wrapper

    if hook == "names":        # inside commit_image's transaction, rows written
        records_mod.move_names = announce(hook, records_mod.move_names)
    elif hook == "trashed":    # inside remove_image's transaction, files moved to tmp/
        layers_mod.Trash.move_layer = announce(hook, layers_mod.Trash.move_layer)
    elif hook == "committed":  # remove_image committed, trash not yet deleted
        layers_mod.Trash.purge = before_purge(layers_mod.Trash.purge)

    with Store(root) as store:
        print("OPEN", flush=True)
        for i in range(count):
            kwargs = pull(store, [b"base", f"{worker}-{i}".encode()],
                          [f"example.com/{worker}:{i}", "example.com/shared:latest"],
                          label=f"{worker}-{i}")
            for attempt in range(5):
                try:
                    store.commit_image(**kwargs)
                    break
                except StoreError as exc:
                    # A concurrent removal took a layer we relied on: pull it again.
                    print("RETRY", exc, flush=True)
                    kwargs = pull(store, [b"base", f"{worker}-{i}".encode()],
                                  kwargs["names"], label=f"{worker}-{i}")
            else:
                raise SystemExit("commit kept failing")
            print("COMMITTED", i, flush=True)
            if worker.startswith("greedy"):
                # Remove every image, so shared layers keep losing their last user.
                for image in store.list_images():
                    try:
                        store.remove_image(image.id)
                    except LookupError:
                        pass  # the other worker removed it first
                continue
            if i >= 2 and hook != "names":
                old = store.lookup_name(f"example.com/{worker}:{i - 2}")
                if old is not None:
                    try:
                        store.remove_image(old.id)
                    except LookupError:
                        continue  # the greedy worker removed it first
                    print("REMOVED", i - 2, flush=True)
    """
)


def _spawn(root: Path, worker: str, count: int, hook: str = "") -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PYTHON_DIR), str(TESTS_DIR)])}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), worker, str(count), hook],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for(child: subprocess.Popen[str], marker: str) -> list[str]:
    assert child.stdout is not None
    lines = []
    for line in child.stdout:
        lines.append(line.strip())
        if line.startswith(marker):
            return lines
    child.wait()
    assert child.stderr is not None
    raise AssertionError(f"child exited before {marker!r}: {lines} {child.stderr.read()}")


def _kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL


def _finish(child: subprocess.Popen[str]) -> str:
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    return out


def test_concurrent_commits_from_two_processes(tmp_path: Path) -> None:
    children = [_spawn(tmp_path, worker, 15) for worker in ("a", "b")]
    outputs = [_finish(child) for child in children]
    with Store(tmp_path) as store:
        check_consistent(store, recovered=True)
        names = {n for image in store.list_images() for n in image.names}
        # Each worker removes its images i-2 after committing i, so 13..14 stay.
        assert {f"example.com/{w}:{i}" for w in "ab" for i in (13, 14)} <= names
        assert "example.com/shared:latest" in names, "the shared tag moved, never duplicated"
        assert len(store.list_images()) == 4
        base = store.list_images()[0].layers[0]
        assert all(image.layers[0] == base for image in store.list_images())
    assert all(out.count("COMMITTED") == 15 for out in outputs)


def test_commits_race_with_removals_of_shared_layers(tmp_path: Path) -> None:
    children = [_spawn(tmp_path, "a", 20), _spawn(tmp_path, "greedy", 20)]
    outputs = [_finish(child) for child in children]
    assert outputs[0].count("COMMITTED") == 20
    with Store(tmp_path) as store:
        check_consistent(store, recovered=True)


def test_kill_inside_commit_keeps_the_old_state(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        old = store.commit_image(**pull(store, [b"old"], ["example.com/shared:latest"]))
    child = _spawn(tmp_path, "w", 1, hook="names")
    _wait_for(child, "AT names")
    _kill(child)
    with Store(tmp_path) as store:
        check_consistent(store, recovered=True)
        assert store.list_images() == [old]
        assert store.lookup_name("example.com/shared:latest") == old, "the name did not move"


def test_kill_after_trashing_inside_removal_restores_the_image(tmp_path: Path) -> None:
    child = _spawn(tmp_path, "w", 3, hook="trashed")
    lines = _wait_for(child, "AT trashed")
    assert "COMMITTED 2" in lines
    _kill(child)
    with Store(tmp_path) as store:
        check_consistent(store, recovered=True)
        doomed = store.lookup_name("example.com/w:0")
        assert doomed is not None, "the removal never committed: the image stays whole"
        assert len(store.list_images()) == 3


def test_kill_after_removal_commit_finishes_the_deletion(tmp_path: Path) -> None:
    child = _spawn(tmp_path, "w", 3, hook="committed")
    _wait_for(child, "AT committed")
    _kill(child)
    assert any(p.name.startswith("trash-") for p in (tmp_path / "tmp").iterdir())
    with Store(tmp_path) as store:
        check_consistent(store, recovered=True)
        assert store.lookup_name("example.com/w:0") is None
        assert len(store.list_images()) == 2


@pytest.mark.slow
def test_random_sigkill_during_pull_and_remove_loop(tmp_path: Path) -> None:
    rng = random.Random(1234)
    states = set()
    for round_ in range(12):
        child = _spawn(tmp_path, f"r{round_ % 3}", 100_000)
        _wait_for(child, "OPEN")
        time.sleep(rng.uniform(0.0, 0.25))
        _kill(child)
        with Store(tmp_path) as store:
            check_consistent(store, recovered=True)
            states.add(len(store.list_images()))
    assert len(states) > 1, "the kills landed at different points"
