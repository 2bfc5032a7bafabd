"""Credential lookup (libimage-pull.md §4.3): --creds, auth files, config.json, helpers."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from towline.config.credentials import (
    AuthFile,
    Credentials,
    auth_files,
    lookup_credentials,
    parse_creds,
)
from towline.config.paths import ConfigPaths
from towline.errors import ConfigError

HELPER = """#!/bin/sh
# A fake docker-credential helper: logs its argument and stdin, answers per host.
host=$(cat)
echo "$1 $host" >> "{log}"
case "$host" in
  reg.example.com) echo '{{"ServerURL":"reg.example.com","Username":"alice","Secret":"pw"}}' ;;
  token.example.com) echo '{{"Username":"<token>","Secret":"tok"}}' ;;
  broken.example.com) echo 'keychain locked'; exit 1 ;;
  garbage.example.com) echo 'not json' ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"""


class Env:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.root = tmp_path / "root"
        self.runtime = tmp_path / "run"
        self.runtime.mkdir()
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.log = tmp_path / "helper.log"
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}")
        self.add_helper("fake")

    def add_helper(self, name: str, text: str | None = None) -> None:
        path = self.bin / f"docker-credential-{name}"
        path.write_text(text if text is not None else HELPER.format(log=self.log))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def paths(self, **env: str) -> ConfigPaths:
        base = {"XDG_RUNTIME_DIR": str(self.runtime), "TOWLINE_CONFIG_ROOT": ""}
        return ConfigPaths.from_env({**base, **env}, home=self.home, uid=1000)

    def helper_calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    return Env(tmp_path, monkeypatch)


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


# === --creds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("user:pass", Credentials("user", "pass")),
        ("user:pa:ss", Credentials("user", "pa:ss")),
        ("user:", Credentials("user", "")),
    ],
)
def test_parse_creds(value: str, expected: Credentials) -> None:
    assert parse_creds(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "credentials can't be empty"),
        (":pass", "username can't be empty"),
        ("user", "has no password: use --creds user:password"),
    ],
)
def test_parse_creds_errors(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_creds(value)


def test_password_is_not_in_repr() -> None:
    assert "s3cret" not in repr(Credentials("u", "s3cret", "tok3n"))
    assert "tok3n" not in repr(Credentials("u", "s3cret", "tok3n"))


def test_explicit_creds_win(env: Env) -> None:
    write_json(env.runtime / "containers/auth.json", {"auths": {"quay.io": auth("a", "b")}})
    found = lookup_credentials("quay.io", "quay.io/x", env.paths(), creds="me:pw")
    assert found == Credentials("me", "pw")


# === auth files


def test_auth_file_order(env: Env) -> None:
    paths = env.paths()
    assert auth_files(paths) == [
        AuthFile(env.runtime / "containers/auth.json"),
        AuthFile(env.home / ".config/containers/auth.json"),
        AuthFile(env.home / ".docker/config.json"),
        AuthFile(env.home / ".dockercfg", legacy=True),
    ]
    write_json(env.home / ".docker/config.json", {"auths": {"quay.io": auth("docker", "1")}})
    assert lookup_credentials("quay.io", "quay.io/x", paths) == Credentials("docker", "1")
    write_json(env.home / ".config/containers/auth.json", {"auths": {"quay.io": auth("xdg", "2")}})
    assert lookup_credentials("quay.io", "quay.io/x", paths) == Credentials("xdg", "2")
    write_json(env.runtime / "containers/auth.json", {"auths": {"quay.io": auth("run", "3")}})
    assert lookup_credentials("quay.io", "quay.io/x", paths) == Credentials("run", "3")


def test_user_specified_file_is_the_only_one(env: Env, tmp_path: Path) -> None:
    write_json(env.runtime / "containers/auth.json", {"auths": {"quay.io": auth("run", "3")}})
    mine = write_json(tmp_path / "mine.json", {"auths": {"other.io": auth("x", "y")}})
    paths = env.paths(REGISTRY_AUTH_FILE=str(mine))
    assert lookup_credentials("quay.io", "quay.io/x", paths) is None
    assert lookup_credentials("other.io", "other.io/x", paths) == Credentials("x", "y")
    # The keyword argument overrides the environment's file.
    arg = write_json(tmp_path / "arg.json", {"auths": {"quay.io": auth("arg", "4")}})
    assert lookup_credentials("quay.io", "quay.io/x", paths, auth_file=arg) == Credentials(
        "arg", "4"
    )


def test_docker_config_env_means_only_that_file(env: Env, tmp_path: Path) -> None:
    write_json(env.runtime / "containers/auth.json", {"auths": {"quay.io": auth("run", "3")}})
    write_json(tmp_path / "dc/config.json", {"auths": {"quay.io": auth("dc", "5")}})
    paths = env.paths(DOCKER_CONFIG=str(tmp_path / "dc"))
    assert lookup_credentials("quay.io", "quay.io/x", paths) == Credentials("dc", "5")


def test_missing_runtime_dir_is_skipped_with_a_warning(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_json(env.home / ".docker/config.json", {"auths": {"quay.io": auth("docker", "1")}})
    paths = env.paths(XDG_RUNTIME_DIR=str(tmp_path / "missing"))
    with caplog.at_level(logging.WARNING):
        assert lookup_credentials("quay.io", "quay.io/x", paths) == Credentials("docker", "1")
    assert "directory set by $XDG_RUNTIME_DIR does not exist" in caplog.text


def test_key_trimming_prefers_the_longest_key(env: Env) -> None:
    write_json(
        env.runtime / "containers/auth.json",
        {
            "auths": {
                "quay.io": auth("host", "1"),
                "quay.io/ns": auth("ns", "2"),
                "quay.io/ns/repo": auth("repo", "3"),
            }
        },
    )
    paths = env.paths()
    assert lookup_credentials("quay.io", "quay.io/ns/repo", paths) == Credentials("repo", "3")
    assert lookup_credentials("quay.io", "quay.io/ns/other", paths) == Credentials("ns", "2")
    assert lookup_credentials("quay.io", "quay.io/else/x", paths) == Credentials("host", "1")
    with pytest.raises(ValueError, match="is not on registry"):
        lookup_credentials("quay.io", "ns/repo", paths)
    assert lookup_credentials("quay.io", "quay.io", paths) == Credentials("host", "1")
    assert lookup_credentials("other.io", "other.io/x", paths) is None


@pytest.mark.parametrize(
    "key", ["https://index.docker.io/v1/", "http://docker.io", "registry-1.docker.io"]
)
def test_docker_hub_keys_are_normalised(env: Env, key: str) -> None:
    write_json(env.home / ".docker/config.json", {"auths": {key: auth("hub", "pw")}})
    found = lookup_credentials("docker.io", "docker.io/library/alpine", env.paths())
    assert found == Credentials("hub", "pw")


def test_url_keys_match_their_host(env: Env) -> None:
    write_json(
        env.home / ".docker/config.json", {"auths": {"https://quay.io/v1/": auth("url", "1")}}
    )
    assert lookup_credentials("quay.io", "quay.io/x", env.paths()) == Credentials("url", "1")


def test_legacy_dockercfg(env: Env) -> None:
    legacy = env.home / ".dockercfg"
    write_json(legacy, {"https://quay.io/v1/": auth("legacy", "1"), "r.io": auth("plain", "2")})
    paths = env.paths()
    assert lookup_credentials("quay.io", "quay.io/x", paths) == Credentials("legacy", "1")
    assert lookup_credentials("r.io", "r.io/x/y", paths) == Credentials("plain", "2")


def test_entry_decoding(env: Env) -> None:
    nul_padded = base64.b64encode(b"user:pass\x00\x00").decode()
    write_json(
        env.runtime / "containers/auth.json",
        {
            "auths": {
                "nul.io": {"auth": nul_padded},
                "token.io": {**auth("u", "p"), "identitytoken": "refresh"},
                "empty.io": {},
                "nocolon.io": {"auth": base64.b64encode(b"justuser").decode()},
            }
        },
    )
    write_json(env.home / ".docker/config.json", {"auths": {"empty.io": auth("next", "file")}})
    paths = env.paths()
    assert lookup_credentials("nul.io", "nul.io/x", paths) == Credentials("user", "pass")
    assert lookup_credentials("token.io", "token.io/x", paths) == Credentials("u", "p", "refresh")
    # An empty entry (a helper marker in Docker's files) is skipped: the next file answers.
    assert lookup_credentials("empty.io", "empty.io/x", paths) == Credentials("next", "file")
    assert lookup_credentials("nocolon.io", "nocolon.io/x", paths) is None


def test_bad_base64_names_the_file(env: Env) -> None:
    path = write_json(env.runtime / "containers/auth.json", {"auths": {"q.io": {"auth": "@@@"}}})
    with pytest.raises(ConfigError) as info:
        lookup_credentials("q.io", "q.io/x", env.paths())
    assert str(path) in str(info.value)
    assert "base64" in str(info.value)


@pytest.mark.parametrize(
    "content", ["{not json", "", "[]", '{"auths": []}', '{"credHelpers": {"a": 1}}']
)
def test_bad_json_names_the_file(env: Env, content: str) -> None:
    path = env.home / ".config/containers/auth.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        lookup_credentials("q.io", "q.io/x", env.paths())
    assert f'reading JSON file "{path}"' in str(info.value)


@pytest.mark.parametrize(
    ("repo_name", "message"),
    [
        ("https://quay.io/x", "contains http[s]:// prefix"),
        ("quay.io/x@sha256:abc", "contains a '@' character"),
        ("quay.io/x:tag", "contains a ':' character after host[:port]"),
    ],
)
def test_invalid_keys(env: Env, repo_name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        lookup_credentials("quay.io", repo_name, env.paths())


def test_port_in_host_is_a_valid_key(env: Env) -> None:
    write_json(env.runtime / "containers/auth.json", {"auths": {"localhost:5000": auth("l", "p")}})
    found = lookup_credentials("localhost:5000", "localhost:5000/a/b", env.paths())
    assert found == Credentials("l", "p")


# === credential helpers


def test_cred_helpers_entry_runs_the_helper_with_the_host(env: Env) -> None:
    write_json(
        env.home / ".docker/config.json",
        {
            "auths": {"reg.example.com": auth("file", "ignored")},
            "credHelpers": {"reg.example.com": "fake", "token.example.com": "fake"},
        },
    )
    paths = env.paths()
    found = lookup_credentials("reg.example.com", "reg.example.com/ns/x", paths)
    assert found == Credentials("alice", "pw")
    token = lookup_credentials("token.example.com", "token.example.com/x", paths)
    assert token == Credentials("", "", identity_token="tok")
    assert env.helper_calls() == ["get reg.example.com", "get token.example.com"]


def test_helper_not_found_message_means_no_credentials(env: Env) -> None:
    write_json(env.home / ".docker/config.json", {"credHelpers": {"none.example.com": "fake"}})
    assert lookup_credentials("none.example.com", "none.example.com/x", env.paths()) is None


def test_failing_helper_is_an_error(env: Env) -> None:
    write_json(
        env.home / ".docker/config.json",
        {"credHelpers": {"broken.example.com": "fake", "garbage.example.com": "fake"}},
    )
    with pytest.raises(ConfigError, match="keychain locked"):
        lookup_credentials("broken.example.com", "broken.example.com/x", env.paths())
    with pytest.raises(ConfigError, match="invalid reply"):
        lookup_credentials("garbage.example.com", "garbage.example.com/x", env.paths())


def test_global_helpers_in_order(env: Env) -> None:
    write_json(
        env.runtime / "containers/auth.json", {"auths": {"reg.example.com": auth("file", "1")}}
    )
    paths = env.paths()
    helpers = ["fake", "containers-auth.json"]
    found = lookup_credentials("reg.example.com", "reg.example.com/x", paths, helpers=helpers)
    assert found == Credentials("alice", "pw")
    # The helper has nothing for this host, so the auth files answer.
    write_json(env.runtime / "containers/auth.json", {"auths": {"other.io": auth("file", "1")}})
    found = lookup_credentials("other.io", "other.io/x", paths, helpers=helpers)
    assert found == Credentials("file", "1")


def test_helper_errors_only_matter_when_nothing_is_found(env: Env) -> None:
    write_json(env.runtime / "containers/auth.json", {"auths": {"q.io": auth("file", "1")}})
    paths = env.paths()
    helpers = ["missing-helper", "containers-auth.json"]
    assert lookup_credentials("q.io", "q.io/x", paths, helpers=helpers) == Credentials("file", "1")
    with pytest.raises(ConfigError, match="docker-credential-missing-helper"):
        lookup_credentials("none.io", "none.io/x", paths, helpers=helpers)
    with pytest.raises(ConfigError, match=r"^errors looking up credentials: .*keychain locked"):
        lookup_credentials(
            "broken.example.com", "broken.example.com/x", paths, helpers=["missing-helper", "fake"]
        )
