"""``towline pull``: what it prints, its options, and the registries it can log in to."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

from support.registry import BASIC_PASSWORD, BASIC_USER, PushedImage, RegistryServer
from support.token_server import TokenServer

from .conftest import TAGS
from .runner import TowlineCLI

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def image_id(image: PushedImage) -> str:
    assert image.config_digest is not None
    return image.config_digest.removeprefix("sha256:")


def short(digest: str) -> str:
    return digest.partition(":")[2][:12]


# === output


def test_pull_prints_the_id_on_stdout_and_podmans_lines_on_stderr(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage]
) -> None:
    image = test_images["gzip"]
    result = run_towline("pull", "--tls-verify=false", image.reference).ok()
    assert result.stdout == image_id(image) + "\n"
    lines = result.stderr.splitlines()
    assert lines[:2] == [f"Trying to pull {image.reference}...", "Getting image source signatures"]
    # Layers arrive concurrently: their lines come in any order, before the config's.
    assert sorted(lines[2:-2]) == sorted(
        f"Copying blob {short(x.digest)} done" for x in image.layers
    )
    assert lines[-2:] == [
        f"Copying config {image_id(image)[:12]} done",
        "Writing manifest to image destination",
    ]


def test_quiet_prints_only_the_id(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage]
) -> None:
    image = test_images["docker"]
    result = run_towline("pull", "--quiet", "--tls-verify=false", image.reference).ok()
    assert (result.stdout, result.stderr) == (image_id(image) + "\n", "")
    result = run_towline("pull", "-q", "--tls-verify=false", "--policy", "always", image.reference)
    assert (result.ok().stdout, result.stderr) == (image_id(image) + "\n", "")


def test_policies_missing_and_always_on_a_pulled_image(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage]
) -> None:
    image = test_images["gzip"]
    run_towline.pull(image.reference)
    # podman: a local image satisfies "missing" without a word, and without the registry.
    again = run_towline("pull", "--tls-verify=false", image.reference).ok()
    assert (again.stdout, again.stderr) == (image_id(image) + "\n", "")
    always = run_towline("pull", "--tls-verify=false", "--policy=always", image.reference).ok()
    assert always.stdout == image_id(image) + "\n"
    for layer in image.layers:
        assert f"Copying blob {short(layer.digest)} skipped: already exists" in always.stderr
    never = run_towline("pull", "--policy", "never", image.reference).ok()
    assert (never.stdout, never.stderr) == (image_id(image) + "\n", "")


def _read_terminal(master: int, proc: subprocess.Popen[str], timeout: float) -> bytes:
    """Everything written to the terminal until the process closes it (Linux: EIO)."""
    screen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer of the terminal is gone
            break
        if not data:
            break
        screen += data
    return screen


def test_live_progress_bars_on_a_terminal(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage]
) -> None:
    image = test_images["gzip"]
    master, terminal = pty.openpty()
    # A real size: with none, the bars would be laid out for an unknown width.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        proc = subprocess.Popen(
            run_towline.command("pull", "--tls-verify=false", image.reference),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
            env=run_towline.env(),
            text=True,
        )
    finally:
        os.close(terminal)
    try:
        screen = _read_terminal(master, proc, timeout=30).decode("utf-8", "replace")
        stdout, _ = proc.communicate(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, screen
    assert stdout == image_id(image) + "\n"
    assert "\x1b[" in screen  # it drew, rather than printing plain lines
    text = ANSI.sub("", screen)
    assert "Traceback" not in text
    assert f"Trying to pull {image.reference}..." in text
    lines = [x.strip() for x in text.replace("\r", "\n").splitlines()]
    for layer in image.layers:
        bar = [x for x in lines if x.startswith(f"Copying blob {short(layer.digest)} ")]
        assert bar and bar[-1].endswith("done"), text
        # The bar says it; the plain line would only repeat it (podman shows bars only).
        assert f"Copying blob {short(layer.digest)} done" not in lines


# === options


def test_platform_picks_the_instance_from_an_index(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage]
) -> None:
    index = test_images["multiarch"]
    arm64 = index.platforms["linux/arm64/v8"]
    # "linux/arm64" means arm64/v8, as containerd's platform matching says.
    assert run_towline.pull(index.reference, "--platform", "linux/arm64") == image_id(arm64)
    inspected = json.loads(run_towline("inspect", image_id(arm64)).ok().stdout)
    assert inspected["platform"] == "linux/arm64/v8"
    arm = index.platforms["linux/arm/v7"]
    assert run_towline.pull(index.reference, "--platform=linux/arm/v7") == image_id(arm)


def test_all_tags_pulls_every_tag_and_prints_every_id(
    run_towline: TowlineCLI, registry: RegistryServer, tagged_repo: dict[str, str]
) -> None:
    result = run_towline(
        "pull", "-q", "--tls-verify=false", "--all-tags", f"{registry.host}/cli/tags"
    )
    assert result.ok().ids == [tagged_repo[tag] for tag in TAGS]
    names = {
        n
        for row in json.loads(run_towline("images", "--format", "json").stdout)
        for n in row["names"]
    }
    assert names == {f"{registry.host}/cli/tags:{tag}" for tag in TAGS}


def test_tls_verify_false_and_bare_tls_verify(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage]
) -> None:
    image = test_images["gzip"]
    host = image.reference.split("/")[0]
    # Bare --tls-verify means true (podman's flag), and NAME stays the image name:
    # the test registry speaks plain HTTP, so verified TLS must fail, naming the registry.
    for flag in ("--tls-verify", "--tls-verify=true"):
        message = run_towline("pull", "--retry", "0", flag, image.reference).error()
        assert host in message
    assert json.loads(run_towline("images", "--format", "json").stdout) == []
    result = run_towline("pull", "--tls-verify=false", "-q", image.reference).ok()
    assert result.stdout == image_id(image) + "\n"


def test_registries_conf_insecure_registry_and_search_registries(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage], tmp_path: Path
) -> None:
    image = test_images["gzip"]
    host = image.reference.split("/")[0]
    conf = tmp_path / "registries.conf"
    conf.write_text(
        f'unqualified-search-registries = ["{host}"]\n\n'
        f'[[registry]]\nlocation = "{host}"\ninsecure = true\n'
    )
    # A short name, resolved through the one search registry, which may use plain HTTP.
    result = run_towline("--registries-conf", str(conf), "pull", "test/gzip").ok()
    assert result.stdout == image_id(image) + "\n"
    assert f"Trying to pull {host}/test/gzip:latest..." in result.stderr.splitlines()


def test_root_option_wins_over_towline_root(
    run_towline: TowlineCLI, test_images: dict[str, PushedImage], tmp_path: Path
) -> None:
    image = test_images["gzip"]
    other = tmp_path / "other-store"
    run_towline("--root", str(other), "pull", "-q", "--tls-verify=false", image.reference).ok()
    listed = json.loads(run_towline("--root", str(other), "images", "--format=json").stdout)
    assert [row["id"] for row in listed] == [image_id(image)]
    assert json.loads(run_towline("images", "--format", "json").ok().stdout) == []


# === credentials


def test_basic_auth_with_creds(
    run_towline: TowlineCLI, basic_auth_registry: RegistryServer
) -> None:
    image = basic_auth_registry.pushed["gzip"]
    creds = f"{BASIC_USER}:{BASIC_PASSWORD}"
    assert run_towline.pull(image.reference, "--creds", creds) == image_id(image)


def test_basic_auth_with_an_authfile(
    run_towline: TowlineCLI, basic_auth_registry: RegistryServer, tmp_path: Path
) -> None:
    image = basic_auth_registry.pushed["gzip"]
    token = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {basic_auth_registry.host: {"auth": token}}}))
    assert run_towline.pull(image.reference, "--authfile", str(authfile)) == image_id(image)


def test_wrong_or_missing_credentials_fail_naming_the_registry(
    run_towline: TowlineCLI, basic_auth_registry: RegistryServer
) -> None:
    image = basic_auth_registry.pushed["gzip"]
    for creds in ("--creds=alice:wrong", "--creds=mallory:s3cret", None):
        args = ["pull", "--tls-verify=false", *([creds] if creds else []), image.reference]
        message = run_towline(*args).error()
        assert basic_auth_registry.host in message
        assert re.search(r"authenticat|credential|unauthorized", message, re.I), message
    assert json.loads(run_towline("images", "--format", "json").stdout) == []


def test_token_registry_anonymous_and_with_creds(
    run_towline: TowlineCLI, token_registry: RegistryServer, token_server: TokenServer
) -> None:
    public = token_registry.pushed["gzip"]
    private = token_registry.pushed["private-gzip"]
    assert run_towline.pull(public.reference) == image_id(public)
    message = run_towline("pull", "--tls-verify=false", private.reference).error()
    assert "private/gzip" in message
    assert run_towline.pull(private.reference, "--creds", "bob:hunter2") == image_id(private)
    assert any(r.account == "bob" for r in token_server.requests)
