"""Interop with the peers: towline's root filesystem equals what skopeo + umoci make of it.

For the same image in the test registry, ``towline pull`` + ``towline unpack`` must give the
tree that ``skopeo copy`` (to an OCI layout) + ``umoci unpack`` give: the same paths, kinds,
permission bits, symlink targets, file contents, hard links and mtimes, and (as root) owners.

umoci 0.4.7 (Debian's) refuses zstd layers ("blob is not correct mediatype"), so for the
zstd image skopeo recompresses the layers to gzip on the way into the layout: towline still
pulls the zstd blobs, and the uncompressed layers (the diff_ids) are the same on both sides.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.runner import TowlineCLI
from support.images import STANDARD_ROOTFS
from support.registry import PushedImage
from support.tools import require_tool

#: skopeo copy options per test image; zstd goes to gzip because umoci cannot read it.
SKOPEO_OPTIONS = {
    "gzip": (),
    "docker": (),
    "zstd": ("--dest-compress", "--dest-compress-format", "gzip"),
}

AS_ROOT = os.geteuid() == 0


@dataclass(frozen=True)
class Entry:
    """One path of an unpacked tree, as the comparison sees it."""

    kind: str
    mode: int
    content: str | None  # sha256 of a file's bytes, a symlink's target, None for a directory
    owner: tuple[int, int] | None  # only compared when running as root
    mtime: int


def walk(root: Path) -> tuple[dict[str, Entry], set[frozenset[str]]]:
    """Every entry under ``root`` by relative path, and the groups of hard-linked files."""
    entries: dict[str, Entry] = {}
    inodes: dict[int, set[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                kind, content = "symlink", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                kind, content = "dir", None
            elif stat.S_ISREG(st.st_mode):
                kind, content = "file", hashlib.sha256(path.read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, set()).add(rel)
            else:
                kind, content = f"special:{stat.S_IFMT(st.st_mode):o}", str(st.st_rdev)
            entries[rel] = Entry(
                kind,
                stat.S_IMODE(st.st_mode),
                content,
                (st.st_uid, st.st_gid) if AS_ROOT else None,
                int(st.st_mtime),
            )
    return entries, {frozenset(paths) for paths in inodes.values() if len(paths) > 1}


def as_standard(entries: dict[str, Entry], root: Path) -> dict[str, tuple[str, int, object]]:
    """``entries`` in the shape of :data:`STANDARD_ROOTFS` (file contents read again)."""
    out: dict[str, tuple[str, int, object]] = {}
    for rel, entry in entries.items():
        if entry.kind == "file":
            out[rel] = ("file", entry.mode, (root / rel).read_bytes())
        elif entry.kind == "symlink":
            out[rel] = ("symlink", 0o777, entry.content)
        else:
            out[rel] = (entry.kind, entry.mode, None)
    return out


def run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(argv)} -> {done.returncode}\n{done.stderr}"


def peer_env(home: Path) -> dict[str, str]:
    """skopeo and umoci without the host's registries.conf, auth files or policy."""
    home.mkdir(parents=True, exist_ok=True)
    registries = home / "registries.conf"
    registries.write_text("")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CONTAINERS_REGISTRIES_CONF": str(registries),
        "REGISTRY_AUTH_FILE": str(home / "auth.json"),
        "TMPDIR": str(home),
    }


@pytest.mark.parametrize("name", sorted(SKOPEO_OPTIONS))
def test_towline_unpack_equals_skopeo_and_umoci(
    name: str, test_images: dict[str, PushedImage], tmp_path: Path
) -> None:
    skopeo, umoci = require_tool("skopeo"), require_tool("umoci")
    image = test_images[name]
    env = peer_env(tmp_path / "peer-home")
    (tmp_path / "peer-home" / "auth.json").write_text('{"auths": {}}')

    # === the peers: skopeo copies into an OCI layout, umoci unpacks it
    layout, bundle = tmp_path / "layout", tmp_path / "bundle"
    run(
        [
            skopeo,
            "--insecure-policy",  # no policy.json: this is a copy, not a signature check
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            *SKOPEO_OPTIONS[name],
            f"docker://{image.reference}",
            f"oci:{layout}:latest",
        ],
        env,
    )
    rootless = [] if AS_ROOT else ["--rootless"]
    run([umoci, "unpack", *rootless, "--image", f"{layout}:latest", str(bundle)], env)

    # === towline
    towline = TowlineCLI(tmp_path / "store", tmp_path / "towline-home")
    image_id = towline.pull(image.reference)
    assert f"sha256:{image_id}" == image.config_digest
    ours = tmp_path / "rootfs"
    towline("unpack", image.reference, str(ours)).ok()

    # === the comparison
    expected, expected_links = walk(bundle / "rootfs")
    actual, actual_links = walk(ours)
    assert sorted(actual) == sorted(expected)
    mismatched = {p: (actual[p], expected[p]) for p in expected if actual[p] != expected[p]}
    assert not mismatched, f"towline vs umoci: {mismatched}"
    assert (
        actual_links
        == expected_links
        == {frozenset({"usr/lib/libdemo.so.1", "usr/lib/libdemo-hard.so.1"})}
    )
    assert as_standard(actual, ours) == STANDARD_ROOTFS
