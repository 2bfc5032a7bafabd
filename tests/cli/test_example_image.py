"""The offline example of the README: examples/hello.oci.tar, pulled and unpacked.

The archive is checked in; examples/make_hello.py must reproduce it byte for byte,
towline must pull it with no network exactly as the README shows, and podman must
name it the same way (localhost/hello:latest).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from support.podman import Podman

from .runner import TowlineCLI

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = REPO / "examples" / "hello.oci.tar"


def test_the_script_reproduces_the_checked_in_archive() -> None:
    spec = importlib.util.spec_from_file_location("make_hello", REPO / "examples/make_hello.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build() == ARCHIVE.read_bytes()
    assert len(ARCHIVE.read_bytes()) < 32 << 10


def test_the_readme_example_pulls_and_unpacks_offline(
    run_towline: TowlineCLI, tmp_path: Path
) -> None:
    pulled = run_towline("pull", f"oci-archive:{ARCHIVE}").ok()
    image_id = pulled.stdout.strip()
    assert len(image_id) == 64
    assert "Copying blob 2b5dfce630c4 done" in pulled.stderr
    listed = run_towline("images").ok().stdout
    assert "localhost/hello" in listed and image_id[:12] in listed
    rootfs = tmp_path / "hello-rootfs"
    run_towline("unpack", "localhost/hello:latest", str(rootfs)).ok()
    assert (rootfs / "hello.txt").read_text() == "Hello from an offline towline pull!\n"
    assert (rootfs / "greeting.txt").exists()
    assert not (rootfs / "etc/motd").exists(), "the second layer's whiteout deletes it"


def test_podman_names_and_identifies_it_the_same(run_towline: TowlineCLI, tmp_path: Path) -> None:
    podman = Podman(tmp_path / "podman")
    podman.run("pull", f"oci-archive:{ARCHIVE}")
    listed = podman.run("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.split()
    image_id = run_towline("pull", f"oci-archive:{ARCHIVE}").ok().stdout.strip()
    assert listed == ["localhost/hello:latest", image_id[:12]]
