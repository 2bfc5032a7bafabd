"""The sinks release the GIL: Python threads keep running, and two sinks use two cores.

These run in the smoke run too (tiny layer, behaviour only); with ``--benchmark-enable``
they use the big layer and the second test also holds towline to its timing promise.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from data import BenchLayer, get_layer
from pipelines import DestinationName, WorkArea, run_two_sinks
from towline import _native

#: While these tests run, the interpreter asks a running thread for the GIL this often, so
#: a sink that held the GIL would show up as a stalled counter, not be hidden by switching.
SWITCH_INTERVAL = 0.0005


@pytest.fixture
def fast_switching() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    yield
    sys.setswitchinterval(before)


@pytest.fixture
def area(work_areas: dict[DestinationName, WorkArea]) -> WorkArea:
    """tmpfs when there is one: these tests are about cores and the GIL, not the disk."""
    return work_areas.get("tmpfs") or work_areas["disk"]


@pytest.fixture
def big(timed: bool) -> BenchLayer:
    layer = get_layer("big", "gzip", smoke=not timed)
    layer.chunks()
    return layer


class Counter(threading.Thread):
    """A pure-Python loop that counts until stopped: it runs only while it holds the GIL."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.count = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.count += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def test_python_thread_keeps_running_during_a_write(
    fast_switching: None, area: WorkArea, big: BenchLayer
) -> None:
    """One inline write() of the whole blob does all the work; a counter keeps counting."""
    blob = b"".join(big.chunks())
    work = area.fresh()
    counter = Counter()
    counter.start()
    try:
        # The counter's speed alone: sleeping releases the GIL.
        start, began = counter.count, time.perf_counter()
        time.sleep(0.2)
        rate = (counter.count - start) / (time.perf_counter() - began)

        sink = _native.LayerSink(
            None, work / "layer", big.digest, big.size, big.diff_id, pipelined=False, durable=False
        )
        before, began = counter.count, time.perf_counter()
        sink.write(blob)
        elapsed = time.perf_counter() - began
        during = counter.count - before
        result = sink.finish()
    finally:
        counter.stop()
    area.retire(work, entries=big.entries)

    assert result["diff_id"] == big.diff_id
    expected = rate * elapsed
    # Had write() held the GIL, the counter would have run only while this thread waited
    # for the GIL back (a switch interval or two), a small fraction of `expected`.
    assert during > 0.3 * expected, (
        f"a Python thread counted {during} during a {elapsed * 1000:.0f} ms write(), "
        f"{during / expected:.0%} of its {rate:.0f}/s alone: the write held the GIL"
    )


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "inline"])
def test_two_sinks_in_two_threads_are_no_slower_than_in_turn(
    area: WorkArea, big: BenchLayer, timed: bool, pipelined: bool
) -> None:
    """Two threads, two sinks: at most the sequential time (+10% noise) when timed."""
    rounds = 5 if timed else 1
    sequential: list[float] = []
    threaded: list[float] = []
    for _ in range(rounds):
        sequential.append(run_two_sinks(big, area, pipelined=pipelined, threaded=False))
        threaded.append(run_two_sinks(big, area, pipelined=pipelined, threaded=True))
    if not timed:
        return  # smoke: both ways ran and verified; tiny layers say nothing about speed
    seq, par = statistics.median(sequential), statistics.median(threaded)
    assert par <= 1.1 * seq, (
        f"two {'pipelined' if pipelined else 'inline'} sinks took {par:.2f} s in two threads"
        f" but {seq:.2f} s one after the other (medians of {rounds})"
    )
