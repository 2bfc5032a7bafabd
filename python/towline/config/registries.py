"""registries.conf v2: loading, merging, ``[[registry]]`` matching, rewriting and mirrors.

:func:`load_registries_conf` reads the main file and the drop-ins (v1 files are
converted), validates them and merges them into one :class:`RegistriesConf`.
That value answers which ``[[registry]]`` applies to a name (the longest
prefix, wildcards included), how a name is rewritten to a location, which
endpoints a pull tries (mirrors, then the primary), and whether a registry is
blocked. The ``[aliases]`` table's rules are here too, shared with the alias
cache in :mod:`towline.config.shortnames`.

Behaviour and messages follow containers/image ``pkg/sysregistriesv2``
(libimage-pull.md §2.4, §2.5 and §3). Unlike c/image, nothing is cached per
process: callers keep the loaded value as long as they want it.
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
from towline.errors import ConfigError, InvalidReferenceError, TransportError
from towline.quoting import go_quote
from towline.reference import (
    Reference,
    is_short_name,
    parse_named_strict,
    parse_normalized_named,
)

__all__ = [
    "AUTH_FILE_HELPER",
    "MIRROR_ALL",
    "MIRROR_DIGEST_ONLY",
    "MIRROR_TAG_ONLY",
    "SHORT_NAME_MODES",
    "Alias",
    "Endpoint",
    "PullSource",
    "RegistriesConf",
    "Registry",
    "check_short_name",
    "load_registries_conf",
    "match_prefix",
    "parse_alias_value",
    "parse_aliases",
]

#: The credential-helpers entry that means "read the auth.json files".
AUTH_FILE_HELPER = "containers-auth.json"
#: ``pull-from-mirror`` values.
MIRROR_ALL = "all"
MIRROR_DIGEST_ONLY = "digest-only"
MIRROR_TAG_ONLY = "tag-only"
#: Valid ``short-name-mode`` values.
SHORT_NAME_MODES = ("enforcing", "permissive", "disabled")


@dataclass(frozen=True)
class Endpoint:
    """One place a registry's images can be fetched from: the primary or a mirror.

    ``location`` may be empty only for a wildcard-prefix registry (no rewrite).
    ``pull_from_mirror`` is ``""``, ``"all"``, ``"digest-only"`` or ``"tag-only"``,
    and is only allowed on mirrors.
    """

    location: str
    insecure: bool = False
    pull_from_mirror: str = ""


@dataclass(frozen=True)
class PullSource:
    """A reference to try, rewritten for one endpoint, and whether TLS is optional there."""

    reference: Reference
    insecure: bool
    mirror: bool = False


@dataclass(frozen=True)
class Registry:
    """One ``[[registry]]`` table, normalised (trailing ``/`` trimmed, prefix defaulted).

    ``origin`` is the file that defined it, for messages.
    """

    prefix: str
    location: str = ""
    insecure: bool = False
    blocked: bool = False
    mirror_by_digest_only: bool = False
    mirrors: tuple[Endpoint, ...] = ()
    origin: str = field(default="", compare=False)

    @property
    def endpoint(self) -> Endpoint:
        """The primary location as an :class:`Endpoint`."""
        return Endpoint(self.location, self.insecure)

    def pull_sources(self, ref: Reference) -> list[PullSource]:
        """The endpoints to try for ``ref``: usable mirrors in config order, then the primary.

        ``mirror-by-digest-only`` uses mirrors only for digest references;
        otherwise each mirror's ``pull-from-mirror`` decides (``digest-only``
        skips tag references, ``tag-only`` skips digest references).
        """
        digested = ref.digest is not None
        if self.mirror_by_digest_only:
            mirrors = self.mirrors if digested else ()
        else:
            mirrors = tuple(m for m in self.mirrors if _mirror_applies(m, digested))
        sources = [
            PullSource(self._rewrite(ref, m.location), m.insecure, mirror=True) for m in mirrors
        ]
        sources.append(PullSource(self._rewrite(ref, self.location), self.insecure))
        return sources

    def _rewrite(self, ref: Reference, location: str) -> Reference:
        """Replace the part of ``ref`` matched by the prefix with ``location``."""
        text = str(ref)
        matched = match_prefix(text, self.prefix)
        if matched == -1:
            raise ConfigError(f"invalid prefix '{self.prefix}' for reference '{text}'")
        if not location:
            # Only a wildcard prefix may leave the location empty: the name stays as is.
            return ref
        rewritten = location + text[matched:]
        try:
            return parse_named_strict(rewritten)
        except InvalidReferenceError as exc:
            raise ConfigError(
                f"rewriting reference: {exc}; check the [[registry]] with prefix "
                f"{go_quote(self.prefix)} in {self.origin or 'registries.conf'}"
            ) from exc


def _mirror_applies(mirror: Endpoint, digested: bool) -> bool:
    if mirror.pull_from_mirror == MIRROR_DIGEST_ONLY:
        return digested
    if mirror.pull_from_mirror == MIRROR_TAG_ONLY:
        return not digested
    return True


@dataclass(frozen=True)
class Alias:
    """A short-name alias: ``value`` is None when a later file erased it with ``""``."""

    value: Reference | None
    origin: str


@dataclass(frozen=True)
class RegistriesConf:
    """The merged registries.conf and drop-ins.

    ``registries`` is sorted by prefix. ``unqualified_search_registries_origin``
    is the file that last set the search list (empty when no file did), used
    in messages. ``conf_path`` and ``conf_dir_path`` are the main file and the
    drop-in directory named in the "blocked" message.
    """

    registries: tuple[Registry, ...] = ()
    unqualified_search_registries: tuple[str, ...] = ()
    unqualified_search_registries_origin: str = ""
    credential_helpers: tuple[str, ...] = (AUTH_FILE_HELPER,)
    short_name_mode: str = "permissive"
    additional_layer_store_auth_helper: str = ""
    aliases: Mapping[str, Alias] = field(default_factory=lambda: MappingProxyType({}))
    conf_path: str = ""
    conf_dir_path: str = ""

    def find_registry(self, ref_name: str) -> Registry | None:
        """The ``[[registry]]`` whose prefix is the longest match for ``ref_name``, or None.

        ``ref_name`` is a host, a namespace, a repository (``Reference.name``) or a
        full reference string; it must start with an explicit host.
        """
        best: Registry | None = None
        for registry in self.registries:
            if match_prefix(ref_name, registry.prefix) != -1 and (
                best is None or len(registry.prefix) > len(best.prefix)
            ):
                best = registry
        return best

    def pull_sources(self, ref: Reference) -> list[PullSource]:
        """Where to pull ``ref`` from, in order; just ``ref`` itself when no registry matches."""
        registry = self.find_registry(ref.name)
        if registry is None:
            return [PullSource(ref, insecure=False)]
        return registry.pull_sources(ref)

    def is_blocked(self, ref_name: str) -> bool:
        """True when the registry matching ``ref_name`` (a physical endpoint) is blocked."""
        registry = self.find_registry(ref_name)
        return registry is not None and registry.blocked

    def is_insecure(self, ref_name: str) -> bool:
        """True when registries.conf lets ``ref_name`` skip TLS verification (and use HTTP)."""
        registry = self.find_registry(ref_name)
        return registry is not None and registry.insecure

    def check_not_blocked(self, ref_name: str) -> None:
        """Raise :class:`TransportError` if ``ref_name``'s registry is blocked.

        Checked per physical endpoint, as c/image does, so a mirror of a blocked
        registry is still used when the mirror's own name is not blocked.
        """
        registry = self.find_registry(ref_name)
        if registry is not None and registry.blocked:
            raise TransportError(
                f"registry {registry.prefix} is blocked in {self.conf_path} or "
                f"{self.conf_dir_path}",
                slug="registry_blocked",
            )

    def lookup_alias(self, name: str) -> Alias | None:
        """The alias entry for a tag-less short ``name``, or None when no file defines one."""
        return self.aliases.get(name)


def match_prefix(ref: str, prefix: str) -> int:
    """How much of ``ref`` a registries.conf ``prefix`` matches, or -1 (``refMatchingPrefix``).

    A plain prefix matches itself, or a longer ``ref`` continuing with ``:``, ``/``
    or ``@`` (so ``example.com:5000`` matches ``example.com``, a c/image quirk
    kept on purpose). ``*.example.com`` matches when ``.example.com`` occurs in
    the host part and is followed by the end, ``:``, ``/`` or ``@``; the match
    length is then the end of that host suffix, so a ``:port`` survives a rewrite.
    """
    if prefix.startswith("*."):
        suffix = prefix[1:]
        index = ref.find(suffix)
        if index == -1 or "/" in ref[:index]:
            return -1
        end = index + len(suffix)
        return end if end == len(ref) or ref[end] in ":/@" else -1
    if ref == prefix:
        return len(prefix)
    if len(ref) > len(prefix) and ref.startswith(prefix) and ref[len(prefix)] in ":/@":
        return len(prefix)
    return -1


# === [aliases]


def check_short_name(name: str) -> None:
    """Raise :class:`ConfigError` unless ``name`` may be an alias key.

    A key must be a short name (no registry) without tag or digest.
    """
    try:
        ref = parse_normalized_named(name)
    except InvalidReferenceError as exc:
        raise ConfigError(f"cannot parse short name: {go_quote(name)}: {exc}") from exc
    if ref.digest is not None:
        raise ConfigError(f"invalid short name {go_quote(name)}: must not contain digest")
    if ref.tag is not None:
        raise ConfigError(f"invalid short name {go_quote(name)}: must not contain tag")
    if not is_short_name(name):
        raise ConfigError(f"invalid short name {go_quote(name)}: must not contain registry")


def parse_alias_value(value: str) -> Reference:
    """Parse an alias target: it needs a registry and no tag or digest; docker.io is normalised."""
    try:
        ref = parse_normalized_named(value)
    except InvalidReferenceError as exc:
        raise ConfigError(f"parsing alias {go_quote(value)}: {exc}") from exc
    if ref.digest is not None:
        raise ConfigError(f"invalid alias {go_quote(value)}: must not contain digest")
    if ref.tag is not None:
        raise ConfigError(f"invalid alias {go_quote(value)}: must not contain tag")
    if is_short_name(value):
        raise ConfigError(f"invalid alias {go_quote(value)}: must contain registry and repository")
    return ref


def parse_aliases(table: Mapping[str, object], origin: str) -> dict[str, Alias]:
    """Validate an ``[aliases]`` table; every bad entry is reported at once, joined by "; ".

    An empty value erases an alias from an earlier file (``Alias.value`` is None).
    """
    aliases: dict[str, Alias] = {}
    problems: list[str] = []
    for name, value in table.items():
        try:
            check_short_name(name)
        except ConfigError as exc:
            problems.append(str(exc))
        if not isinstance(value, str):
            problems.append(f"alias {go_quote(name)} must be a string")
        elif not value:
            aliases[name] = Alias(None, origin)
        else:
            try:
                aliases[name] = Alias(parse_alias_value(value), origin)
            except ConfigError as exc:
                problems.append(str(exc))
    if problems:
        raise ConfigError("; ".join(problems))
    return aliases


# === loading and merging


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
