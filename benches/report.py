"""Runs every native-path benchmark once, cleanly, and prints Markdown tables for the README.

    python benches/report.py [--rounds N] [--destinations tmpfs,disk] [--layers big.gzip,...]
                             [--pipelines towline-pipelined,python,...] [--smoke] [--json FILE]

For each destination (tmpfs first, then disk), each layer and each round, every pipeline
runs once, in turn, into an empty directory (so slow drift on a shared machine spreads over
all pipelines alike); the tables give medians over the rounds. Then two sinks run in two
threads against the same two one after the other. Progress goes to stderr, the tables to
stdout. ``--smoke`` runs tiny layers once, to check the script itself.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# Appended: a towline on PYTHONPATH (another build, to compare) wins over the checkout's.
sys.path.append(str(Path(__file__).resolve().parents[1] / "python"))

from data import BenchLayer, all_layers, cache_dir
from pipelines import (
    DESTINATIONS,
    PIPELINES,
    DestinationName,
    Pipeline,
    WorkArea,
    cli_missing_tool,
    destination_root,
    run_two_sinks,
    tmpfs_available,
    wait_for_inodes,
)
from towline import _native

#: The issue's targets: (layer, pipeline measured, minimum speed-up over the Python pipeline).
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("big.gzip", "towline-pipelined", 2.5),
    ("small-files.gzip", "towline-pipelined", 3.0),
    ("big.zstd", "towline-pipelined", 1.5),
    ("small-files.zstd", "towline-pipelined", 1.5),
)


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


@dataclass
class Results:
    """Seconds per round, keyed by (destination, layer name, pipeline name)."""

    times: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    pairs: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    #: Rounds run again because other processes were busy, and rounds kept anyway.
    repeated: int = 0
    disturbed: int = 0

    def median(self, destination: str, layer: str, pipeline: str) -> float | None:
        runs = self.times.get((destination, layer, pipeline))
        return statistics.median(runs) if runs else None


# === measuring


# Other work on this 2-core machine (another benchmark, a test run, a build) skews a round
# badly. So each round also measures the user-mode CPU time the rest of the machine used
# meanwhile (/proc/stat user + nice + steal, minus this process and its children), and a
# round during which others kept more than QUIET_SHARE of one core busy is run again.
# Kernel time is left out: the kernel threads that write back our own files use up to ~30%
# of a core on disk runs, and they are part of what is measured.
QUIET_SHARE = 0.2
MAX_ATTEMPTS = 4
_TICK = os.sysconf("SC_CLK_TCK")


def _machine_user() -> float:
    """CPU-seconds all CPUs spent in user mode (or stolen by the hypervisor) since boot."""
    with open("/proc/stat") as f:
        user, nice, _system, _idle, _iowait, _irq, _softirq, steal = (
            int(x) for x in f.readline().split()[1:9]
        )
    return (user + nice + steal) / _TICK


def _own_user() -> float:
    t = os.times()
    return t.user + t.children_user


def quiet_round(results: Results, label: str, run: Callable[[], float]) -> float:
    """Runs ``run`` (which returns its own timing) until a round is not disturbed."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        busy, own = _machine_user(), _own_user()
        elapsed = run()
        foreign = (_machine_user() - busy) - (_own_user() - own)
        # A few clock ticks of slack: /proc/stat counts in ticks (usually 10 ms).
        allowed = max(QUIET_SHARE * elapsed, 5 / _TICK)
        if foreign <= allowed or attempt == MAX_ATTEMPTS:
            if foreign > allowed:
                results.disturbed += 1
            return elapsed
        results.repeated += 1
        log(f"{label}: others used {foreign:.2f} CPU-s during {elapsed:.2f} s; running it again")
    raise AssertionError("unreachable")


def level_page_cache(layer: BenchLayer) -> None:
    """Same memory for every round: sync, drop the page cache, re-read the layer's blob.

    With the page cache full, each page a pipeline writes must first be reclaimed
    (buffered writes were ~10x slower here), so the rounds that happened to follow big
    ones were slower. Needs root; otherwise rounds see whatever cache state there is.
    """
    if os.geteuid() != 0:
        return
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("1\n")
    layer.path.read_bytes()  # the CLI pipeline reads it from the page cache


def one_round(area: WorkArea, pipeline: Pipeline, layer: BenchLayer) -> float:
    """Seconds for ``pipeline`` on ``layer``, in a fresh directory (disposed of, untimed)."""
    work = area.fresh()
    level_page_cache(layer)
    began = time.perf_counter()
    pipeline.run(layer, work)
    elapsed = time.perf_counter() - began
    area.retire(work, entries=layer.entries)
    return elapsed


def measure_layers(
    results: Results,
    destination: DestinationName,
    area: WorkArea,
    layers: list[BenchLayer],
    pipelines: list[Pipeline],
    rounds: int,
) -> None:
    for layer in layers:
        layer.chunks()
        runnable = [
            p for p in pipelines if p.family != "cli" or cli_missing_tool(layer.compression) is None
        ]
        for n in range(rounds):
            for pipeline in runnable:
                label = f"{destination:5} {layer.name:17} round {n + 1}/{rounds} {pipeline.name:26}"

                elapsed = quiet_round(
                    results, label, functools.partial(one_round, area, pipeline, layer)
                )
                key = (destination, layer.name, pipeline.name)
                results.times.setdefault(key, []).append(elapsed)
                log(f"{label} {elapsed:7.3f} s")


def measure_pairs(
    results: Results, destination: str, area: WorkArea, layer: BenchLayer, rounds: int
) -> None:
    for n in range(rounds):
        for pipelined in (True, False):
            mode = "pipelined" if pipelined else "inline"
            for threaded in (False, True):
                key = (destination, mode, "2 threads" if threaded else "sequential")
                label = f"{destination:5} 2 sinks {mode:9} {key[2]:10} round {n + 1}"

                once = functools.partial(
                    run_two_sinks, layer, area, pipelined=pipelined, threaded=threaded
                )
                elapsed = quiet_round(results, label, once)
                results.pairs.setdefault(key, []).append(elapsed)
                log(f"{label}: {elapsed:.3f} s")


# === the tables


def ratio(reference: float | None, value: float | None) -> str:
    if reference is None or value is None:
        return "-"
    return f"{reference / value:.2f}x"


def layer_table(results: Results, destination: str, layers: list[BenchLayer]) -> list[str]:
    lines = [
        "| layer | pipeline | median s | MB/s compressed in | MB/s uncompressed out"
        " | vs Python | vs CLI |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for layer in layers:
        python = results.median(destination, layer.name, "python")
        cli = results.median(destination, layer.name, "cli")
        for pipeline in PIPELINES:
            t = results.median(destination, layer.name, pipeline.name)
            if t is None:
                continue
            lines.append(
                f"| {layer.name} | {pipeline.name} | {t:.3f} | {layer.size / t / 1e6:.0f}"
                f" | {layer.uncompressed_size / t / 1e6:.0f} | {ratio(python, t)}"
                f" | {ratio(cli, t)} |"
            )
    return lines


def targets_table(results: Results, destinations: list[str]) -> list[str]:
    lines = [
        "| target | " + " | ".join(destinations) + " | met |",
        "|---|" + "---:|" * len(destinations) + "---|",
    ]
    for layer, pipeline, minimum in TARGETS:
        measured: list[float] = []
        cells: list[str] = []
        for d in destinations:
            python = results.median(d, layer, "python")
            t = results.median(d, layer, pipeline)
            if python is None or t is None:
                cells.append("-")
                continue
            measured.append(python / t)
            cells.append(f"{python / t:.2f}x")
        met = "-" if not measured else ("yes" if min(measured) >= minimum else "**no**")
        lines.append(
            f"| {pipeline} on {layer} >= {minimum}x Python | " + " | ".join(cells) + f" | {met} |"
        )
    return lines


def pairs_table(results: Results, destinations: list[str], layer: BenchLayer) -> list[str]:
    lines = [
        f"| destination | sink mode | 2 x {layer.name} in turn, s | in 2 threads, s | speed-up |",
        "|---|---|---:|---:|---:|",
    ]
    for d in destinations:
        for mode in ("pipelined", "inline"):
            seq = results.pairs.get((d, mode, "sequential"))
            par = results.pairs.get((d, mode, "2 threads"))
            if not seq or not par:
                continue
            s, p = statistics.median(seq), statistics.median(par)
            lines.append(f"| {d} | {mode} | {s:.3f} | {p:.3f} | {s / p:.2f}x |")
    return lines


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass  # keep platform's answer
    return (
        f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}, {_native.build_profile()} build of"
        f" `{Path(_native.__file__).resolve()}` ({build_id()})"
    )


def build_id() -> str:
    """When the extension was built and the start of its sha256: which build was measured."""
    path = Path(_native.__file__)
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(path.stat().st_mtime))
    return f"built {built}, sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"


def describe_layers(layers: list[BenchLayer]) -> list[str]:
    return [
        f"- `{layer.name}`: {layer.entries} entries, {layer.uncompressed_size / 1e6:.0f} MB tar,"
        f" {layer.size / 1e6:.0f} MB {layer.compression}"
        for layer in layers
    ]


# === main


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per pipeline (median)")
    parser.add_argument("--destinations", default=",".join(reversed(DESTINATIONS)))
    parser.add_argument("--layers", default="", help="e.g. big.gzip,small-files.zstd")
    parser.add_argument("--pipelines", default="", help="e.g. towline-pipelined,python,cli")
    parser.add_argument("--pair-rounds", type=int, default=3, help="rounds of the 2-sink test")
    parser.add_argument("--smoke", action="store_true", help="tiny layers, one round")
    parser.add_argument("--json", type=Path, help="also write every timing to this file")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not args.smoke and _native.build_profile() != "release":
        log(
            f"refusing to time a {_native.build_profile()} build of towline._native; "
            "rebuild with `maturin develop --release` (or pass --smoke)"
        )
        return 2
    rounds = 1 if args.smoke else args.rounds
    pair_rounds = 1 if args.smoke else args.pair_rounds
    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"warning: load average {load:.2f}: other work on this machine will skew the numbers")

    layers = all_layers(smoke=args.smoke)
    if args.layers:
        wanted = args.layers.split(",")
        layers = [layer for layer in layers if layer.name in wanted]
    pipelines = list(PIPELINES)
    if args.pipelines:
        pipelines = [p for p in pipelines if p.name in args.pipelines.split(",")]
    destinations: list[DestinationName] = [
        d
        for d in DESTINATIONS
        if d in args.destinations.split(",") and (d != "tmpfs" or tmpfs_available())
    ]
    destinations.sort(key=args.destinations.split(",").index)
    big = next((layer for layer in layers if layer.name == "big.gzip"), None)

    results = Results()
    started = time.time()
    for destination in destinations:
        area = WorkArea(destination_root(destination), timed=not args.smoke)
        area.purge()
        if not args.smoke:
            wait_for_inodes(area.root, log)
        try:
            measure_layers(results, destination, area, layers, pipelines, rounds)
            if big is not None:
                measure_pairs(results, destination, area, big, pair_rounds)
        finally:
            log(f"removing {area.root}")
            area.purge()

    out = [
        f"Measured {time.strftime('%Y-%m-%d', time.gmtime(started))} on {machine_line()}; "
        f"load average {load:.2f} at start. Median of {rounds} rounds; MB = 10^6 bytes; "
        "every pipeline hashes the compressed blob, decompresses it, hashes the tar and unpacks"
        " it into an empty directory, fed 1 MiB chunks from memory (CLI: the blob file, in the"
        " page cache). Before each round (untimed, as root): sync, drop the page cache,"
        " re-read the blob. `vs Python` and `vs CLI`: that pipeline's median time over this"
        " row's."
        f" {results.repeated} rounds were run again because other processes kept more than"
        f" {QUIET_SHARE:.0%} of a core busy meanwhile; {results.disturbed} stayed disturbed"
        f" after {MAX_ATTEMPTS} attempts.",
        "",
        *describe_layers(layers),
        "",
    ]
    for destination in destinations:
        where = destination_root(destination)
        out += [f"**{destination}** (`{where}`)", "", *layer_table(results, destination, layers)]
        out.append("")
    out += ["**Targets** (towline pipelined, not durable, vs Python)", ""]
    out += [*targets_table(results, list(destinations)), ""]
    if big is not None and results.pairs:
        out += ["**Two sinks in two threads vs one after the other** (durable=False)", ""]
        out += [*pairs_table(results, list(destinations), big), ""]
    sys.stdout.write("\n".join(out))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine_line(),
                    "cache": str(cache_dir()),
                    "rounds": rounds,
                    "times": {"|".join(k): v for k, v in results.times.items()},
                    "pairs": {"|".join(k): v for k, v in results.pairs.items()},
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
