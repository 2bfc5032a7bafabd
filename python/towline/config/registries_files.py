"""Reading registries.conf into a :class:`~towline.config.registries.RegistriesConf`.

:func:`load_registries_conf` reads the main file and the drop-ins (v1 files are
converted), validates them and merges them in c/image's order
(``updateWithConfigurationFrom``); errors name the file at fault.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from towline.config.paths import ConfigPaths
from towline.config.registries import (
    AUTH_FILE_HELPER,
    MIRROR_ALL,
    MIRROR_DIGEST_ONLY,
    MIRROR_TAG_ONLY,
    SHORT_NAME_MODES,
    Alias,
    Endpoint,
    RegistriesConf,
    Registry,
    parse_aliases,
)
from towline.errors import ConfigError
from towline.quoting import go_quote

__all__ = ["load_registries_conf"]


@dataclass
class _Partial:
    """One file's settings, or the merge so far; None means "not set in this file"."""

    registries: list[Registry] = field(default_factory=list)
    search: list[str] | None = None
    search_origin: str = ""
    helpers: list[str] | None = None
    mode: str = ""
    layer_store_helper: str = ""
    aliases: dict[str, Alias] = field(default_factory=dict)

    def update(self, later: _Partial) -> None:
        """Merge a later drop-in into this one (c/image ``updateWithConfigurationFrom``)."""
        by_prefix = {r.prefix: r for r in self.registries}
        by_prefix.update((r.prefix, r) for r in later.registries)
        self.registries = [by_prefix[prefix] for prefix in sorted(by_prefix)]
        if later.search is not None:
            # Even an empty list replaces the earlier one.
            self.search, self.search_origin = later.search, later.search_origin
        if later.helpers is not None:
            self.helpers = later.helpers
        self.mode = later.mode or self.mode
        self.layer_store_helper = later.layer_store_helper or self.layer_store_helper
        self.aliases.update(later.aliases)


def load_registries_conf(paths: ConfigPaths) -> RegistriesConf:
    """Load registries.conf and its drop-ins (libimage-pull.md §2.5) into one value.

    A missing main file is an empty configuration unless it was named
    explicitly. Drop-ins (``*.conf`` directly in each directory, in lexical
    order) must be v2. Raises :class:`ConfigError` naming the file at fault.
    """
    main = paths.registries_conf
    try:
        merged = _load_file(main, drop_in=False)
    except FileNotFoundError as exc:
        if paths.registries_conf_explicit:
            raise ConfigError(
                f"loading registries configuration {go_quote(str(main))}: the file does not "
                "exist; fix --registries-conf or $CONTAINERS_REGISTRIES_CONF"
            ) from exc
        merged = _Partial()
    for path in _drop_in_files(paths.registries_conf_dirs):
        try:
            merged.update(_load_file(path, drop_in=True))
        except FileNotFoundError:
            # Removed between listing and reading: an expected race, skipped as c/image does.
            _log.debug("registries.conf drop-in %s vanished while loading", path)
    conf_dir = paths.registries_conf_dir
    return RegistriesConf(
        registries=tuple(merged.registries),
        unqualified_search_registries=tuple(merged.search or ()),
        unqualified_search_registries_origin=merged.search_origin,
        credential_helpers=tuple(merged.helpers) if merged.helpers else (AUTH_FILE_HELPER,),
        short_name_mode=merged.mode or "permissive",
        additional_layer_store_auth_helper=merged.layer_store_helper,
        aliases=MappingProxyType(dict(merged.aliases)),
        conf_path=str(main),
        conf_dir_path=str(conf_dir) if conf_dir is not None else "",
    )


def _drop_in_files(directories: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for directory in directories:
        try:
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except FileNotFoundError:
            continue  # most systems have no registries.conf.d
        except OSError as exc:
            raise ConfigError(
                f"reading registries.conf.d {go_quote(str(directory))}: {exc}"
            ) from exc
        files += [Path(e.path) for e in entries if e.name.endswith(".conf") and not e.is_dir()]
    return files


def _load_file(path: Path, *, drop_in: bool) -> _Partial:
    """Parse and validate one file; FileNotFoundError passes through for the caller to judge."""
    label = f"loading {'drop-in ' if drop_in else ''}registries configuration"
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label} {go_quote(str(path))}: {exc}") from exc
    try:
        return _parse(tomllib.loads(text), str(path), drop_in=drop_in)
    except (tomllib.TOMLDecodeError, ConfigError) as exc:
        raise ConfigError(f"{label} {go_quote(str(path))}: {exc}") from exc


def _parse(data: dict[str, Any], origin: str, *, drop_in: bool) -> _Partial:
    """One file's TOML → validated settings, in c/image's ``loadConfigFile`` order."""
    _log_unknown(data, _TOP_KEYS, origin)
    v1 = _v1_lists(data)
    if v1 is not None:
        if drop_in:
            raise ConfigError("registry must be in v2 format but is in v1")
        if _has_v2(data):
            raise ConfigError("mixing sysregistry v1/v2 is not supported")
        data = _v1_to_v2(v1)
    tables = _typed(data, "registry", list, "") or []
    registries = [_registry(table, number, origin) for number, table in enumerate(tables, 1)]
    _check_conflicts(registries)
    search = _str_list(data, "unqualified-search-registries")
    if search is not None:
        search = [_search_entry(entry) for entry in search]
    # Within one file the first of several identical prefixes wins; the list is sorted.
    unique: dict[str, Registry] = {}
    for registry in registries:
        unique.setdefault(registry.prefix, registry)
    mode = _typed(data, "short-name-mode", str, "") or ""
    if mode and mode not in SHORT_NAME_MODES:
        raise ConfigError(f"invalid short-name mode: {go_quote(mode)}")
    for prefix in unique:
        if prefix.startswith("*.") and any(c in prefix for c in "/@:"):
            raise ConfigError(
                "Wildcarded prefix should be in the format: *.example.com. "
                f"Current prefix {go_quote(prefix)} is incorrectly formatted"
            )
    try:
        aliases = parse_aliases(_typed(data, "aliases", dict, "") or {}, origin)
    except ConfigError as exc:
        raise ConfigError(f"validating short-name aliases: {exc}") from exc
    return _Partial(
        registries=[unique[prefix] for prefix in sorted(unique)],
        search=search,
        search_origin=origin,
        helpers=_str_list(data, "credential-helpers"),
        mode=mode,
        layer_store_helper=_typed(data, "additional-layer-store-auth-helper", str, "") or "",
        aliases=aliases,
    )


def _registry(table: object, number: int, origin: str) -> Registry:
    """Normalise and check one ``[[registry]]`` (c/image ``postProcessRegistries``)."""
    where = f"in [[registry]] #{number} "
    if not isinstance(table, dict):
        raise ConfigError(f"registry {where}must be a table")
    _log_unknown(table, _REGISTRY_KEYS, origin)
    location = _parse_location(_typed(table, "location", str, where) or "")
    prefix = _typed(table, "prefix", str, where) or ""
    if not prefix:
        if not location:
            raise ConfigError("invalid condition: both location and prefix are unset")
        prefix = location
    else:
        prefix = _parse_location(prefix)
        if not prefix.startswith("*.") and not location:
            raise ConfigError(
                "invalid condition: location is unset and prefix is not in the format: "
                "*.example.com"
            )
    if _typed(table, "pull-from-mirror", str, where):
        raise ConfigError(
            f"pull-from-mirror must not be set for a non-mirror registry {go_quote(prefix)}"
        )
    by_digest = bool(_typed(table, "mirror-by-digest-only", bool, where))
    mirrors = []
    for mirror in _typed(table, "mirror", list, where) or []:
        if not isinstance(mirror, dict):
            raise ConfigError(f"mirror {where}must be a table")
        mirror_location = _parse_location(_typed(mirror, "location", str, where) or "")
        if not mirror_location:
            raise ConfigError("invalid condition: mirror location is unset")
        usage = _typed(mirror, "pull-from-mirror", str, where) or ""
        if by_digest and usage:
            raise ConfigError(
                "cannot set mirror usage mirror-by-digest-only for the registry "
                f"({go_quote(prefix)}) and pull-from-mirror for per-mirror "
                f"({go_quote(mirror_location)}) at the same time"
            )
        if usage and usage not in (MIRROR_ALL, MIRROR_DIGEST_ONLY, MIRROR_TAG_ONLY):
            raise ConfigError(
                f"unsupported pull-from-mirror value {go_quote(usage)} for mirror "
                f"{go_quote(mirror_location)}"
            )
        insecure = bool(_typed(mirror, "insecure", bool, where))
        mirrors.append(Endpoint(mirror_location, insecure, usage))
    return Registry(
        prefix=prefix,
        location=location,
        insecure=bool(_typed(table, "insecure", bool, where)),
        blocked=bool(_typed(table, "blocked", bool, where)),
        mirror_by_digest_only=by_digest,
        mirrors=tuple(mirrors),
        origin=origin,
    )


def _check_conflicts(registries: list[Registry]) -> None:
    """Entries sharing a location (or, without one, a prefix) must agree on insecure/blocked."""
    groups: dict[str, list[Registry]] = {}
    for registry in registries:
        groups.setdefault(registry.location or registry.prefix, []).append(registry)
    for registry in registries:
        for other in groups[registry.location or registry.prefix]:
            for setting in ("insecure", "blocked"):
                if getattr(registry, setting) != getattr(other, setting):
                    raise ConfigError(
                        f"registry '{registry.location}' is defined multiple times with "
                        f"conflicting '{setting}' setting"
                    )


def _parse_location(value: str) -> str:
    trimmed = value.rstrip("/")
    if trimmed.startswith(("http://", "https://")):
        raise ConfigError(f"invalid location '{value}': URI schemes are not supported")
    return trimmed


def _search_entry(value: str) -> str:
    entry = _parse_location(value)
    if not _DOMAIN_RE.fullmatch(entry):
        raise ConfigError(f"Invalid unqualified-search-registries entry {go_quote(entry)}")
    return entry


def _v1_lists(data: dict[str, Any]) -> dict[str, list[str]] | None:
    """The v1 ``[registries.search|insecure|block] registries = [...]`` lists, if any is set."""
    section = _typed(data, "registries", dict, "")
    if section is None:
        return None
    found: dict[str, list[str]] = {}
    for kind in ("search", "insecure", "block"):
        table = _typed(section, kind, dict, "in [registries] ")
        if table is not None:
            values = _str_list(table, "registries")
            if values is not None:
                found[kind] = values
    return found or None


def _has_v2(data: dict[str, Any]) -> bool:
    present = ("registry", "unqualified-search-registries", "credential-helpers", "aliases")
    return any(key in data for key in present) or bool(
        data.get("short-name-mode") or data.get("additional-layer-store-auth-helper")
    )


def _v1_to_v2(v1: dict[str, list[str]]) -> dict[str, Any]:
    """c/image ``ConvertToV2``: one ``[[registry]]`` per location, in first-seen order."""
    tables: dict[str, dict[str, Any]] = {}
    for kind, flag in (("block", "blocked"), ("insecure", "insecure")):
        for value in v1.get(kind, []):
            location = _parse_location(value)
            tables.setdefault(location, {"location": location, "prefix": location})[flag] = True
    converted: dict[str, Any] = {"registry": list(tables.values())}
    if "search" in v1:
        converted["unqualified-search-registries"] = v1["search"]
    return converted


_KIND_NAMES = {str: "a string", bool: "true or false", list: "an array", dict: "a table"}


def _typed(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    """``table[key]`` if present, after checking its TOML type; None when absent."""
    value = table.get(key)
    if value is not None and not isinstance(value, kind):
        raise ConfigError(f"{key} {where}must be {_KIND_NAMES[kind]}, not {value!r}")
    return value


def _str_list(table: Mapping[str, Any], key: str) -> list[str] | None:
    values = _typed(table, key, list, "")
    if values is None:
        return None
    if not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{key} must be an array of strings, not {values!r}")
    return [str(v) for v in values]


def _log_unknown(table: Mapping[str, Any], known: frozenset[str], origin: str) -> None:
    # c/image only debug-logs undecoded keys, so a newer file keeps working here.
    unknown = sorted(set(table) - known)
    if unknown:
        _log.debug("ignoring unknown keys %s in %s", unknown, origin)


_TOP_KEYS = frozenset(
    {
        "registry",
        "registries",
        "unqualified-search-registries",
        "credential-helpers",
        "short-name-mode",
        "additional-layer-store-auth-helper",
        "aliases",
    }
)
_REGISTRY_KEYS = frozenset(
    {"prefix", "location", "insecure", "blocked", "mirror-by-digest-only", "mirror"}
)
# distribution's anchored DomainRegexp: host (name or [IPv6]) with an optional :port.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?",
    re.ASCII,
)
_log = logging.getLogger(__name__)
