"""containers.conf ``[engine]`` settings for a pull: retries, retry delay, policy, parallelism.

Files are merged in containers/common's order (``systemConfigs``): the
``/usr/share`` default, ``/etc/containers/containers.conf`` and its ``.d``
drop-ins, the rootless overrides for a non-root user, then the user's file and
drop-ins; a later file overrides the keys it sets. ``$CONTAINERS_CONF``
replaces that whole list with one file (which must exist), and
``$CONTAINERS_CONF_OVERRIDE`` is merged last. See libimage-pull.md §1.1, §1.2
and §1.6.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from towline.config.paths import ConfigPaths
from towline.errors import ConfigError
from towline.quoting import go_quote

__all__ = [
    "DEFAULT_MAX_PARALLEL_DOWNLOADS",
    "EngineSettings",
    "load_engine_settings",
    "parse_go_duration",
]

#: c/image's default when ``image_parallel_copies`` is 0.
DEFAULT_MAX_PARALLEL_DOWNLOADS = 6

# c/common ParsePullPolicy (containers.conf does not take podman's true/false).
_PULL_POLICIES = {
    "always": "always",
    "missing": "missing",
    "ifmissing": "missing",
    "ifnotpresent": "missing",
    "": "missing",
    "newer": "newer",
    "ifnewer": "newer",
    "never": "never",
}


@dataclass(frozen=True)
class EngineSettings:
    """The ``[engine]`` keys towline honours, with containers.conf's defaults.

    ``retry_delay`` is in seconds; None means "not configured" (the pull then
    waits a fixed 1s between attempts, as libimage does). ``pull_policy`` is
    canonical (``always``, ``missing``, ``newer`` or ``never``).
    ``image_parallel_copies`` 0 means c/image's default of 6.
    """

    retry: int = 3
    retry_delay: float | None = None
    pull_policy: str = "missing"
    image_parallel_copies: int = 0

    @property
    def max_parallel_downloads(self) -> int:
        """How many layers to fetch at once."""
        return self.image_parallel_copies or DEFAULT_MAX_PARALLEL_DOWNLOADS


def load_engine_settings(paths: ConfigPaths) -> EngineSettings:
    """Merge the ``[engine]`` tables of every containers.conf in ``paths``.

    Raises :class:`ConfigError` naming the file for unreadable TOML, a value of
    the wrong type, an unknown pull policy, or a ``retry_delay`` that is not a
    Go duration (``"1s"``, ``"500ms"``, ``"1m30s"``).
    """
    if paths.containers_conf_explicit:
        explicit = paths.containers_conf[0]
        if not explicit.exists():
            raise ConfigError(
                f"CONTAINERS_CONF file {_q(explicit)} does not exist; fix or unset $CONTAINERS_CONF"
            )
        files = [explicit]
    else:
        files = _expand(paths.containers_conf)
    if paths.containers_conf_override is not None:
        files.append(paths.containers_conf_override)

    merged: dict[str, tuple[Any, Path]] = {}
    for path in files:
        for key, value in _engine_table(path).items():
            if key in _CHECKS:
                _CHECKS[key](value, key, path)
                merged[key] = (value, path)

    settings = EngineSettings()
    if "retry" in merged:
        settings = replace(settings, retry=merged["retry"][0])
    if "image_parallel_copies" in merged:
        settings = replace(settings, image_parallel_copies=merged["image_parallel_copies"][0])
    if "pull_policy" in merged:
        value, origin = merged["pull_policy"]
        policy = _PULL_POLICIES.get(value.lower())
        if policy is None:
            raise ConfigError(
                f"invalid pull type from containers.conf {go_quote(value)}: unsupported pull "
                f"policy {go_quote(value)} (set in {origin}); use always, missing, newer or never"
            )
        settings = replace(settings, pull_policy=policy)
    if merged.get("retry_delay", ("", None))[0]:
        value, origin = merged["retry_delay"]
        try:
            delay = parse_go_duration(value)
        except ValueError as exc:
            raise ConfigError(
                f"failed to parse containers.conf retry_delay: {exc} (set in {origin}); "
                'use a duration such as "1s", "500ms" or "1m30s"'
            ) from exc
        if delay < 0:
            # Go would accept it and sleep 0; a negative delay is surely a typo.
            raise ConfigError(
                f"failed to parse containers.conf retry_delay: {go_quote(value)} is negative "
                f"(set in {origin})"
            )
        settings = replace(settings, retry_delay=delay)
    return settings


def _expand(sources: tuple[Path, ...]) -> list[Path]:
    """Files stay; a directory contributes its ``*.conf`` files, sorted; missing ones vanish."""
    files: list[Path] = []
    for source in sources:
        if not source.is_dir():
            files.append(source)
            continue
        try:
            names = sorted(os.listdir(source))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(f"finding config on system: reading {_q(source)}: {exc}") from exc
        files += [source / n for n in names if n.endswith(".conf") and not (source / n).is_dir()]
    return files


def _engine_table(path: Path) -> dict[str, Any]:
    """The ``[engine]`` table of one file; a missing file is empty."""
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"decode configuration {path}: {exc}") from exc
    engine = data.get("engine", {})
    if not isinstance(engine, dict):
        raise ConfigError(f"decode configuration {path}: [engine] must be a table")
    return engine


def _check_count(value: object, key: str, path: Path) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"decode configuration {path}: engine.{key} must be a non-negative integer, "
            f"not {value!r}"
        )


def _check_string(value: object, key: str, path: Path) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"decode configuration {path}: engine.{key} must be a string")


_CHECKS = {
    "retry": _check_count,
    "image_parallel_copies": _check_count,
    "retry_delay": _check_string,
    "pull_policy": _check_string,
}

# === Go's time.ParseDuration

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_ELEMENT = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_MAX_NS = 2**63 - 1


def parse_go_duration(text: str) -> float:
    """Parse a Go duration (``"1h2m3.5s"``, ``"-1.5h"``, ``"300ms"``) into seconds.

    Raises ValueError with Go's message (``time: invalid duration "x"``,
    ``time: missing unit in duration "1"``, ``time: unknown unit "x" in duration "1x"``).
    """
    invalid = ValueError(f"time: invalid duration {go_quote(text)}")
    rest = text
    negative = rest.startswith("-")
    rest = rest.removeprefix("-") if negative else rest.removeprefix("+")
    if rest == "0":
        return 0.0
    if not rest:
        raise invalid
    total = 0
    while rest:
        match = _ELEMENT.match(rest)
        assert match is not None  # every group may be empty, so it always matches
        whole, fraction, unit = match.group(1), match.group(2), match.group(3)
        if not whole and not fraction:
            raise invalid
        if not unit:
            raise ValueError(f"time: missing unit in duration {go_quote(text)}")
        scale = _UNITS_NS.get(unit)
        if scale is None:
            raise ValueError(f"time: unknown unit {go_quote(unit)} in duration {go_quote(text)}")
        total += int(whole or "0") * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
        if total > _MAX_NS:
            raise invalid
        rest = rest[match.end() :]
    return (-total if negative else total) / 1e9


def _q(path: Path) -> str:
    return go_quote(str(path))
