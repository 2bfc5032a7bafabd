"""ConfigPaths.from_env: podman's default paths, env overrides, TOWLINE_CONFIG_ROOT."""

from __future__ import annotations

from pathlib import Path

import pytest

from towline.config.paths import ConfigPaths


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def test_defaults_without_environment(home: Path) -> None:
    paths = ConfigPaths.from_env({}, home=home, uid=1000)
    assert paths.registries_conf == Path("/etc/containers/registries.conf")
    assert not paths.registries_conf_explicit
    assert paths.registries_conf_dirs == (
        Path("/etc/containers/registries.conf.d"),
        home / ".config/containers/registries.conf.d",
    )
    assert paths.registries_conf_dir == home / ".config/containers/registries.conf.d"
    assert paths.short_name_alias_cache == home / ".cache/containers/short-name-aliases.conf"
    assert paths.auth_file is None
    assert paths.auth_primary == Path("/run/containers/1000/auth.json")
    assert paths.auth_runtime_dir is None
    assert paths.auth_xdg == home / ".config/containers/auth.json"
    assert paths.docker_config == home / ".docker/config.json"
    assert paths.docker_legacy_config == home / ".dockercfg"
    assert paths.cert_dir is None
    assert paths.certs_d_dirs == (
        home / ".config/containers/certs.d",
        Path("/etc/containers/certs.d"),
        Path("/etc/docker/certs.d"),
    )


def test_config_root_reroots_every_system_path(home: Path, root: Path) -> None:
    paths = ConfigPaths.from_env({"TOWLINE_CONFIG_ROOT": str(root)}, home=home, uid=0)
    assert paths.registries_conf == root / "etc/containers/registries.conf"
    assert paths.registries_conf_dirs[0] == root / "etc/containers/registries.conf.d"
    assert paths.short_name_alias_cache == root / "var/cache/containers/short-name-aliases.conf"
    assert paths.auth_primary == root / "run/containers/0/auth.json"
    assert paths.certs_d_dirs[1:] == (root / "etc/containers/certs.d", root / "etc/docker/certs.d")
    assert paths.containers_conf[:3] == (
        root / "usr/share/containers/containers.conf",
        root / "etc/containers/containers.conf",
        root / "etc/containers/containers.conf.d",
    )
    # Home-based paths are not re-rooted.
    assert paths.auth_xdg == home / ".config/containers/auth.json"


def test_home_comes_from_env_when_not_given(tmp_path: Path) -> None:
    paths = ConfigPaths.from_env({"HOME": str(tmp_path)}, uid=1000)
    assert paths.docker_legacy_config == tmp_path / ".dockercfg"


def test_environ_is_the_default_mapping(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("REGISTRY_AUTH_FILE", "/tmp/from-environ.json")
    paths = ConfigPaths.from_env(home=home, uid=1000)
    assert paths.auth_file == Path("/tmp/from-environ.json")


def test_user_registries_conf_replaces_system_file_and_dirs(home: Path, root: Path) -> None:
    user_conf = home / ".config/containers/registries.conf"
    user_conf.parent.mkdir(parents=True)
    user_conf.write_text("")
    paths = ConfigPaths.from_env({"TOWLINE_CONFIG_ROOT": str(root)}, home=home, uid=1000)
    assert paths.registries_conf == user_conf
    assert paths.registries_conf_dirs == (home / ".config/containers/registries.conf.d",)


@pytest.mark.parametrize(
    ("env", "keyword", "expected"),
    [
        ({"REGISTRIES_CONFIG_PATH": "/b.conf"}, None, "/b.conf"),
        (
            {"CONTAINERS_REGISTRIES_CONF": "/a.conf", "REGISTRIES_CONFIG_PATH": "/b"},
            None,
            "/a.conf",
        ),
        ({"CONTAINERS_REGISTRIES_CONF": "/a.conf"}, Path("/cli.conf"), "/cli.conf"),
    ],
)
def test_explicit_registries_conf(
    home: Path, env: dict[str, str], keyword: Path | None, expected: str
) -> None:
    paths = ConfigPaths.from_env(env, home=home, uid=1000, registries_conf=keyword)
    assert paths.registries_conf == Path(expected)
    assert paths.registries_conf_explicit
    # c/image still loads both drop-in directories with an explicit file.
    assert paths.registries_conf_dirs == (
        Path("/etc/containers/registries.conf.d"),
        home / ".config/containers/registries.conf.d",
    )


def test_alias_cache_follows_xdg_cache_home_for_rootless(home: Path, tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    paths = ConfigPaths.from_env(env, home=home, uid=1000)
    assert paths.short_name_alias_cache == tmp_path / "cache/containers/short-name-aliases.conf"
    assert ConfigPaths.from_env(env, home=home, uid=0).short_name_alias_cache == Path(
        "/var/cache/containers/short-name-aliases.conf"
    )
    override = tmp_path / "aliases.conf"
    paths = ConfigPaths.from_env(env, home=home, uid=1000, short_name_alias_cache=override)
    assert paths.short_name_alias_cache == override


def test_auth_file_precedence(home: Path) -> None:
    env = {"REGISTRY_AUTH_FILE": "/env/auth.json", "DOCKER_CONFIG": "/docker"}
    assert ConfigPaths.from_env(env, home=home).auth_file == Path("/env/auth.json")
    only_docker = {"DOCKER_CONFIG": "/docker"}
    paths = ConfigPaths.from_env(only_docker, home=home)
    assert paths.auth_file == Path("/docker/config.json")
    assert paths.docker_config == Path("/docker/config.json")
    cli = ConfigPaths.from_env(env, home=home, auth_file=Path("/cli.json"))
    assert cli.auth_file == Path("/cli.json")


def test_xdg_runtime_dir_and_config_home(home: Path, tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path / "run"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    paths = ConfigPaths.from_env(env, home=home, uid=1000)
    assert paths.auth_primary == tmp_path / "run/containers/auth.json"
    assert paths.auth_runtime_dir == tmp_path / "run"
    assert paths.auth_xdg == tmp_path / "cfg/containers/auth.json"
    assert paths.containers_conf[-2:] == (
        tmp_path / "cfg/containers/containers.conf",
        tmp_path / "cfg/containers/containers.conf.d",
    )


def test_config_root_wins_over_xdg_runtime_dir_like_c_image(
    home: Path, root: Path, tmp_path: Path
) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path / "run"), "TOWLINE_CONFIG_ROOT": str(root)}
    paths = ConfigPaths.from_env(env, home=home, uid=1000)
    assert paths.auth_primary == root / "run/containers/1000/auth.json"
    assert paths.auth_runtime_dir is None


def test_containers_conf_order_root_and_rootless(home: Path) -> None:
    as_root = ConfigPaths.from_env({}, home=home, uid=0)
    assert as_root.containers_conf == (
        Path("/usr/share/containers/containers.conf"),
        Path("/etc/containers/containers.conf"),
        Path("/etc/containers/containers.conf.d"),
        home / ".config/containers/containers.conf",
        home / ".config/containers/containers.conf.d",
    )
    rootless = ConfigPaths.from_env({}, home=home, uid=1000)
    assert rootless.containers_conf[3:6] == (
        Path("/etc/containers/containers.rootless.conf"),
        Path("/etc/containers/containers.rootless.conf.d"),
        Path("/etc/containers/containers.rootless.conf.d/1000"),
    )
    assert not rootless.containers_conf_explicit
    assert rootless.containers_conf_override is None


def test_containers_conf_env(home: Path) -> None:
    env = {"CONTAINERS_CONF": "/only.conf", "CONTAINERS_CONF_OVERRIDE": "/last.conf"}
    paths = ConfigPaths.from_env(env, home=home, uid=1000)
    assert paths.containers_conf == (Path("/only.conf"),)
    assert paths.containers_conf_explicit
    assert paths.containers_conf_override == Path("/last.conf")


def test_cert_dir_override(home: Path) -> None:
    paths = ConfigPaths.from_env({}, home=home, cert_dir=Path("/certs"))
    assert paths.cert_dir == Path("/certs")


def test_paths_are_frozen(home: Path) -> None:
    paths = ConfigPaths.from_env({}, home=home)
    with pytest.raises(AttributeError):
        paths.cert_dir = Path("/x")  # type: ignore[misc]
