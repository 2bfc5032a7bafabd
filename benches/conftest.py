"""Benchmark wiring: release builds only, smoke-sized layers when benchmarks are disabled.

``pyproject.toml`` puts ``--benchmark-disable`` in ``addopts``, so a plain ``pytest`` runs
every benchmark once on tiny layers, as a smoke test. Timing takes
``--benchmark-enable`` (e.g. ``pytest benches --benchmark-enable``), and then a debug
build of ``towline._native`` is refused: its numbers would mean nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent.parent / "tests"
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from pipelines import (  # noqa: E402
    DESTINATIONS,
    DestinationName,
    WorkArea,
    destination_root,
    tmpfs_available,
    wait_for_inodes,
)


def benchmarks_enabled(config: pytest.Config) -> bool:
    """pytest-benchmark's own rule: disabled by --benchmark-disable unless --benchmark-enable."""
    disabled = bool(config.getoption("benchmark_disable", default=False)) and not bool(
        config.getoption("benchmark_enable", default=False)
    )
    return not disabled


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuses to time a debug build, or a session without the native extension."""
    if not benchmarks_enabled(session.config):
        return
    try:
        from towline import _native
    except ImportError as exc:
        pytest.exit(
            f"benchmarks need the native extension, which does not import ({exc}); build it "
            "with `maturin develop --release` (or `pip install .`), then run them again",
            returncode=2,
        )
    profile = _native.build_profile()
    if profile != "release":
        pytest.exit(
            f"refusing to time a {profile} build of towline._native ({_native.__file__}); "
            "rebuild with `maturin develop --release`, or run without --benchmark-enable for "
            "a smoke test",
            returncode=2,
        )


@pytest.fixture(scope="session")
def timed(pytestconfig: pytest.Config) -> bool:
    """True when benchmarks are timed; False in the smoke run (tiny layers, one round)."""
    return benchmarks_enabled(pytestconfig)


@pytest.fixture(scope="session")
def rounds(timed: bool) -> int:
    """Rounds per benchmark: several when timed (pytest-benchmark reports the median)."""
    return 5 if timed else 1


def _tell(message: str) -> None:
    sys.stderr.write(f"\n{message}\n")


@pytest.fixture(scope="session")
def work_areas(timed: bool) -> Iterator[dict[DestinationName, WorkArea]]:
    """One :class:`WorkArea` per destination, purged at the end of the session."""
    areas: dict[DestinationName, WorkArea] = {}
    for name in DESTINATIONS:
        if name == "tmpfs" and not tmpfs_available():
            continue
        root = destination_root(name)
        area = WorkArea(root, timed=timed)
        area.purge()
        if timed:
            wait_for_inodes(root, _tell)
        areas[name] = area
    yield areas
    for area in areas.values():
        area.purge()
