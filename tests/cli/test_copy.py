"""``towline copy`` as ``skopeo copy``: flags, output on stdout, transports both ways.

skopeo 1.9 was run against the same registry to pin the words: both names need a
transport, progress lines go to stdout, ``-q`` prints nothing. What towline wrote is
read back by skopeo.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from support.registry import BASIC_PASSWORD, BASIC_USER, PushedImage, RegistryServer
from support.tools import require_tool

from .runner import TowlineCLI


def short(digest: str) -> str:
    return digest.partition(":")[2][:12]


class Skopeo:
    """skopeo with no host configuration (HOME, registries.conf, auth file under ``home``)."""

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

    def run(self, *args: str) -> bytes:
        argv = [require_tool("skopeo"), *args]
        done = subprocess.run(argv, capture_output=True, env=self.env, timeout=120, check=False)
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.decode()}"
        return done.stdout

    def inspect(self, name: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.run("inspect", name))
        return document

    def raw(self, name: str) -> bytes:
        return self.run("inspect", "--raw", name)


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    return Skopeo(tmp_path / "skopeo-home")


# === output


def test_copy_prints_skopeos_lines_on_stdout_and_skopeo_reads_the_layout(
    run_towline: TowlineCLI,
    test_images: dict[str, PushedImage],
    tmp_path: Path,
    skopeo: Skopeo,
) -> None:
    image = test_images["gzip"]
    layout = tmp_path / "layout"
    result = run_towline(
        "copy", "--src-tls-verify=false", f"docker://{image.reference}", f"oci:{layout}:v1"
    ).ok()
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "Getting image source signatures"
    assert sorted(lines[1:-2]) == sorted(
        f"Copying blob {short(x.digest)} done" for x in image.layers
    )
    assert lines[-2:] == [
        f"Copying config {short(image.config_digest or '')} done",
        "Writing manifest to image destination",
    ]
    seen = skopeo.inspect(f"oci:{layout}:v1")
    assert seen["Digest"] == image.manifest_digest
    assert seen["Layers"] == [x.digest for x in image.layers]


def test_copy_quiet_prints_nothing(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage], tmp_path: Path
) -> None:
    image = test_images["zstd"]
    result = run_towline(
        "copy", "-q", "--src-tls-verify=false", f"docker://{image.reference}", f"dir:{tmp_path}/d"
    ).ok()
    assert (result.stdout, result.stderr) == ("", "")
    assert (tmp_path / "d/manifest.json").is_file()


# === names and flags


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alpine", "oci:/tmp/x"], "Invalid source name alpine: "),
        (["oci:/tmp/x", "quay.io/a/b:1"], "Invalid destination name quay.io/a/b:1: "),
        (["docker:alpine", "oci:/tmp/x"], "Invalid source name docker:alpine: "),
        (
            ["--platform", "linux/amd64", "--platform", "linux/arm64", "oci:/a", "oci:/b"],
            "--platform was given 2 times",
        ),
        (["--all", "--platform", "linux/arm64", "oci:/a", "oci:/b"], "either --all or --platform"),
        (["oci:/a"], "Missing argument 'DESTINATION'"),
    ],
)
def test_copy_refuses_bad_names_and_flags(
    run_towline: TowlineCLI, args: list[str], message: str
) -> None:
    assert message in run_towline("copy", *args).error()


def test_copy_to_a_registry_is_refused_clearly(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage], tmp_path: Path
) -> None:
    image = test_images["gzip"]
    run_towline.pull(image.reference)
    message = run_towline(
        "copy", f"containers-storage:{image.reference}", f"docker://{image.reference}-copy"
    ).error()
    assert "pushing to a registry is not supported" in message


def test_copy_one_platform_of_an_index(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage], tmp_path: Path, skopeo: Skopeo
) -> None:
    index = test_images["multiarch"]
    arm = index.platforms["linux/arm64/v8"]
    run_towline(
        "copy", "-q", "--src-tls-verify=false", "--platform", "linux/arm64",
        f"docker://{index.reference}", f"oci:{tmp_path}/l:arm",
    ).ok()  # fmt: skip
    assert skopeo.inspect(f"oci:{tmp_path}/l:arm")["Digest"] == arm.manifest_digest


def test_copy_all_keeps_the_index_byte_for_byte(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage], tmp_path: Path, skopeo: Skopeo
) -> None:
    index = test_images["multiarch"]
    result = run_towline(
        "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
        f"docker://{index.reference}", f"oci:{tmp_path}/l:all",
    ).ok()  # fmt: skip
    assert "Writing manifest list to image destination" in result.stdout.splitlines()
    assert skopeo.raw(f"oci:{tmp_path}/l:all") == index.artifact.manifest


def test_copy_preserve_digests_refuses_a_conversion(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage], tmp_path: Path
) -> None:
    image = test_images["docker"]  # a Docker v2s2 manifest; oci: stores OCI ones only
    message = run_towline(
        "copy", "-q", "--preserve-digests", "--src-tls-verify=false",
        f"docker://{image.reference}", f"oci:{tmp_path}/l",
    ).error()  # fmt: skip
    assert "must be preserved" in message
    assert not [p for p in tmp_path.glob("l/**/*") if not p.is_dir()]


# === credentials and TLS of the source


def test_copy_uses_the_source_credentials(
    run_towline: TowlineCLI, basic_auth_registry: RegistryServer, tmp_path: Path
) -> None:
    image = basic_auth_registry.pushed["gzip"]
    source = f"docker://{image.reference}"
    anonymous = run_towline("copy", "-q", "--src-tls-verify=false", source, f"oci:{tmp_path}/a")
    assert "unauthorized" in anonymous.error().lower() or "auth" in anonymous.error().lower()
    # Destination credentials are not the source's.
    wrong_side = run_towline(
        "copy", "-q", "--src-tls-verify=false", "--dest-creds", f"{BASIC_USER}:{BASIC_PASSWORD}",
        source, f"oci:{tmp_path}/b",
    )  # fmt: skip
    wrong_side.error()
    run_towline(
        "copy", "-q", "--src-tls-verify=false", "--src-creds", f"{BASIC_USER}:{BASIC_PASSWORD}",
        source, f"oci:{tmp_path}/c",
    ).ok()  # fmt: skip
    assert (tmp_path / "c/index.json").is_file()


def test_bare_src_tls_verify_means_true_and_keeps_the_source(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage], tmp_path: Path
) -> None:
    image = test_images["gzip"]
    # pflag's rule: alone it means true; the plain-HTTP test registry then fails TLS.
    message = run_towline(
        "copy", "-q", "--src-tls-verify", f"docker://{image.reference}", f"oci:{tmp_path}/l"
    ).error()
    assert "Invalid" not in message and "Missing argument" not in message
    assert image.reference.split("/")[0] in message


# === between transports


def test_copy_round_trip_through_every_local_transport(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage], tmp_path: Path, skopeo: Skopeo
) -> None:
    image = test_images["gzip"]
    image_id = (image.config_digest or "").removeprefix("sha256:")
    steps = [
        f"docker://{image.reference}",
        f"oci:{tmp_path}/layout:one",
        f"dir:{tmp_path}/dir",
        f"oci-archive:{tmp_path}/image.oci.tar:one",
        f"docker-archive:{tmp_path}/image.docker.tar:example.com/one:1",
        "containers-storage:example.com/copied:1",
    ]
    for source, destination in itertools.pairwise(steps):
        run_towline("copy", "-q", "--src-tls-verify=false", source, destination).ok()
    for name in steps[1:-1]:
        if not name.startswith("docker-archive:"):
            assert skopeo.inspect(name)["Digest"] == image.manifest_digest, name
    # skopeo inspect shows no RepoTags for an archive: read manifest.json itself.
    with tarfile.open(tmp_path / "image.docker.tar") as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        [entry] = json.loads(member.read())
    assert entry["RepoTags"] == ["example.com/one:1"]
    assert entry["Config"].removesuffix(".json").endswith(image_id)
    inspected = json.loads(run_towline("inspect", "example.com/copied:1").ok().stdout)
    assert inspected["id"] == image_id
    assert [x["diff_id"] for x in inspected["layers"]] == [x.diff_id for x in image.layers]
