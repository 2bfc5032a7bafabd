"""registries.conf v2: ``[[registry]]`` matching, rewriting, mirrors and ``[aliases]``.

A :class:`RegistriesConf` (read from the files by
:func:`towline.config.registries_files.load_registries_conf`) answers which
``[[registry]]`` applies to a name (the longest prefix, wildcards included), how
a name is rewritten to a location, which endpoints a pull tries (mirrors, then
the primary), and whether a registry is blocked. The ``[aliases]`` table's rules
are here too, shared with the alias cache in :mod:`towline.config.shortnames`.

Behaviour and messages follow containers/image ``pkg/sysregistriesv2``
(libimage-pull.md §2.4, §2.5 and §3). Unlike c/image, nothing is cached per
process: callers keep the loaded value as long as they want it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

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
