"""End-to-end pull benchmark: towline against podman, skopeo and ``tar -x``, in one run.

    python benches/e2e.py [--rounds N] [--images a,b] [--mode pull|copy|all] [--quick]
                          [--json FILE]

``--mode pull`` (the default) times ``towline pull`` against ``podman pull``, ``skopeo copy
... oci:`` and ``tar -x``; ``--mode copy`` times the blobs-only copy, ``towline copy
docker://REF oci:DIR`` against ``skopeo copy docker://REF oci:DIR``; ``--mode all`` both, in
the same rounds (``--tools`` names the tools one by one instead).
The images (see ``e2e_images.py``) are pushed to a fresh ``docker-registry`` on 127.0.0.1.
Each tool pulls each image once untimed (warm-up), then ``--rounds`` times, tools taking
turns within a round (the order rotates every round), every pull into an empty store on
disk; stores are deleted untimed (those of many-file images only at the end: ``_measure``
says why). The Markdown table on stdout gives the median seconds and the paired ratio to
towline (above 1: towline is faster); progress goes to stderr. Needs root: podman runs
with its own root in a private mount namespace (peers.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from e2e_images import (
    CACHE_ENV,
    BenchImage,
    benchmark_specs,
    cache_root,
    ensure_image,
    marker_content,
    marker_path,
    push_bench_image,
)
from e2e_report import Cell, Report, ToolRow, render_markdown, report_json
from peers import (
    BenchError,
    Podman,
    Sandbox,
    Skopeo,
    TarExtract,
    Target,
    Tool,
    TowlineCli,
    TowlineCopy,
    choose_overlay,
    hidden_paths,
)
from support.registry import RegistryServer

DEFAULT_IMAGES = ("small-files", "large-gzip", "large-zstd")
PULL_TOOLS = ("towline", "podman-overlay", "podman-vfs", "skopeo", "tar")
#: Blobs only: the same download-verify-write of every blob into an OCI layout.
COPY_TOOLS = ("towline-copy", "skopeo")
TOOL_KEYS = ("towline", "towline-copy", "podman-overlay", "podman-vfs", "skopeo", "tar")
MODES = {"pull": PULL_TOOLS, "copy": COPY_TOOLS, "all": TOOL_KEYS}
Log = Callable[[str], None]


# === running


def _filesystem_type(path: Path) -> str:
    done = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def _towline_executable(given: Path | None = None) -> str | None:
    # --towline, else the entry point beside this interpreter, not a pyenv shim, which
    # would add its own startup time to every towline run.
    if given is not None:
        return str(given)
    beside = Path(sys.executable).parent / "towline"
    return str(beside) if beside.is_file() else shutil.which("towline")


def _target(image: BenchImage, reference: str) -> Target:
    return Target(
        name=image.name,
        reference=reference,
        manifest_digest=image.manifest_digest,
        config_digest=image.config_digest,
        layers=tuple((layer.digest, layer.size) for layer in image.layers),
        layer_files=tuple((image.compression, image.blob_path(x.digest)) for x in image.layers),
        entries=image.entries,
        marker=marker_path(image.name),
        marker_content=marker_content(image.name),
    )


def _tools(
    selected: Sequence[str],
    sandbox: Sandbox,
    work: Path,
    notes: list[str],
    towline: Path | None = None,
) -> list[Tool]:
    tools: list[Tool] = []
    for key in selected:
        if key == "towline":
            tools.append(TowlineCli(_towline_executable(towline)))
        elif key == "towline-copy":
            tools.append(TowlineCopy(_towline_executable(towline)))
        elif key == "podman-vfs":
            tools.append(Podman("vfs"))
        elif key == "podman-overlay":
            plain = Podman("overlay")
            if plain.unavailable() is not None:
                tools.append(plain)
                continue
            chosen, note = choose_overlay(sandbox, work / "probe")
            notes.append(note)
            tools.append(chosen or plain)
        elif key == "skopeo":
            tools.append(Skopeo())
        elif key == "tar":
            tools.append(TarExtract())
    return tools


#: Stores of images with more tar entries than this are kept until the end (see _measure).
MANY_ENTRIES = 1000


def _clear(stores: list[tuple[Tool, Path]]) -> None:
    for tool, store in stores:
        tool.cleanup(store)
        shutil.rmtree(store, ignore_errors=True)
    stores.clear()
    os.sync()


def _level_page_cache(registry_storage: Path | None) -> None:
    """Give every run the same memory: drop the page cache, then re-read the registry's blobs.

    With the page cache full (earlier runs, the image cache), every page a tool writes
    must first be reclaimed, which made buffered writes ~10x slower here and the order of
    runs decide the figures. Needs root; without it, runs see whatever cache state there is.
    """
    if os.geteuid() != 0 or registry_storage is None:
        return
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("1\n")
    for blob in registry_storage.rglob("data"):
        with open(blob, "rb") as f:
            while f.read(1 << 20):
                pass


def _measure(
    sandbox: Sandbox,
    tools: list[Tool],
    rows: list[ToolRow],
    targets: list[Target],
    rounds: int,
    log: Log,
    registry_storage: Path | None = None,
) -> None:
    runs = sandbox.work / "runs"
    runs.mkdir()
    active = [(t, r) for t, r in zip(tools, rows, strict=True) if r.unavailable is None]
    # Stores of many-file images are deleted only at the end: on ext4 without a journal (as
    # in this sandbox) the inode allocator skips, one lookup each, inodes freed less than 60 s
    # ago (360 s while their inode table block is dirty; recently_deleted() in
    # fs/ext4/ialloc.c), so every run after deleting 20k-file stores would pay for it. Stores
    # of few-file images go at once: freeing blocks costs later runs nothing.
    kept: list[tuple[Tool, Path]] = []

    def attempt(tool: Tool, row: ToolRow, target: Target, timed: bool, tag: str) -> None:
        cell = row.cells[target.name]
        if cell.error:
            return
        store = Path(tempfile.mkdtemp(prefix=f"{tool.key}-", dir=runs))
        store.rmdir()  # the tool gets an empty directory it creates itself
        done = [(tool, store)]
        _level_page_cache(registry_storage)
        try:
            seconds = tool.pull(target, store, sandbox)
        except BenchError as exc:
            cell.error = str(exc)
            log(f"{tag} {target.name:12} {tool.key:15} FAILED: {exc}")
            return
        finally:
            # Either way, sync: this run's writeback must not land in the next run's time.
            if target.entries > MANY_ENTRIES:
                kept.extend(done)
                os.sync()
            else:
                _clear(done)
        cell.verified += 1
        if timed:
            cell.samples.append(seconds)
        log(f"{tag} {target.name:12} {tool.key:15} {seconds:8.3f} s")

    passes = [("[warm-up]", False)]
    passes += [(f"[round {n}/{rounds}]", True) for n in range(1, rounds + 1)]
    try:
        for n, (tag, timed) in enumerate(passes):
            for target in targets:
                # Tools take turns, and who goes first rotates, so no tool always follows
                # the same neighbour.
                shift = n % len(active) if active else 0
                for tool, row in active[shift:] + active[:shift]:
                    attempt(tool, row, target, timed, tag)
    finally:
        _clear(kept)


def _check_space(parent: Path, images: Sequence[BenchImage], rounds: int) -> None:
    # Every many-file store stays until the end; podman vfs copies each layer's parent (up
    # to 3x), towline keeps blobs and layers, skopeo blobs, tar the tree.
    kept = sum(6 * i.uncompressed_size for i in images if i.entries > MANY_ENTRIES)
    need = (rounds + 1) * kept
    need += max((6 * i.uncompressed_size + 3 * i.compressed_size for i in images), default=0)
    free = shutil.disk_usage(parent).free
    if free < need + (2 << 30):
        raise ValueError(
            f"{parent} has {free / 1e9:.1f} GB free; the run needs about {need / 1e9:.1f} GB "
            "plus 2 GB spare; free space, use fewer --rounds or another --work-dir"
        )


def _environment(work: Path) -> dict[str, str]:
    def version(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except OSError:
            return "not installed"
        return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else ""

    return {
        "destination": f"{work} ({_filesystem_type(work)})",
        "cpus": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "podman": version(["podman", "--version"]),
        "skopeo": version(["skopeo", "--version"]),
        "registry": version(["docker-registry", "--version"]),
    }


def _work_parent(cache: Path, work_parent: Path | None, allow_tmpfs: bool) -> Path:
    parent = work_parent or cache / "runs"
    for path in (cache, parent):
        covered = [h for _, h in hidden_paths() if path.resolve().is_relative_to(h)]
        if covered:
            raise ValueError(
                f"{path} is under {covered[0]}, which the tools see as an empty tmpfs; "
                f"set {CACHE_ENV} or --work-dir elsewhere (e.g. under /tmp)"
            )
    parent.mkdir(parents=True, exist_ok=True)
    if _filesystem_type(parent) == "tmpfs" and not allow_tmpfs:
        raise ValueError(f"{parent} is on tmpfs; pass --work-dir on a disk (or --allow-tmpfs)")
    return parent


def run_benchmark(
    image_names: Sequence[str],
    *,
    rounds: int,
    quick: bool = False,
    tool_keys: Sequence[str] = PULL_TOOLS,
    work_parent: Path | None = None,
    allow_tmpfs: bool = False,
    towline: Path | None = None,
    command: str = "",
    log: Log = lambda line: None,
) -> Report:
    """Build (or load) the images, push them, run every tool; return what was measured."""
    specs = benchmark_specs(quick=quick)
    unknown = [name for name in image_names if name not in specs]
    if unknown:
        raise ValueError(f"unknown image(s) {', '.join(unknown)}; choose among {', '.join(specs)}")
    unknown = [key for key in tool_keys if key not in TOOL_KEYS]
    if unknown:
        raise ValueError(
            f"unknown tool(s) {', '.join(unknown)}; choose among {', '.join(TOOL_KEYS)}"
        )
    if shutil.which("docker-registry") is None:
        raise ValueError("docker-registry is not installed (apt-get install docker-registry)")
    cache = cache_root()
    parent = _work_parent(cache, work_parent, allow_tmpfs)
    images = []
    for name in image_names:
        log(f"image {name}: building or loading from {cache}")
        images.append(ensure_image(specs[name], cache))
    _check_space(parent, images, rounds)
    work = Path(tempfile.mkdtemp(prefix="e2e-", dir=parent))
    notes: list[str] = []
    try:
        registry = RegistryServer.open_access(work / "registry")
        with registry:
            targets = []
            for image in images:
                log(f"image {image.name}: pushing to {registry.host}")
                targets.append(_target(image, push_bench_image(registry, image)))
            sandbox = Sandbox(work / "sandbox", registry.host)
            tools = _tools(tool_keys, sandbox, work, notes, towline)
            rows = [ToolRow(t.key, t.label, t.unavailable()) for t in tools]
            for row in rows:
                row.cells = {image.name: Cell() for image in images}
            if os.geteuid() == 0:
                notes.append(
                    "before every run (untimed): sync, drop the page cache, re-read the "
                    "registry's blobs, so every tool starts with free memory and a warm registry"
                )
            _measure(sandbox, tools, rows, targets, rounds, log, registry.storage_dir)
        return Report(command, rounds, images, rows, notes, _environment(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5)")
    parser.add_argument("--images", default=",".join(DEFAULT_IMAGES), help="comma-separated")
    parser.add_argument("--quick", action="store_true", help="scaled-down images, 1 round")
    parser.add_argument(
        "--mode",
        choices=sorted(MODES),
        default="pull",
        help="pull: towline pull against podman, skopeo, tar -x (default); copy: towline "
        "copy docker://... oci:... against skopeo copy to oci: (blobs only); all: both",
    )
    parser.add_argument(
        "--tools",
        help=f"comma-separated, instead of --mode's (any of {', '.join(TOOL_KEYS)})",
    )
    parser.add_argument("--json", type=Path, help="also write every sample to this file")
    parser.add_argument("--work-dir", type=Path, help="parent of the stores (default: cache)")
    parser.add_argument("--allow-tmpfs", action="store_true", help="accept stores on tmpfs")
    parser.add_argument(
        "--towline",
        type=Path,
        help="towline executable to time (default: the one beside this python); e.g. "
        "from a venv with a plain `pip install .`, as users install it",
    )
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.tools is None:
        args.tools = ",".join(MODES[args.mode])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the Markdown table; 1 when a tool failed."""
    args = _parse(argv)
    shown = sys.argv[1:] if argv is None else list(argv)
    try:
        report = run_benchmark(
            [name for name in args.images.split(",") if name],
            rounds=args.rounds,
            quick=args.quick,
            tool_keys=[key for key in args.tools.split(",") if key],
            work_parent=args.work_dir,
            allow_tmpfs=args.allow_tmpfs,
            towline=args.towline,
            command=shlex.join(["python", "benches/e2e.py", *shown]),
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except ValueError as exc:  # a bad option or an unsuitable machine, said in one line
        print(f"e2e.py: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render_markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report_json(report), indent=2) + "\n")
    failed = any(cell.error for row in report.rows for cell in row.cells.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
