"""The tools of the end-to-end benchmark, each run in isolation, with only its pull timed.

Every run goes through :class:`Sandbox`: ``unshare --mount --propagation private`` with a
tmpfs over each host directory podman or skopeo would otherwise write to (``/run``,
``/dev/shm``, ``/var/tmp``, ``/var/lib/containers``, ``/var/cache/containers``), private
configuration files passed by environment variables and flags, and every store in a fresh
directory on disk. The mounts vanish with the namespace. Time is taken inside the namespace
with bash's ``$EPOCHREALTIME`` around the tool alone, so neither ``unshare`` nor the mounts
are timed. After each run the tool's output is checked (:meth:`Tool.verify`): a fast tool that
pulled the wrong thing must not win.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BenchError",
    "Podman",
    "RunResult",
    "Sandbox",
    "Skopeo",
    "TarExtract",
    "Target",
    "Tool",
    "TowlineCli",
    "TowlineCopy",
    "choose_overlay",
    "hidden_paths",
]

#: Longest a single pull may take before the run counts as failed.
RUN_TIMEOUT = 1800.0

# Mounts the tmpfs ("MODE:PATH" arguments up to "--"), then runs and times the command.
_ISOLATE = r"""
set -eu
timefile=$1; shift
while [ "$1" != "--" ]; do
    mount -n -t tmpfs -o "mode=${1%%:*}" towline-bench "${1#*:}"
    shift
done
shift
start=$EPOCHREALTIME
set +e
"$@"
status=$?
end=$EPOCHREALTIME
printf '%s %s\n' "$start" "$end" > "$timefile"
exit "$status"
"""

_UNSHARE = ("unshare", "--mount", "--propagation", "private", "bash", "-c")
#: Host directories podman, skopeo or mount(8) write to, each hidden by a tmpfs (and its mode).
_HIDDEN = (
    ("0755", "/run"),
    ("1777", "/dev/shm"),
    ("1777", "/var/tmp"),
    ("0755", "/var/lib/containers"),
    ("0755", "/var/cache/containers"),
)

# Applies compressed layers in order, as `DECOMPRESSOR -dc LAYER | tar -x -C DEST`.
_TAR_APPLY = r"""
set -eu -o pipefail
dest=$1; shift
while [ $# -gt 0 ]; do
    "$1" -dcq -- "$2" | tar -x -C "$dest"
    shift 2
done
"""


class BenchError(RuntimeError):
    """A tool failed, or pulled something other than the image it was asked for."""


@dataclass(frozen=True)
class Target:
    """One image in the registry, as the tools see it, and what a correct pull leaves."""

    name: str
    reference: str  # 127.0.0.1:PORT/bench/NAME:latest
    manifest_digest: str
    config_digest: str
    layers: tuple[tuple[str, int], ...]  # (digest, size) of each layer blob
    layer_files: tuple[tuple[str, Path], ...]  # (compression, cached blob) for tar -x
    entries: int  # tar entries over all layers: about the inodes a pull creates
    marker: str  # path of a file in the last layer
    marker_content: bytes


@dataclass(frozen=True)
class RunResult:
    """One command run in the sandbox: seconds spent in the command alone, and its output."""

    seconds: float
    returncode: int
    stdout: str
    stderr: str


def hidden_paths() -> list[tuple[str, Path]]:
    """(mode, directory) of each tmpfs; a missing directory is hidden through its parent.

    Creating a mount point would leave it behind on the host, so when
    ``/var/lib/containers`` does not exist the tmpfs covers ``/var/lib`` instead. Files the
    tools must see (stores, cached layers) must live elsewhere.
    """
    out = []
    for mode, path in _HIDDEN:
        target = Path(path)
        if not target.is_dir():
            target = target.parent
        if target.is_dir() and not target.is_symlink():
            out.append((mode, target))
    return out


class Sandbox:
    """Private configuration and mounts shared by every run against one registry.

    ``work`` holds the configuration files (``etc/``), a HOME, and the temporary
    directories the tools are pointed at; each run's store is a fresh directory the caller
    creates and removes.
    """

    def __init__(self, work: Path, registry_host: str) -> None:
        self.work = work
        self.etc = work / "etc"
        self.tmp = work / "tmp"
        for directory in (self.etc, self.tmp, work / "home", work / "networks", work / "sysroot"):
            directory.mkdir(parents=True, exist_ok=True)
        self.policy = self.etc / "policy.json"
        self.policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
        (self.etc / "registries.conf").write_text(
            "unqualified-search-registries = []\n\n"
            f'[[registry]]\nlocation = "{registry_host}"\ninsecure = true\n'
        )
        # Events and the image copy's temporary files stay in the work dir, on disk, so
        # podman gets no RAM-backed /var/tmp advantage and writes nothing to the host.
        (self.etc / "containers.conf").write_text(
            f'[engine]\nevents_logger = "none"\nimage_copy_tmp_dir = "{self.tmp}"\n\n'
            f'[network]\nnetwork_config_dir = "{work / "networks"}"\n'
        )
        (self.etc / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\nrunroot = "{work / "unused-runroot"}"\n'
            f'graphroot = "{work / "unused-graphroot"}"\n'
        )
        (self.etc / "auth.json").write_text('{"auths": {}}\n')
        self.hidden = [f"{mode}:{path}" for mode, path in hidden_paths()]
        self.env = self._environment()

    def _environment(self) -> dict[str, str]:
        dropped = ("CONTAINERS_", "REGISTRY_", "DOCKER_", "TOWLINE_", "XDG_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
        env.update(
            {
                "HOME": str(self.work / "home"),
                "TMPDIR": str(self.tmp),
                "LC_ALL": "C",
                "CONTAINERS_REGISTRIES_CONF": str(self.etc / "registries.conf"),
                "CONTAINERS_CONF": str(self.etc / "containers.conf"),
                "CONTAINERS_STORAGE_CONF": str(self.etc / "storage.conf"),
                "REGISTRY_AUTH_FILE": str(self.etc / "auth.json"),
                # towline reads /etc/containers/... under this root instead (config/paths.py).
                "TOWLINE_CONFIG_ROOT": str(self.work / "sysroot"),
            }
        )
        return env

    def run(self, argv: Sequence[str], *, timeout: float = RUN_TIMEOUT) -> RunResult:
        """Run ``argv`` in a fresh mount namespace; time it alone."""
        timefile = self.tmp / f"time-{os.getpid()}"
        timefile.unlink(missing_ok=True)
        isolate = [*_UNSHARE, _ISOLATE, "towline-bench-isolate", str(timefile), *self.hidden]
        command = [*isolate, "--", *argv]
        try:
            done = subprocess.run(
                command,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{argv[0]} took more than {timeout:.0f} s; aborted") from exc
        try:
            start, end = timefile.read_text().replace(",", ".").split()
        except FileNotFoundError:
            raise BenchError(
                f"the sandbox did not run {argv[0]} (unshare/mount failed: "
                f"{_tail(done.stderr)}); run as root with util-linux unshare"
            ) from None
        finally:
            timefile.unlink(missing_ok=True)
        return RunResult(float(end) - float(start), done.returncode, done.stdout, done.stderr)


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"


def _check_marker(candidates: Sequence[Path], target: Target, tool: str) -> None:
    for path in candidates:
        if path.is_file() and path.read_bytes() == target.marker_content:
            return
    raise BenchError(f"{tool} left no {target.marker} of {target.name} in its store")


def _check_layout(layout: Path, target: Target, tool: str) -> None:
    """An OCI layout holding ``target``, as ``skopeo copy ... oci:`` leaves it.

    index.json names the manifest and nothing else; the manifest and config blobs hash to
    their digests; every layer blob is there with its size (hashing them would double the
    untimed part of a run; both tools verified them while writing).
    """
    try:
        index = json.loads((layout / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"{tool} left no readable {layout}/index.json: {exc}") from None
    digests = [entry.get("digest") for entry in index.get("manifests", [])]
    if digests != [target.manifest_digest]:
        raise BenchError(f"{tool}'s {layout}/index.json lists {digests}, not the manifest")

    def blob(digest: str) -> Path:
        return layout / "blobs" / "sha256" / digest.partition(":")[2]

    for digest in (target.manifest_digest, target.config_digest):
        path = blob(digest)
        if not path.is_file() or f"sha256:{_sha256(path)}" != digest:
            raise BenchError(f"{tool} left no {digest} with that digest in {layout}")
    for digest, size in target.layers:
        path = blob(digest)
        if not path.is_file() or path.stat().st_size != size:
            raise BenchError(f"{tool} left no complete {digest} in {layout}")


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Tool(ABC):
    """One way of pulling an image into a fresh directory: argv, then a check of the result."""

    key: str
    label: str

    def unavailable(self) -> str | None:
        """Why this tool cannot run here, or None when it can."""
        return None

    @abstractmethod
    def argv(self, target: Target, store: Path, sandbox: Sandbox) -> list[str]:
        """The command that pulls ``target`` into the empty directory ``store``."""

    @abstractmethod
    def verify(self, target: Target, store: Path, sandbox: Sandbox) -> None:
        """Raise :class:`BenchError` unless ``store`` holds ``target`` after the pull."""

    def cleanup(self, store: Path) -> None:
        """Remove what the tool keeps outside ``store`` (the caller removes ``store``)."""
        return None

    def pull(self, target: Target, store: Path, sandbox: Sandbox) -> float:
        """Pull ``target`` into ``store`` (created empty), verify it; return the timed seconds."""
        store.mkdir(parents=True)
        result = sandbox.run(self.argv(target, store, sandbox))
        if result.returncode != 0:
            raise BenchError(
                f"{self.label} of {target.reference} exited {result.returncode}: "
                f"{_tail(result.stderr or result.stdout)}"
            )
        self.verify(target, store, sandbox)
        return result.seconds


def _missing(*names: str) -> str | None:
    absent = [name for name in names if shutil.which(name) is None]
    return f"{', '.join(absent)} not installed" if absent else None


class TowlineCli(Tool):
    """``towline --root STORE pull --tls-verify=false --quiet REF``."""

    key = "towline"
    label = "towline pull"
    command = "pull"  # the subcommand timed: ``towline --help`` must list it

    def __init__(self, executable: str | None) -> None:
        self.executable = executable

    def unavailable(self) -> str | None:
        """Whether ``towline --help`` runs and lists this tool's subcommand."""
        if self.executable is None:
            return "towline CLI not available (no towline executable on PATH)"
        try:
            done = subprocess.run(
                [self.executable, "--help"], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"towline CLI not available ({self.executable} --help: {exc})"
        if done.returncode != 0:
            reason = _tail(done.stderr or done.stdout, 1)
            return f"towline CLI not available ({self.executable} --help: {reason})"
        listed = any(line.split()[:1] == [self.command] for line in done.stdout.splitlines())
        if not listed:
            return f"towline CLI not available ({self.executable} --help lists no {self.command})"
        return None

    def argv(self, target: Target, store: Path, sandbox: Sandbox) -> list[str]:
        """The CLI pull into ``store/root``."""
        assert self.executable is not None
        pull = ["pull", "--tls-verify=false", "--quiet", target.reference]
        return [self.executable, "--root", str(store / "root"), *pull]

    def verify(self, target: Target, store: Path, sandbox: Sandbox) -> None:
        """The manifest blob is in the CAS and the marker in one of the unpacked layers."""
        root = store / "root"
        manifest = root / "blobs" / "sha256" / target.manifest_digest.partition(":")[2]
        if not manifest.is_file():
            raise BenchError(f"towline stored no manifest {target.manifest_digest} under {root}")
        _check_marker(sorted((root / "layers").glob(f"*/{target.marker}")), target, self.label)


class TowlineCopy(TowlineCli):
    """``towline copy --src-tls-verify=false --quiet docker://REF oci:STORE``: blobs only.

    The same work as :class:`Skopeo`'s ``skopeo copy`` (download, verify, write each blob
    to the layout), run as users run it: no ``--root`` (the sandbox's HOME holds the
    store it opens, made in the warm-up and kept, as a user's).
    """

    key = "towline-copy"
    label = "towline copy to oci:"
    command = "copy"

    def argv(self, target: Target, store: Path, sandbox: Sandbox) -> list[str]:
        """The CLI copy into ``store/oci``."""
        assert self.executable is not None
        copy = ["copy", "--src-tls-verify=false", "--quiet", f"docker://{target.reference}"]
        return [self.executable, *copy, f"oci:{store / 'oci'}"]

    def verify(self, target: Target, store: Path, sandbox: Sandbox) -> None:
        """index.json names the manifest and every blob is there (see :func:`_check_layout`)."""
        _check_layout(store / "oci", target, self.label)


class Podman(Tool):
    """``podman pull --tls-verify=false -q REF`` with its own root, runroot and tmpdir."""

    def __init__(self, driver: str, mount_program: str | None = None) -> None:
        self.driver = driver
        self.mount_program = mount_program
        self.key = f"podman-{driver}"
        via = " via fuse-overlayfs" if mount_program else ""
        self.label = f"podman pull ({driver}{via})"

    def unavailable(self) -> str | None:
        """podman and unshare on PATH, and root (mounts in a new namespace need it)."""
        if os.geteuid() != 0:
            return "needs root (podman's own --root and the tmpfs mounts)"
        return _missing("podman", "unshare")

    @staticmethod
    def state_dir(store: Path) -> Path:
        """Short directory for runroot and tmpdir: podman refuses a runroot over 50 chars."""
        return Path("/tmp") / f"tlb-{hashlib.sha256(str(store).encode()).hexdigest()[:12]}"

    def cleanup(self, store: Path) -> None:
        """Remove the runroot and tmpdir kept outside ``store``."""
        shutil.rmtree(self.state_dir(store), ignore_errors=True)

    def _globals(self, store: Path) -> list[str]:
        state = self.state_dir(store)
        args = ["podman", "--root", str(store / "root"), "--storage-driver", self.driver]
        args += ["--runroot", str(state / "runroot"), "--tmpdir", str(state / "libpod")]
        if self.mount_program:
            args += ["--storage-opt", f"{self.driver}.mount_program={self.mount_program}"]
        return args

    def argv(self, target: Target, store: Path, sandbox: Sandbox) -> list[str]:
        """podman pull with a private signature policy."""
        pull = ["pull", "--signature-policy", str(sandbox.policy), "--tls-verify=false", "-q"]
        return [*self._globals(store), *pull, target.reference]

    def info(self, store: Path, sandbox: Sandbox) -> RunResult:
        """``podman info`` on ``store``: the driver's status (native overlay diff...)."""
        return sandbox.run([*self._globals(store), "info", "--format", "{{json .Store}}"])

    def verify(self, target: Target, store: Path, sandbox: Sandbox) -> None:
        """podman reports the image's ID and digest, and a layer holds the marker."""
        fmt = "{{.Id}} {{.Digest}}"
        result = sandbox.run(
            [*self._globals(store), "image", "inspect", "--format", fmt, target.reference]
        )
        expected = f"{target.config_digest.partition(':')[2]} {target.manifest_digest}"
        if result.returncode != 0 or result.stdout.strip() != expected:
            raise BenchError(
                f"podman ({self.driver}) image inspect {target.reference} gave "
                f"{_tail(result.stdout or result.stderr)!r}, expected {expected!r}"
            )
        root = store / "root"
        pattern = f"overlay/*/diff/{target.marker}" if self.driver == "overlay" else None
        pattern = pattern or f"{self.driver}/dir/*/{target.marker}"
        _check_marker(sorted(root.glob(pattern)), target, self.label)


class Skopeo(Tool):
    """``skopeo copy --src-tls-verify=false docker://REF oci:STORE`` (download and verify)."""

    key = "skopeo"
    label = "skopeo copy to oci:"

    def unavailable(self) -> str | None:
        """skopeo and unshare on PATH."""
        return _missing("skopeo", "unshare")

    def argv(self, target: Target, store: Path, sandbox: Sandbox) -> list[str]:
        """skopeo copy into ``store/oci`` with a private policy and tmpdir."""
        options = ["--policy", str(sandbox.policy), "--tmpdir", str(sandbox.tmp)]
        copy = ["copy", "--src-tls-verify=false", f"docker://{target.reference}"]
        return ["skopeo", *options, *copy, f"oci:{store / 'oci'}"]

    def verify(self, target: Target, store: Path, sandbox: Sandbox) -> None:
        """index.json names the manifest and every blob is there (see :func:`_check_layout`)."""
        _check_layout(store / "oci", target, "skopeo")


class TarExtract(Tool):
    """``gzip -dc LAYER | tar -x -C DIR`` (``zstd`` for zstd) for each layer, in order."""

    key = "tar"
    label = "tar -x of the layers"

    def unavailable(self) -> str | None:
        """tar, gzip and zstd on PATH."""
        return _missing("tar", "gzip", "zstd", "unshare")

    def argv(self, target: Target, store: Path, sandbox: Sandbox) -> list[str]:
        """One bash running the decompress | untar pipelines into ``store/rootfs``."""
        rootfs = store / "rootfs"
        rootfs.mkdir()
        layers = [
            str(part) for compression, path in target.layer_files for part in (compression, path)
        ]
        return ["bash", "-c", _TAR_APPLY, "towline-bench-tar", str(rootfs), *layers]

    def verify(self, target: Target, store: Path, sandbox: Sandbox) -> None:
        """The marker is in the extracted tree."""
        _check_marker([store / "rootfs" / target.marker], target, self.label)


def choose_overlay(sandbox: Sandbox, scratch: Path) -> tuple[Podman | None, str]:
    """podman's overlay driver as it works here: kernel overlayfs, else fuse-overlayfs.

    Returns the tool (None when neither works) and a one-line note for the report.
    """
    failures: list[str] = []
    fuse = shutil.which("fuse-overlayfs")
    for candidate in (Podman("overlay"), *([Podman("overlay", fuse)] if fuse else [])):
        store = scratch / f"probe-{len(failures)}"
        store.mkdir(parents=True)
        try:
            result = candidate.info(store, sandbox)
        finally:
            candidate.cleanup(store)
            shutil.rmtree(store, ignore_errors=True)
        if result.returncode == 0:
            status = json.loads(result.stdout).get("graphStatus", {})
            kind = "fuse-overlayfs" if candidate.mount_program else "kernel overlayfs"
            facts = ", ".join(f"{k}: {v}" for k, v in sorted(status.items()))
            tried = f"; kernel overlayfs failed: {failures[0]}" if failures else ""
            return candidate, f"podman overlay uses {kind} ({facts}){tried}"
        failures.append(_tail(result.stderr, 1))
    return None, f"podman's overlay driver does not work here: {'; '.join(failures)}"
