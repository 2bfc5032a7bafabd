"""skopeo and umoci as the tests run them: no host configuration, no signature policy."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

from support.tools import require_tool


class Peers:
    """Runs skopeo and umoci with ``HOME``, registries.conf and auth file under ``home``."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        (home / "registries.conf").write_text("")
        (home / "auth.json").write_text('{"auths": {}}')
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "CONTAINERS_REGISTRIES_CONF": str(home / "registries.conf"),
            "REGISTRY_AUTH_FILE": str(home / "auth.json"),
            "TMPDIR": str(home),
        }

    def run(self, tool: str, *args: str) -> str:
        """Run ``tool`` (skip locally, fail on CI, when it is missing); its stdout."""
        argv = [require_tool(tool), *args]
        done = subprocess.run(
            argv, capture_output=True, text=True, env=self.env, timeout=120, check=False
        )
        assert done.returncode == 0, f"{' '.join(argv)} -> {done.returncode}\n{done.stderr}"
        return done.stdout

    def skopeo_copy(self, src: str, dst: str, *extra: str) -> None:
        """``skopeo copy`` (plain HTTP to the test registry, no policy.json)."""
        self.run(
            "skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
            *extra, src, dst,
        )  # fmt: skip

    def inspect(self, name: str) -> dict[str, Any]:
        """``skopeo inspect NAME`` as JSON (Digest, Layers, ...)."""
        document: dict[str, Any] = json.loads(self.run("skopeo", "inspect", name))
        return document

    def inspect_raw(self, name: str) -> bytes:
        """The top-level manifest skopeo reads from NAME, byte for byte."""
        argv = [require_tool("skopeo"), "inspect", "--raw", name]
        done = subprocess.run(argv, capture_output=True, env=self.env, timeout=60, check=False)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout

    def umoci_unpack(self, layout: Path, ref: str, bundle: Path) -> Path:
        """``umoci unpack`` of ``layout:ref``; the bundle's rootfs."""
        rootless = [] if os.geteuid() == 0 else ["--rootless"]
        self.run("umoci", "unpack", *rootless, "--image", f"{layout}:{ref}", str(bundle))
        return bundle / "rootfs"


def tree(root: Path) -> dict[str, tuple[str, int, str | None]]:
    """Every path under ``root``: kind, permission bits, content hash or link target."""
    found: dict[str, tuple[str, int, str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                entry = ("symlink", 0o777, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                entry = ("dir", stat.S_IMODE(st.st_mode), None)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                entry = ("file", stat.S_IMODE(st.st_mode), digest)
            found[str(path.relative_to(root))] = entry
    return found


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (content) and directory (None) under ``root``, to show nothing changed."""
    if not root.exists():
        return {}
    found: dict[str, bytes | None] = {".": None}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found[str(Path(dirpath, name).relative_to(root))] = None
        for name in filenames:
            found[str(Path(dirpath, name).relative_to(root))] = Path(dirpath, name).read_bytes()
    return found
