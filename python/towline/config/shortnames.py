"""Short-name resolution: aliases, unqualified-search registries, and the alias cache.

:func:`resolve` turns a name the user typed into the fully-qualified
candidates a pull tries, in order (libimage-pull.md §2.2);
:func:`resolve_locally` gives the candidates a local lookup tries (§2.3).
:class:`AliasCache` is the machine-written ``short-name-aliases.conf`` (§2.4),
which outranks the aliases in registries.conf.

Behaviour and messages follow containers/image ``pkg/shortnames`` and
``pkg/sysregistriesv2/shortnames.go``. The one deliberate difference: towline
never prompts. Where podman would show a selection on a TTY, ``enforcing``
mode fails with a message asking for a fully-qualified name or an alias, and
``permissive`` mode tries every candidate, as it does without a TTY.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from towline.config.registries import (
    SHORT_NAME_MODES,
    Alias,
    RegistriesConf,
    check_short_name,
    parse_alias_value,
    parse_aliases,
)
from towline.errors import ConfigError, InvalidReferenceError, ShortNameError
from towline.quoting import go_quote
from towline.reference import DEFAULT_TAG, Reference, is_short_name, parse_normalized_named

__all__ = ["AliasCache", "Resolution", "resolve", "resolve_locally"]


@dataclass(frozen=True)
class Resolution:
    """The outcome of resolving a name for a pull.

    ``candidates`` are tried in order until one pulls. ``description`` is the
    line podman prints before the first pull attempt (None: print nothing).
    ``record`` says the single candidate was chosen by the user and should be
    written to the alias cache after a successful pull; as towline never
    prompts it is always False today, but callers honour it through
    :meth:`record_alias`. ``short_name`` is the tag-less short name typed.
    """

    candidates: list[Reference]
    description: str | None
    record: bool = False
    short_name: str | None = None

    def record_alias(self, pulled: Reference, cache: AliasCache) -> bool:
        """After ``pulled`` was pulled, store ``short_name = pulled.name`` if ``record`` is set.

        Returns whether an alias was written.
        """
        if not self.record or self.short_name is None:
            return False
        cache.add(self.short_name, pulled.name)
        return True


def resolve(
    name: str,
    conf: RegistriesConf,
    *,
    mode: str | None = None,
    alias_cache: AliasCache | None = None,
    is_tty: bool,
) -> Resolution:
    """Resolve ``name`` into pull candidates (c/image ``shortnames.Resolve``).

    ``mode`` overrides registries.conf's ``short-name-mode``. ``alias_cache``
    is consulted before registries.conf aliases (None: no cache). ``is_tty``
    is whether stdin and stdout are both terminals. A name with a registry is
    returned as its one candidate (docker.io-normalised, ``:latest`` added).

    Raises :class:`ShortNameError` when the name cannot be resolved, and
    :class:`InvalidReferenceError` when it does not parse.
    """
    mode = conf.short_name_mode if mode is None else mode
    if mode not in SHORT_NAME_MODES:
        raise ShortNameError(f"unsupported short-name mode ({mode})")
    ref = _parse_input(name)
    if not is_short_name(name):
        return Resolution([_with_default_tag(ref)], None)

    repo = _repo_of(name)
    alias = _lookup_alias(repo, conf, alias_cache)
    if alias is not None and alias.value is not None:
        # An alias always wins: no search registries, nothing recorded.
        return Resolution(
            [_with_default_tag(_reapply(alias.value, ref))],
            f"Resolved {go_quote(repo)} as an alias ({alias.origin})",
            short_name=repo,
        )

    registries = conf.unqualified_search_registries
    origin = conf.unqualified_search_registries_origin
    if not registries:
        where = (
            f"are defined in {go_quote(origin)}"
            if origin
            else "are defined and no containers-registries.conf(5) was found"
        )
        raise ShortNameError(
            f"short-name {go_quote(name)} did not resolve to an alias and no "
            f"unqualified-search registries {where}"
        )
    candidates = _search_candidates(name, registries)
    description = f"Resolving {go_quote(repo)} using unqualified-search registries ({origin})"
    if mode == "disabled" or len(candidates) == 1:
        return Resolution(candidates, description, short_name=repo)
    if not is_tty:
        if mode == "enforcing":
            raise ShortNameError("short-name resolution enforced but cannot prompt without a TTY")
        return Resolution(candidates, description, short_name=repo)
    # podman prompts here ("Please select an image") and records the choice as an
    # alias. towline has no prompt: enforcing asks the user to be explicit, and
    # permissive tries every candidate, as without a TTY.
    if mode == "enforcing":
        choices = ", ".join(str(c) for c in candidates)
        raise ShortNameError(
            f"short-name {go_quote(name)} is ambiguous ({choices}) and short-name-mode is "
            f"enforcing: use a fully-qualified name such as {candidates[0]}, or add an "
            f"alias for {go_quote(repo)} to registries.conf"
        )
    return Resolution(candidates, description, short_name=repo)


def resolve_locally(
    name: str, conf: RegistriesConf, alias_cache: AliasCache | None = None
) -> list[Reference]:
    """The names a local lookup of ``name`` tries, in order (c/image ``ResolveLocally``).

    For a short name: its alias (tag/digest re-applied), ``localhost/<name>``,
    then each unqualified-search registry; every candidate gets ``:latest``
    when it has neither tag nor digest. Other names are their own candidate.
    """
    ref = _parse_input(name)
    if not is_short_name(name):
        return [_with_default_tag(ref)]
    candidates: list[Reference] = []
    alias = _lookup_alias(_repo_of(name), conf, alias_cache)
    if alias is not None and alias.value is not None:
        candidates.append(_with_default_tag(_reapply(alias.value, ref)))
    # localhost outranks the search registries for local lookups (never for pulls).
    registries = ("localhost", *conf.unqualified_search_registries)
    return candidates + _search_candidates(name, registries)


def _parse_input(name: str) -> Reference:
    try:
        return parse_normalized_named(name)
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(f"cannot parse input: {go_quote(name)}: {exc}") from exc


def _repo_of(short_name: str) -> str:
    """The short name without tag or digest, as typed (``library/fedora:1`` → ``library/fedora``).

    A short name has no registry, so any ``:`` left of the digest starts the tag.
    """
    return short_name.partition("@")[0].partition(":")[0]


def _lookup_alias(repo: str, conf: RegistriesConf, cache: AliasCache | None) -> Alias | None:
    if cache is not None:
        alias = cache.lookup(repo)
        if alias is not None:
            return alias
    return conf.lookup_alias(repo)


def _reapply(value: Reference, typed: Reference) -> Reference:
    """Put the user's tag and digest back on an alias target."""
    if typed.tag is not None:
        value = value.with_tag(typed.tag)
    if typed.digest is not None:
        value = value.with_digest(typed.digest)
    return value


def _with_default_tag(ref: Reference) -> Reference:
    if ref.tag is None and ref.digest is None:
        return ref.with_tag(DEFAULT_TAG)
    return ref


def _search_candidates(name: str, registries: tuple[str, ...]) -> list[Reference]:
    """``<registry>/<name>`` for each registry, docker.io-normalised, tag/digest kept."""
    candidates = []
    for registry in registries:
        try:
            candidates.append(_with_default_tag(parse_normalized_named(f"{registry}/{name}")))
        except InvalidReferenceError as exc:
            raise ShortNameError(
                f"creating reference with unqualified-search registry {go_quote(registry)}: {exc}"
            ) from exc
    return candidates


# === the alias cache

# fcntl locks are per process; this orders the threads of this process.
_THREAD_LOCK = threading.Lock()
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class AliasCache:
    """The machine-written short-name alias file (``short-name-aliases.conf``).

    TOML with one ``[aliases]`` table. Reads take a shared and writes an
    exclusive ``fcntl`` lock on ``<path>.lock``; the directory is created 0700
    and the file written 0600, replaced atomically.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def lock_path(self) -> Path:
        """The lock file next to the cache."""
        return self.path.with_name(self.path.name + ".lock")

    def load(self) -> dict[str, Alias]:
        """Read and validate the cache; a missing file is an empty cache."""
        if not self.path.exists():
            # Nothing to lock: writers replace the file atomically, and reads must
            # not create directories in a fresh home.
            return {}
        with self._locked(exclusive=False):
            return self._read()[1]

    def lookup(self, name: str) -> Alias | None:
        """The cached alias for the tag-less short ``name``, or None."""
        return self.load().get(name)

    def add(self, name: str, value: Reference | str) -> None:
        """Store ``name = value``, replacing any cached alias for ``name``.

        ``name`` must be a short name and ``value`` a name with a registry, both
        without tag or digest (docker.io values are normalised). Raises
        :class:`ShortNameError` otherwise.
        """
        self._check_name(name)
        try:
            target = parse_alias_value(str(value))
        except ConfigError as exc:
            raise ShortNameError(str(exc)) from exc
        self._edit(name, target.name)

    def remove(self, name: str) -> None:
        """Remove a cached alias; aliases from registries.conf cannot be removed here."""
        self._check_name(name)
        self._edit(name, None)

    @staticmethod
    def _check_name(name: str) -> None:
        if not is_short_name(name):
            raise ShortNameError(f"{go_quote(name)} is not a short name")
        try:
            check_short_name(name)
        except ConfigError as exc:
            raise ShortNameError(str(exc)) from exc

    def _edit(self, name: str, value: str | None) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._locked(exclusive=True):
            raw, _ = self._read()
            if value is not None:
                raw[name] = value
            elif name in raw:
                del raw[name]
            else:
                raise ShortNameError(
                    f"short-name alias {go_quote(name)} not found in {go_quote(str(self.path))}: "
                    "please check registries.conf files"
                )
            self._write(raw)

    def _read(self) -> tuple[dict[str, str], dict[str, Alias]]:
        """The raw table and its validated form; errors name the file."""
        where = f"loading short-name aliases config file {go_quote(str(self.path))}"
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, {}
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{where}: {exc}; fix or delete the file") from exc
        table = data.get("aliases", {})
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise ConfigError(f"{where}: [aliases] must map names to strings")
        try:
            return dict(table), parse_aliases(table, str(self.path))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc

    def _write(self, raw: dict[str, str]) -> None:
        lines = ["[aliases]"]
        lines += [f"  {_toml_key(k)} = {_toml_string(raw[k])}" for k in sorted(raw)]
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write("\n".join(lines) + "\n")
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp, self.path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    @contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"cannot open the short-name alias lock {go_quote(str(self.lock_path))}: "
                f"{exc.strerror}; check the directory's permissions"
            ) from exc
        try:
            with _THREAD_LOCK:
                fcntl.lockf(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                yield
        finally:
            os.close(fd)  # closing the descriptor releases the fcntl lock


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(value: str) -> str:
    """A TOML basic string; JSON's escapes are a subset TOML accepts."""
    return json.dumps(value, ensure_ascii=False)
