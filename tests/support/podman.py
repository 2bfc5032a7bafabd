"""podman as the tests run it: its own store, and nothing written to the host.

Every command runs in a new mount namespace (``unshare --mount``) with a tmpfs
over ``/run`` and ``/var/lib/containers`` (or ``/var/lib`` when that does not
exist), where podman and containers/image keep their caches and runtime files;
the store (``--root``) lives under the test's directory and the runroot in a
short directory under ``/tmp`` (podman refuses long runroot paths). Needs root
and ``unshare``: skipped otherwise (failed on CI).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from .tools import require_tool, skip_or_fail

# Mount the tmpfs given as arguments up to "--", then run the command after it.
_ISOLATE = r"""
set -eu
while [ "$1" != "--" ]; do
    mount -n -t tmpfs -o mode=0755 towline-tests "$1"
    shift
done
shift
exec "$@"
"""


def _hidden() -> list[str]:
    out = ["/run"]
    lib = Path("/var/lib/containers")
    out.append(str(lib if lib.is_dir() else lib.parent))
    return out


class Podman:
    """One podman store under ``work``; :meth:`run` returns stdout, failing on errors."""

    def __init__(self, work: Path) -> None:
        if os.geteuid() != 0:
            skip_or_fail("podman tests need root (a private mount namespace for podman)")
        self.podman = require_tool("podman")
        self.unshare = require_tool("unshare")
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        short = hashlib.sha256(str(work).encode()).hexdigest()[:12]
        self.state = Path("/tmp") / f"tlt-{short}"
        self.state.mkdir(exist_ok=True)
        (work / "policy.json").write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
        (work / "registries.conf").write_text("unqualified-search-registries = []\n")
        (work / "containers.conf").write_text('[engine]\nevents_logger = "none"\n')
        (work / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\nrunroot = "{self.state / "run"}"\n'
            f'graphroot = "{work / "root"}"\n'
        )
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(work),
            "TMPDIR": str(self.state),
            "CONTAINERS_CONF": str(work / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(work / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(work / "registries.conf"),
            "REGISTRY_AUTH_FILE": str(work / "auth.json"),
        }
        (work / "auth.json").write_text('{"auths": {}}')

    def argv(self, *args: str) -> list[str]:
        """The isolated command line of ``podman ARGS``."""
        podman = [
            self.podman,
            "--root", str(self.work / "root"),
            "--runroot", str(self.state / "run"),
            "--tmpdir", str(self.state / "tmp"),
            "--storage-driver", "vfs",
        ]  # fmt: skip
        isolate = [self.unshare, "--mount", "--propagation", "private", "sh", "-c", _ISOLATE]
        return [*isolate, "podman-isolated", *_hidden(), "--", *podman, *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``podman ARGS``; asserts success unless ``check`` is False."""
        done = subprocess.run(
            self.argv(*args), capture_output=True, text=True, env=self.env, timeout=180, check=False
        )
        if check:
            assert done.returncode == 0, (
                f"podman {' '.join(args)} -> {done.returncode}\n{done.stderr}"
            )
        return done

    def pull(self, reference: str) -> str:
        """``podman pull`` from the (plain HTTP) test registry; the image ID."""
        self.run("pull", "-q", "--tls-verify=false", "--signature-policy", self.policy, reference)
        return self.image_id(reference)

    @property
    def policy(self) -> str:
        """The permissive signature policy file."""
        return str(self.work / "policy.json")

    def image_id(self, name: str) -> str:
        """The full image ID of ``name``."""
        return self.run("image", "inspect", "--format", "{{.Id}}", name).stdout.strip()

    def images(self) -> dict[str, set[str]]:
        """Image ID → its names (``repo:tag``), as ``podman images`` lists them."""
        out = self.run("images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}")
        found: dict[str, set[str]] = {}
        for line in out.stdout.splitlines():
            image_id, _, name = line.partition(" ")
            names = found.setdefault(image_id.removeprefix("sha256:"), set())
            if name != "<none>:<none>":
                names.add(name)
        return found

    def cleanup(self) -> None:
        """Remove the runroot kept under /tmp (the store goes with the test's directory)."""
        shutil.rmtree(self.state, ignore_errors=True)
