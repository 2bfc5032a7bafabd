"""Every failure is one ``Error: …`` line on stderr, exit status 125, never a traceback.

:meth:`Result.error <cli.runner.Result.error>` checks that promise; the tests below
check that the message names what went wrong, and that the store is left as it was.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from support.fault_proxy import FaultProxy
from support.registry import PushedImage, free_port

from .runner import EXIT_INTERRUPTED, Result, TowlineCLI


def listed(run_towline: TowlineCLI) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(run_towline("images", "--format", "json").ok().stdout)
    return rows


# === local names


@pytest.mark.parametrize(
    "args",
    [
        ("inspect", "nothere"),
        ("inspect", "sha256:" + "0" * 64),
        ("unpack", "nothere", "{tmp}/out"),
        ("rmi", "nothere"),
        ("pull", "--policy", "never", "nothere"),
    ],
)
def test_unknown_image(run_towline: TowlineCLI, tmp_path: Path, args: tuple[str, ...]) -> None:
    message = run_towline(*(a.format(tmp=tmp_path) for a in args)).error()
    assert args[-1 if args[0] != "unpack" else 1] in message
    assert "image not known" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "mentioned"),
    [
        ("Foo", "lowercase"),  # distribution/reference: no uppercase in a repository
        ("foo/Bar", "lowercase"),
        ("alpine:bad!tag", "alpine:bad!tag"),
        ("alpine:" + "t" * 129, "alpine"),  # a tag has at most 128 characters
        ("alpine@sha256:abc", "sha256:abc"),
        ("alpine@md5:" + "0" * 32, "md5"),
        ("a" * 256, "255"),  # a repository name has at most 255 characters
        ("foo://bar", "foo://bar"),  # podman: "invalid reference format"
    ],
)
def test_bad_name(run_towline: TowlineCLI, name: str, mentioned: str) -> None:
    message = run_towline("pull", "--tls-verify=false", name).error()
    assert mentioned in message


def test_transport_not_supported(run_towline: TowlineCLI) -> None:
    for name in ("sif:/x.sif", "tarball:/x.tar"):
        message = run_towline("pull", name).error()
        assert "is not supported by towline" in message
        assert name.partition(":")[0] in message


# === registries


def test_registry_unreachable(run_towline: TowlineCLI) -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    message = run_towline("pull", "--retry", "0", "--tls-verify=false", f"{host}/x/y").error()
    assert host in message


def test_manifest_unknown_leaves_the_store_as_it_was(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage]
) -> None:
    image = test_images["gzip"]
    repo = image.reference.rsplit(":", 1)[0]
    host = repo.split("/")[0]
    for name in (
        f"{host}/test/nothere:latest",
        f"{repo}:nope",
        f"{repo}@sha256:{'0' * 64}",
    ):
        message = run_towline("pull", "--tls-verify=false", name).error()
        assert "manifest unknown" in message
        assert name.split("/", 1)[1].split(":")[0].split("@")[0] in message
    assert listed(run_towline) == []


def test_policy_never_with_nothing_local_does_not_ask_the_registry(
    run_towline: TowlineCLI,
) -> None:
    name = f"127.0.0.1:{free_port()}/test/gzip:latest"
    message = run_towline("pull", "--policy", "never", name).error()
    assert message == f"{name}: image not known"


def test_unknown_policy(run_towline: TowlineCLI) -> None:
    message = run_towline("pull", "--policy", "sometimes", "alpine").error()
    assert "sometimes" in message


@pytest.mark.parametrize("platform", ["linux", "linux/", "/amd64", "linux/amd64/v8/x"])
def test_bad_platform(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage], platform: str
) -> None:
    name = test_images["multiarch"].reference
    message = run_towline("pull", "--tls-verify=false", "--platform", platform, name).error()
    assert f'"{platform}"' in message or f"'{platform}'" in message


def test_platform_not_in_the_index_lists_the_index(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage]
) -> None:
    index = test_images["multiarch"]
    args = ("pull", "--tls-verify=false", "--platform", "linux/s390x", index.reference)
    message = run_towline(*args).error()
    assert "s390x" in message
    for platform in index.platforms:
        assert re.search(rf"{re.escape(platform)}\b", message), message
    assert listed(run_towline) == []


# === unpack and usage


def test_unpack_into_a_non_empty_directory(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage], tmp_path: Path
) -> None:
    image = test_images["gzip"]
    run_towline.pull(image.reference)
    target = tmp_path / "full"
    target.mkdir()
    (target / "keep.txt").write_text("mine\n")
    message = run_towline("unpack", image.reference, str(target)).error()
    assert str(target) in message
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "mine\n"


@pytest.mark.parametrize(
    "args",
    [
        ("pull",),
        ("pull", "--bogus", "alpine"),
        ("pull", "--tls-verify=maybe", "alpine"),
        ("pull", "--retry", "-1", "alpine"),
        ("images", "--format", "yaml"),
        ("frobnicate",),
    ],
)
def test_usage_errors(run_towline: TowlineCLI, args: tuple[str, ...]) -> None:
    run_towline(*args).error()


# === Ctrl-C


def test_ctrl_c_during_a_pull_leaves_the_store_unchanged(
    run_towline: TowlineCLI,
    test_images: dict[str, PushedImage],
    fault_proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    # The store already holds an image sharing two layers with the one interrupted.
    run_towline.pull(test_images["shared-a"].reference)
    files, images = run_towline.snapshot(), listed(run_towline)
    image = test_images["gzip"]
    layers = [x.digest for x in image.layers]
    fault_proxy.slow("|".join(re.escape(d) for d in layers), bytes_per_second=100)
    name = f"{fault_proxy.host}/test/gzip:latest"
    args = ("pull", "--tls-verify=false", "--quiet", name)
    with (tmp_path / "stderr").open("w+") as stderr:
        proc = subprocess.Popen(
            run_towline.command(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=run_towline.env(),
            text=True,
        )
        try:
            deadline = time.monotonic() + 20
            while not any(d in e.path for e in fault_proxy.log for d in layers):
                assert proc.poll() is None and time.monotonic() < deadline, "no layer requested"
                time.sleep(0.05)
            time.sleep(0.3)  # well inside the layer's body
            proc.send_signal(signal.SIGINT)
            stdout, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr.seek(0)
        result = Result(args, proc.returncode, stdout, stderr.read())
    assert result.error(EXIT_INTERRUPTED) == "interrupted; the store is unchanged"
    assert len(result.stderr.splitlines()) == 1
    assert run_towline.snapshot() == files
    assert listed(run_towline) == images
    # Nothing half-written stands in the way of the next pull.
    assert f"sha256:{run_towline.pull(image.reference)}" == image.config_digest
