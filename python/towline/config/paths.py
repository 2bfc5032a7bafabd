"""Every file and directory towline's configuration is read from, in one value.

The defaults are podman's (containers/image and containers/common), computed
from the environment once, in :meth:`ConfigPaths.from_env`. Each default can be
overridden by the same environment variables podman honours, or by keyword (the
CLI options). ``TOWLINE_CONFIG_ROOT`` re-roots every *system* path
(``/etc/containers/…``, ``/run/containers/…``, ``/var/cache/containers/…``,
``/usr/share/containers/…``), like c/image's ``RootForImplicitAbsolutePaths``;
paths under ``$HOME`` and the XDG directories are not re-rooted. Tests pass
``env`` and ``home`` explicitly, so they never read the host's files.

There is no signature-policy path: towline does not implement policy.json
(libimage-pull.md §5.7), so none is looked up.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ROOT_ENV", "ConfigPaths"]

#: The one towline-specific variable: a directory standing in for "/".
ROOT_ENV = "TOWLINE_CONFIG_ROOT"

_ETC_CONTAINERS = Path("/etc/containers")

#: Maps an absolute system path to its place under ``TOWLINE_CONFIG_ROOT``.
_Rerooter = Callable[[Path | str], Path]


@dataclass(frozen=True)
class ConfigPaths:
    """The configuration files towline reads, in the order it reads them.

    Registries:
        ``registries_conf`` is the main registries.conf; when
        ``registries_conf_explicit`` is true it was named by the user and a
        missing file is an error, otherwise a missing file means an empty
        configuration. ``registries_conf_dirs`` are the drop-in directories,
        loaded in order (libimage-pull.md §2.5).

    Short names:
        ``short_name_alias_cache`` is the machine-written alias cache (§2.4).

    containers.conf:
        ``containers_conf`` lists files and drop-in directories in merge order
        (a directory contributes its ``*.conf`` files, sorted).
        ``containers_conf_explicit`` is set by ``$CONTAINERS_CONF`` (then that
        file must exist and is the only one); ``containers_conf_override`` is
        ``$CONTAINERS_CONF_OVERRIDE``, merged last.

    Credentials (§4.3):
        ``auth_file`` is the user-specified file (``--authfile``,
        ``$REGISTRY_AUTH_FILE``, else ``$DOCKER_CONFIG/config.json``, as podman
        does); when set it is the only file read. Otherwise the files are
        ``auth_primary`` (skipped with a warning when ``auth_runtime_dir`` is set
        but missing), ``auth_xdg``, ``docker_config`` and the legacy
        ``docker_legacy_config``.

    TLS (§4.1):
        ``cert_dir`` (``--cert-dir``) is used as-is for every host; otherwise the
        first existing ``<dir>/<host:port>`` of ``certs_d_dirs`` is used.
    """

    registries_conf: Path
    registries_conf_explicit: bool
    registries_conf_dirs: tuple[Path, ...]
    short_name_alias_cache: Path
    containers_conf: tuple[Path, ...]
    containers_conf_explicit: bool
    containers_conf_override: Path | None
    auth_file: Path | None
    auth_primary: Path
    auth_runtime_dir: Path | None
    auth_xdg: Path
    docker_config: Path
    docker_legacy_config: Path
    cert_dir: Path | None
    certs_d_dirs: tuple[Path, ...]

    @property
    def registries_conf_dir(self) -> Path | None:
        """The drop-in directory named in messages (c/image's ``ConfigDirPath``): the last one."""
        return self.registries_conf_dirs[-1] if self.registries_conf_dirs else None

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        home: Path | None = None,
        uid: int | None = None,
        registries_conf: Path | None = None,
        auth_file: Path | None = None,
        cert_dir: Path | None = None,
        short_name_alias_cache: Path | None = None,
    ) -> ConfigPaths:
        """Compute podman's default paths from ``env`` (default: ``os.environ``).

        ``home`` defaults to ``$HOME`` from ``env``, then the user's home
        directory; ``uid`` defaults to the process's. The keyword paths are the
        CLI options and win over the environment.
        """
        environ: Mapping[str, str] = os.environ if env is None else env
        home_dir = home if home is not None else _home(environ)
        user_id = os.getuid() if uid is None else uid
        root = Path(environ[ROOT_ENV]) if environ.get(ROOT_ENV) else None

        def system(path: Path | str) -> Path:
            # Re-root an absolute system path, as RootForImplicitAbsolutePaths does.
            path = Path(path)
            return root / path.relative_to("/") if root is not None else path

        xdg_config = _env_path(environ, "XDG_CONFIG_HOME") or home_dir / ".config"
        xdg_cache = _env_path(environ, "XDG_CACHE_HOME") or home_dir / ".cache"
        runtime_dir = _env_path(environ, "XDG_RUNTIME_DIR")
        docker_config_dir = _env_path(environ, "DOCKER_CONFIG")

        reg_conf, reg_explicit, reg_dirs = _registries_conf(
            environ, registries_conf, home_dir, system
        )
        conf_files, conf_explicit = _containers_conf(environ, xdg_config, user_id, system)

        if short_name_alias_cache is None:
            # Root (EUID 0) shares one system-wide cache; rootless users keep their own.
            short_name_alias_cache = (
                system("/var/cache/containers/short-name-aliases.conf")
                if user_id == 0
                else xdg_cache / "containers" / "short-name-aliases.conf"
            )

        if auth_file is None:
            auth_file = _env_path(environ, "REGISTRY_AUTH_FILE")
        if auth_file is None and docker_config_dir is not None:
            # podman (c/common pkg/auth) reads only $DOCKER_CONFIG/config.json when set.
            auth_file = docker_config_dir / "config.json"

        # c/image: with RootForImplicitAbsolutePaths the per-UID file under the root
        # wins over $XDG_RUNTIME_DIR.
        if root is None and runtime_dir is not None:
            auth_primary = runtime_dir / "containers" / "auth.json"
            auth_runtime_dir: Path | None = runtime_dir
        else:
            auth_primary = system(f"/run/containers/{user_id}/auth.json")
            auth_runtime_dir = None

        return cls(
            registries_conf=reg_conf,
            registries_conf_explicit=reg_explicit,
            registries_conf_dirs=reg_dirs,
            short_name_alias_cache=short_name_alias_cache,
            containers_conf=conf_files,
            containers_conf_explicit=conf_explicit,
            containers_conf_override=_env_path(environ, "CONTAINERS_CONF_OVERRIDE"),
            auth_file=auth_file,
            auth_primary=auth_primary,
            auth_runtime_dir=auth_runtime_dir,
            auth_xdg=xdg_config / "containers" / "auth.json",
            docker_config=(docker_config_dir or home_dir / ".docker") / "config.json",
            docker_legacy_config=home_dir / ".dockercfg",
            cert_dir=cert_dir,
            certs_d_dirs=(
                # c/image uses $HOME/.config here, not $XDG_CONFIG_HOME.
                home_dir / ".config" / "containers" / "certs.d",
                system("/etc/containers/certs.d"),
                system("/etc/docker/certs.d"),
            ),
        )


def _home(environ: Mapping[str, str]) -> Path:
    value = environ.get("HOME")
    return Path(value) if value else Path.home()


def _env_path(environ: Mapping[str, str], name: str) -> Path | None:
    value = environ.get(name)
    return Path(value) if value else None


def _registries_conf(
    environ: Mapping[str, str],
    override: Path | None,
    home: Path,
    system: _Rerooter,
) -> tuple[Path, bool, tuple[Path, ...]]:
    """registries.conf and its drop-in dirs, as c/image's ``newConfigWrapperWithHomeDir``."""
    user_file = home / ".config" / "containers" / "registries.conf"
    user_dir = home / ".config" / "containers" / "registries.conf.d"
    system_dir = system(_ETC_CONTAINERS / "registries.conf.d")
    # libimage sets SystemRegistriesConfPath from these two variables, in this order.
    explicit = (
        override
        or _env_path(environ, "CONTAINERS_REGISTRIES_CONF")
        or _env_path(environ, "REGISTRIES_CONFIG_PATH")
    )
    if explicit is not None:
        return explicit, True, (system_dir, user_dir)
    if user_file.exists():
        # A per-user registries.conf replaces the system file *and* the system drop-ins.
        return user_file, False, (user_dir,)
    return system(_ETC_CONTAINERS / "registries.conf"), False, (system_dir, user_dir)


def _containers_conf(
    environ: Mapping[str, str], xdg_config: Path, uid: int, system: _Rerooter
) -> tuple[tuple[Path, ...], bool]:
    """containers.conf files and drop-in dirs in merge order (c/common ``systemConfigs``)."""
    explicit = _env_path(environ, "CONTAINERS_CONF")
    if explicit is not None:
        return (explicit,), True
    etc_conf = system(_ETC_CONTAINERS / "containers.conf")
    sources = [
        system("/usr/share/containers/containers.conf"),
        etc_conf,
        etc_conf.with_name("containers.conf.d"),
    ]
    if uid > 0:
        rootless = system(_ETC_CONTAINERS / "containers.rootless.conf")
        rootless_dir = rootless.with_name("containers.rootless.conf.d")
        sources += [rootless, rootless_dir, rootless_dir / str(uid)]
    user_conf = xdg_config / "containers" / "containers.conf"
    sources += [user_conf, user_conf.with_name("containers.conf.d")]
    return tuple(sources), False
