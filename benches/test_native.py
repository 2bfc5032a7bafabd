"""Every pipeline on every layer, on disk and on tmpfs, grouped by layer and destination.

Timed: ``pytest benches/test_native.py --benchmark-enable`` (add ``-k "big and gzip"`` to
narrow it down; ``TOWLINE_BENCH_ROUNDS`` overrides the number of rounds). Each round
starts from an empty directory that setup creates, untimed, so what is measured is the
whole job: hash, decompress, hash, untar, verify.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from data import COMPRESSIONS, LAYER_KINDS, get_layer
from pipelines import (
    DESTINATIONS,
    PIPELINES,
    UNPACK_NAME,
    DestinationName,
    WorkArea,
    cli_missing_tool,
    pipeline_named,
)
from support.tools import skip_or_fail

CASES = list(itertools.product(DESTINATIONS, LAYER_KINDS, COMPRESSIONS, PIPELINES))


@pytest.mark.parametrize(
    ("destination", "kind", "compression", "pipeline_name"),
    [(d, k, c, p.name) for d, k, c, p in CASES],
    ids=[f"{d}-{k}.{c}-{p.name}" for d, k, c, p in CASES],
)
def test_pipeline(
    benchmark: BenchmarkFixture,
    work_areas: dict[DestinationName, WorkArea],
    timed: bool,
    rounds: int,
    destination: DestinationName,
    kind: str,
    compression: str,
    pipeline_name: str,
) -> None:
    """One pipeline, one layer, one destination: ``rounds`` rounds from an empty directory."""
    area = work_areas.get(destination)
    if area is None:
        skip_or_fail(f"no {destination} destination on this machine (/dev/shm is not a tmpfs)")
    pipeline = pipeline_named(pipeline_name)
    layer = get_layer(kind, compression, smoke=not timed)  # type: ignore[arg-type]
    if pipeline.family == "cli":
        missing = cli_missing_tool(layer.compression)
        if missing is not None:
            skip_or_fail(f"the CLI pipeline needs {missing}, which is not on PATH")
    layer.chunks()  # read (and page-cache) the blob before anything is timed

    benchmark.group = f"{layer.name} -> {destination}"
    benchmark.extra_info.update(
        compressed_mb=round(layer.size / 1e6, 1),
        uncompressed_mb=round(layer.uncompressed_size / 1e6, 1),
        entries=layer.entries,
    )
    done: list[Path] = []

    def setup() -> tuple[tuple[object, ...], dict[str, object]]:
        retire_all()
        work = area.fresh()
        done.append(work)
        return (layer, work), {}

    def retire_all() -> None:
        while done:
            work = done.pop()
            # The pipeline checked both digests; this checks it really unpacked.
            assert (work / UNPACK_NAME).is_dir(), f"{pipeline_name} left no {UNPACK_NAME}/"
            area.retire(work, entries=layer.entries)

    n = int(os.environ.get("TOWLINE_BENCH_ROUNDS", rounds)) if timed else 1
    benchmark.pedantic(pipeline.run, setup=setup, rounds=n)  # type: ignore[no-untyped-call]
    retire_all()
