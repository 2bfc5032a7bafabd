"""The pipelines the benchmarks compare, each doing the same job on one layer blob.

The job: hash the compressed bytes, decompress, hash the uncompressed stream (the diff_id),
untar into a fresh directory, and check both digests. Every pipeline is fed the same blob:
towline and Python get the 1 MiB chunks held in memory (:meth:`BenchLayer.chunks`), the
command-line pipeline reads the blob file, which those chunks just pulled into the page
cache. None of them keeps a copy of the blob, except ``towline-pull``, which also writes
the blob file durably, as a real pull does.

* ``towline-*``: one :class:`towline._native.LayerSink` per layer, pipelined (compressed
  hashing on the caller's thread, the rest on the sink's worker) or inline (one core at a
  time), with ``durable`` off or on (syncfs of the tree before the rename);
* ``python``: what one would write with the standard library: :mod:`hashlib`,
  :func:`zlib.decompressobj` (or :mod:`zstandard`) and :mod:`tarfile` streaming
  ``extractall(filter="tar")``, all on one thread;
* ``cli``: ``tee | gzip -dc | tee | tar -x`` (or ``zstd -dc``), with ``sha256sum`` on both
  tees, as a shell script would do it.

Destinations: ``disk`` (a directory under the bench cache) and ``tmpfs`` (``/dev/shm``),
which takes the filesystem mostly out of the measurement.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import zstandard

from data import BenchLayer, Compression, cache_dir
from towline import _native
from towline.errors import DigestMismatchError

Family = Literal["towline", "python", "cli"]
DestinationName = Literal["disk", "tmpfs"]
DESTINATIONS: tuple[DestinationName, ...] = ("disk", "tmpfs")

#: Where a pipeline unpacks, inside the work directory it is given.
UNPACK_NAME = "layer"


@dataclass(frozen=True)
class Pipeline:
    """A named way of doing the whole job; ``run`` raises if a digest comes out wrong."""

    name: str
    family: Family
    run: Callable[[BenchLayer, Path], None]
    description: str


# === towline


def towline(*, pipelined: bool, durable: bool, store_blob: bool = False) -> Pipeline:
    """A LayerSink fed the 1 MiB chunks; ``store_blob`` also writes the blob file."""

    def run(layer: BenchLayer, workdir: Path) -> None:
        sink = _native.LayerSink(
            workdir / "blob" if store_blob else None,
            workdir / UNPACK_NAME,
            layer.digest,
            layer.size,
            layer.diff_id,
            pipelined=pipelined,
            durable=durable,
        )
        with sink:
            for chunk in layer.chunks():
                sink.write(chunk)
            sink.finish()

    mode = "pipelined" if pipelined else "inline"
    name = "towline-pull" if store_blob else f"towline-{mode}" + ("-durable" if durable else "")
    return Pipeline(
        name,
        "towline",
        run,
        f"LayerSink, {mode}, durable={durable}" + (", blob file kept" if store_blob else ""),
    )


# === the standard library, one thread


class _Decompressor(Protocol):
    def decompress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


def _decompressor(compression: Compression) -> _Decompressor:
    if compression == "gzip":
        return zlib.decompressobj(wbits=31)  # 31: gzip framing
    return zstandard.ZstdDecompressor().decompressobj()


class _DecodedStream:
    """A read-only file over the decompressed chunks, hashing both sides as it goes.

    ``tarfile`` in stream mode (``"r|"``) only calls ``read(size)``.
    """

    def __init__(self, chunks: list[bytes], compression: Compression) -> None:
        self.compressed = hashlib.sha256()
        self.uncompressed = hashlib.sha256()
        self.uncompressed_size = 0
        self._source: Iterator[bytes] = iter(chunks)
        self._decompressor = _decompressor(compression)
        self._buffer = b""
        self._pos = 0
        self._eof = False

    def _refill(self) -> bool:
        if self._eof:
            return False
        chunk = next(self._source, None)
        if chunk is None:
            out = self._decompressor.flush()
            self._eof = True
        else:
            self.compressed.update(chunk)
            out = self._decompressor.decompress(chunk)
        self.uncompressed.update(out)
        self.uncompressed_size += len(out)
        self._buffer = self._buffer[self._pos :] + out
        self._pos = 0
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) - self._pos < size:
            if not self._refill():
                break
        end = len(self._buffer) if size < 0 else self._pos + size
        out = self._buffer[self._pos : end]
        self._pos += len(out)
        return out

    def drain(self) -> None:
        """Reads what tarfile left (end-of-archive padding) so the diff_id covers it all."""
        while self._refill():
            self._pos = len(self._buffer)


def _python_run(layer: BenchLayer, workdir: Path) -> None:
    dest = workdir / UNPACK_NAME
    dest.mkdir()
    stream = _DecodedStream(layer.chunks(), layer.compression)
    with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
        tar.extractall(dest, filter="tar")
    stream.drain()
    _check(layer, "python", "digest", "sha256:" + stream.compressed.hexdigest())
    _check(layer, "python", "diff_id", "sha256:" + stream.uncompressed.hexdigest())


def python_pipeline() -> Pipeline:
    """hashlib + zlib/zstandard + tarfile streaming extractall, on the caller's thread."""
    return Pipeline(
        "python",
        "python",
        _python_run,
        'hashlib + zlib.decompressobj / zstandard + tarfile "r|" extractall(filter="tar")',
    )


# === the command-line tools

_CLI_SCRIPT = """\
set -euo pipefail
cd "$1"
mkfifo compressed.fifo uncompressed.fifo
sha256sum < compressed.fifo > compressed.sha256 & c=$!
sha256sum < uncompressed.fifo > uncompressed.sha256 & u=$!
tee compressed.fifo < "$2" | $3 -dc | tee uncompressed.fifo | tar -x -C layer
wait "$c" "$u"
"""
_CLI_TOOLS = ("bash", "tee", "mkfifo", "sha256sum", "tar")
_CLI_DECOMPRESSOR: dict[Compression, str] = {"gzip": "gzip", "zstd": "zstd"}


def cli_missing_tool(compression: Compression) -> str | None:
    """The first tool the CLI pipeline needs that is not on PATH, or None."""
    for tool in (*_CLI_TOOLS, _CLI_DECOMPRESSOR[compression]):
        if shutil.which(tool) is None:
            return tool
    return None


def _cli_run(layer: BenchLayer, workdir: Path) -> None:
    (workdir / UNPACK_NAME).mkdir()
    decompressor = _CLI_DECOMPRESSOR[layer.compression]
    proc = subprocess.run(
        ["bash", "-c", _CLI_SCRIPT, "cli", str(workdir), str(layer.path), decompressor],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(
            f"the CLI pipeline ({decompressor}) failed on {layer.path} "
            f"with exit code {proc.returncode}: {last}"
        )
    for what, name in (("digest", "compressed"), ("diff_id", "uncompressed")):
        text = (workdir / f"{name}.sha256").read_text()
        _check(layer, "cli", what, "sha256:" + text.split()[0])


def cli_pipeline() -> Pipeline:
    """``tee >(sha256sum) | gzip -dc | tee >(sha256sum) | tar -x``, with fifos to wait on."""
    return Pipeline(
        "cli", "cli", _cli_run, "bash: tee | gzip -dc or zstd -dc | tee | tar -x, sha256sum on both"
    )


# === shared


def _check(layer: BenchLayer, pipeline: str, what: str, actual: str) -> None:
    expected = layer.digest if what == "digest" else layer.diff_id
    if actual != expected:
        raise DigestMismatchError(
            f"{pipeline} computed {what} {actual} for {layer.path}, expected {expected}; "
            f"delete {cache_dir()} to regenerate the benchmark layers",
            expected=expected,
            actual=actual,
        )


#: The pipelines every layer is run through, in table order.
PIPELINES: tuple[Pipeline, ...] = (
    towline(pipelined=True, durable=False),
    towline(pipelined=False, durable=False),
    towline(pipelined=True, durable=True),
    towline(pipelined=False, durable=True),
    towline(pipelined=True, durable=True, store_blob=True),
    python_pipeline(),
    cli_pipeline(),
)


def pipeline_named(name: str) -> Pipeline:
    """The pipeline called ``name`` (see :data:`PIPELINES`)."""
    for pipeline in PIPELINES:
        if pipeline.name == name:
            return pipeline
    raise KeyError(f"no pipeline {name!r}; known: {', '.join(p.name for p in PIPELINES)}")


def destination_root(name: DestinationName) -> Path:
    """Where this process unpacks: under the bench cache on disk, or under ``/dev/shm``.

    One directory per process (``run-<pid>``), so that benchmark and smoke runs going on at
    the same time (say, a plain ``pytest`` in another checkout) never touch each other's.
    """
    if name == "disk":
        base = cache_dir() / "dest"
    else:
        base = Path("/dev/shm") / f"towline-bench-{os.getuid()}"
    return base / f"run-{os.getpid()}"


def tmpfs_available() -> bool:
    """Whether ``/dev/shm`` is a writable tmpfs (it is not in some containers)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        return False
    with open("/proc/mounts") as mounts:
        fields = [line.split() for line in mounts]
    return any(f[1] == "/dev/shm" and f[2] == "tmpfs" for f in fields if len(f) > 2)


# === work directories
#
# ext4 without a journal (this machine's root filesystem, for one) will not reuse an inode
# freed in the last few minutes: each new inode then scans past every recently freed one
# in its block group, and unpacking 20k files right after deleting 20k files costs ten
# times as much, whoever unpacks. So timed runs never delete a many-file tree between
# rounds: they put it aside and remove everything at the end, and the next timed run waits
# out the window (RECENT_REMOVAL_WINDOW) before timing anything on that filesystem.

#: How long no-journal ext4 avoids reusing a freed inode (up to 5 minutes, per the kernel).
RECENT_REMOVAL_WINDOW = 300.0
#: Trees with at least this many entries are put aside rather than removed between rounds.
MANY_ENTRIES = 1000


class WorkArea:
    """Fresh, empty work directories under one destination root, and their disposal.

    ``timed`` turns on what keeps rounds independent: sync(2) before each round, so
    writeback of the previous round does not land in this one, and deferred removal of
    many-file trees (see above). Smoke runs remove everything at once.
    """

    def __init__(self, root: Path, *, timed: bool) -> None:
        self.root = root
        self.timed = timed
        self.defers_removal = timed and _ext4_without_journal(root)
        self._count = 0
        self._trash = root / "trash"
        _sweep_dead_runs(root.parent)

    def fresh(self) -> Path:
        """A new empty directory for one round."""
        self._count += 1
        work = self.root / f"work-{self._count}"
        work.mkdir(parents=True)
        if self.timed:
            os.sync()
        return work

    def retire(self, work: Path, *, entries: int) -> None:
        """Disposes of a finished round's directory (now, or at :meth:`purge`)."""
        if self.defers_removal and entries >= MANY_ENTRIES:
            self._trash.mkdir(parents=True, exist_ok=True)
            work.rename(self._trash / work.name)
        else:
            shutil.rmtree(work)

    def purge(self) -> None:
        """Removes everything under the root and notes when, for :func:`wait_for_inodes`."""
        if not self.root.exists():
            return
        removed_many = self._trash.exists()
        shutil.rmtree(self.root)
        if removed_many:
            _removal_mark(self.root).write_text(f"{time.time()}\n")


def _removal_mark(root: Path) -> Path:
    """Shared by every run under the same base directory: any removal there counts."""
    return root.parent / ".removed-at"


def _sweep_dead_runs(base: Path) -> None:
    """Removes what runs that were killed left behind (their process is gone)."""
    if not base.is_dir():
        return
    for run in base.glob("run-*"):
        pid = run.name.removeprefix("run-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            many = (run / "trash").exists()
            shutil.rmtree(run)
            if many:
                _removal_mark(run).write_text(f"{time.time()}\n")


def wait_for_inodes(root: Path, report: Callable[[str], None]) -> float:
    """Waits until many-file trees removed under ``root`` no longer slow inode allocation.

    Only on ext4 without a journal, and only if a removal happened less than
    :data:`RECENT_REMOVAL_WINDOW` seconds ago. Returns the seconds waited.
    """
    mark = _removal_mark(root)
    if not mark.exists() or not _ext4_without_journal(root.parent):
        return 0.0
    age = time.time() - float(mark.read_text())
    wait = RECENT_REMOVAL_WINDOW - age
    if wait <= 0:
        return 0.0
    report(
        f"waiting {wait:.0f} s: trees removed {age:.0f} s ago under {root} would slow inode"
        " allocation (ext4 without a journal avoids reusing freed inodes for 5 minutes)"
    )
    time.sleep(wait)
    return wait


def _ext4_without_journal(path: Path) -> bool:
    """Whether ``path`` lives on an ext4 filesystem mounted without a journal."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    dev = probe.stat().st_dev
    block = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    try:
        name = block.resolve().name
        journal = (Path("/sys/fs/ext4") / name / "journal_task").read_text().strip()
    except OSError:
        return False  # not ext4, or sysfs is not there: nothing to wait for
    return journal == "<none>"


def run_two_sinks(layer: BenchLayer, area: WorkArea, *, pipelined: bool, threaded: bool) -> float:
    """Seconds for two non-durable sinks on ``layer``: in two threads, or one after the other."""
    run = towline(pipelined=pipelined, durable=False).run
    works = [area.fresh(), area.fresh()]
    errors: list[BaseException] = []

    def job(work: Path) -> None:
        try:
            run(layer, work)
        except BaseException as exc:  # re-raised below, in the caller's thread
            errors.append(exc)

    began = time.perf_counter()
    if threaded:
        threads = [threading.Thread(target=job, args=(w,)) for w in works]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for w in works:
            job(w)
    elapsed = time.perf_counter() - began
    for w in works:
        area.retire(w, entries=layer.entries)
    if errors:
        raise errors[0]
    return elapsed
