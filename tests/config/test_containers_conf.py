"""containers.conf [engine] settings: file order, drop-ins, overrides, Go durations."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from towline.config.containers_conf import EngineSettings, load_engine_settings, parse_go_duration
from towline.config.paths import ConfigPaths
from towline.errors import ConfigError


class Layout:
    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "root"
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.usr = self.root / "usr/share/containers/containers.conf"
        self.etc = self.root / "etc/containers/containers.conf"
        self.etc_d = self.root / "etc/containers/containers.conf.d"
        self.rootless = self.root / "etc/containers/containers.rootless.conf"
        self.rootless_d = self.root / "etc/containers/containers.rootless.conf.d"
        self.user = self.home / ".config/containers/containers.conf"
        self.user_d = self.home / ".config/containers/containers.conf.d"

    def write(self, path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def load(self, uid: int = 1000, **env: str) -> EngineSettings:
        environ = {"TOWLINE_CONFIG_ROOT": str(self.root), **env}
        return load_engine_settings(ConfigPaths.from_env(environ, home=self.home, uid=uid))


@pytest.fixture
def fs(tmp_path: Path) -> Layout:
    return Layout(tmp_path)


def test_defaults_without_files(fs: Layout) -> None:
    settings = fs.load()
    assert settings == EngineSettings(
        retry=3, retry_delay=None, pull_policy="missing", image_parallel_copies=0
    )
    assert settings.max_parallel_downloads == 6


def test_later_files_override_earlier_keys(fs: Layout) -> None:
    fs.write(fs.usr, "[engine]\nretry = 1\npull_policy = 'always'\nimage_parallel_copies = 2\n")
    fs.write(fs.etc, "[engine]\nretry = 2\n")
    fs.write(fs.etc_d / "20-b.conf", "[engine]\nretry_delay = '2s'\n")
    fs.write(fs.etc_d / "10-a.conf", "[engine]\nretry_delay = '1s'\nretry = 5\n")
    fs.write(fs.etc_d / "30-c.conf.disabled", "[engine]\nretry = 99\n")
    fs.write(fs.etc_d / "sub/40.conf", "[engine]\nretry = 98\n")
    fs.write(fs.rootless, "[engine]\nimage_parallel_copies = 3\n")
    fs.write(fs.rootless_d / "1000/x.conf", "[engine]\npull_policy = 'IfNewer'\n")
    fs.write(fs.user, "[engine]\nimage_parallel_copies = 4\n[containers]\nlog_size_max = 1\n")
    settings = fs.load()
    assert settings == EngineSettings(
        retry=5, retry_delay=2.0, pull_policy="newer", image_parallel_copies=4
    )
    assert settings.max_parallel_downloads == 4


def test_rootless_files_are_ignored_for_root(fs: Layout) -> None:
    fs.write(fs.rootless, "[engine]\nretry = 7\n")
    fs.write(fs.rootless_d / "x.conf", "[engine]\nretry = 8\n")
    assert fs.load(uid=0).retry == 3
    assert fs.load(uid=1000).retry == 8


def test_user_drop_ins_come_last(fs: Layout) -> None:
    fs.write(fs.user, "[engine]\nretry = 1\n")
    fs.write(fs.user_d / "a.conf", "[engine]\nretry = 2\n")
    assert fs.load().retry == 2


def test_containers_conf_env_replaces_the_list(fs: Layout, tmp_path: Path) -> None:
    fs.write(fs.etc, "[engine]\nretry = 1\nimage_parallel_copies = 9\n")
    only = fs.write(tmp_path / "only.conf", "[engine]\nretry = 4\n")
    settings = fs.load(CONTAINERS_CONF=str(only))
    assert (settings.retry, settings.image_parallel_copies) == (4, 0)


def test_missing_containers_conf_env_file_is_an_error(fs: Layout, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"CONTAINERS_CONF file \".*nope.conf\" does not exist"):
        fs.load(CONTAINERS_CONF=str(tmp_path / "nope.conf"))


def test_override_env_is_merged_last(fs: Layout, tmp_path: Path) -> None:
    fs.write(fs.user, "[engine]\nretry = 1\n")
    override = fs.write(tmp_path / "override.conf", "[engine]\nretry = 6\n")
    assert fs.load(CONTAINERS_CONF_OVERRIDE=str(override)).retry == 6
    assert fs.load(CONTAINERS_CONF_OVERRIDE=str(tmp_path / "missing.conf")).retry == 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1s", 1.0), ("500ms", 0.5), ("1m30s", 90.0), ("0", 0.0), ("1.5h", 5400.0)],
)
def test_retry_delay(fs: Layout, value: str, seconds: float) -> None:
    fs.write(fs.etc, f"[engine]\nretry_delay = '{value}'\n")
    assert fs.load().retry_delay == pytest.approx(seconds)


def test_empty_retry_delay_means_unset(fs: Layout) -> None:
    fs.write(fs.etc, "[engine]\nretry_delay = '2s'\n")
    fs.write(fs.user, "[engine]\nretry_delay = ''\n")
    assert fs.load().retry_delay is None


def test_bad_retry_delay(fs: Layout) -> None:
    fs.write(fs.etc, "[engine]\nretry_delay = 'soon'\n")
    with pytest.raises(ConfigError) as info:
        fs.load()
    message = str(info.value)
    assert message.startswith(
        'failed to parse containers.conf retry_delay: time: invalid duration "soon"'
    )
    assert str(fs.etc) in message


def test_negative_retry_delay(fs: Layout) -> None:
    fs.write(fs.etc, "[engine]\nretry_delay = '-1s'\n")
    with pytest.raises(ConfigError, match="is negative"):
        fs.load()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("always", "always"),
        ("Missing", "missing"),
        ("ifmissing", "missing"),
        ("IfNotPresent", "missing"),
        ("", "missing"),
        ("newer", "newer"),
        ("ifnewer", "newer"),
        ("never", "never"),
    ],
)
def test_pull_policy(fs: Layout, value: str, expected: str) -> None:
    fs.write(fs.etc, f"[engine]\npull_policy = '{value}'\n")
    assert fs.load().pull_policy == expected


def test_bad_pull_policy(fs: Layout) -> None:
    fs.write(fs.etc, "[engine]\npull_policy = 'true'\n")
    with pytest.raises(ConfigError) as info:
        fs.load()
    assert str(info.value).startswith(
        'invalid pull type from containers.conf "true": unsupported pull policy "true"'
    )
    assert str(fs.etc) in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "[engine]\nretry = -1\n",
        "[engine]\nretry = 'three'\n",
        "[engine]\nretry = true\n",
        "[engine]\nimage_parallel_copies = 1.5\n",
        "[engine]\nretry_delay = 5\n",
        "engine = 3\n",
        "[engine\n",
    ],
)
def test_bad_values_name_the_file(fs: Layout, text: str) -> None:
    fs.write(fs.etc, text)
    with pytest.raises(ConfigError) as info:
        fs.load()
    assert str(info.value).startswith(f"decode configuration {fs.etc}: ")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("+5s", 5.0),
        ("-1.5h", -5400.0),
        ("1h2m3s", 3723.0),
        ("1.s", 1.0),
        (".5s", 0.5),
        ("100ns", 1e-7),
        ("3us", 3e-6),
        ("3\u00b5s", 3e-6),
        ("3\u03bcs", 3e-6),
        ("2562047h", 2562047 * 3600.0),
    ],
)
def test_parse_go_duration(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("s", 'time: invalid duration "s"'),
        (".s", 'time: invalid duration ".s"'),
        ("1", 'time: missing unit in duration "1"'),
        ("1.5.5s", 'time: missing unit in duration "1.5.5s"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("9999999999h", 'time: invalid duration "9999999999h"'),
    ],
)
def test_parse_go_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        parse_go_duration(text)
