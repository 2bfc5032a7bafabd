"""Platforms (``os/arch[/variant]``): parsing, the host, and picking an index entry.

Normalisation follows libimage's ``platform.Normalize`` (containerd rules);
the candidate list and instance choice follow containers/image's
``WantedPlatforms`` and ``chooseInstance`` for Docker manifest lists and OCI
indexes, including the variant fallback and the zstd preference.
"""

from __future__ import annotations

import logging
import os
import platform as _stdlib_platform
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from towline.errors import PlatformNotFoundError, TowlineError
from towline.quoting import go_quote

__all__ = [
    "DOCKER_MANIFEST_LIST",
    "ZSTD_ANNOTATION",
    "Platform",
    "choose_instance",
    "host_platform",
    "normalize_platform",
    "parse_platform",
    "wanted_platforms",
]

log = logging.getLogger(__name__)

DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
#: Marks the zstd twin of an instance in an OCI index (containers/image).
ZSTD_ANNOTATION = "io.github.containers.compression.zstd"

# containerd's specifier syntax for each of os, arch and variant.
_SPECIFIER_RE = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)

# Variants from most capable to most compatible (platform_matcher.go).
_COMPATIBILITY: Mapping[str, tuple[str, ...]] = {
    "arm": ("v8", "v7", "v6", "v5"),
    "arm64": ("v8",),
}

# Python's platform.machine() → Go's GOARCH.
_MACHINE_TO_GOARCH: Mapping[str, str] = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "aarch64_be": "arm64be",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "x86": "386",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64": "mips64",
    "loongarch64": "loong64",
}

# /proc/cpuinfo "CPU architecture" → variant (getCPUVariantArm).
_CPUINFO_VARIANTS: Mapping[str, str] = {
    "8": "v8",
    "aarch64": "v8",
    "7": "v7",
    "7m": "v7",
    "?(12)": "v7",
    "?(13)": "v7",
    "?(14)": "v7",
    "?(15)": "v7",
    "?(16)": "v7",
    "?(17)": "v7",
    "6": "v6",
    "6tej": "v6",
    "5": "v5",
    "5t": "v5",
    "5te": "v5",
    "5tej": "v5",
    "4": "v4",
    "4t": "v4",
    "3": "v3",
}


@dataclass(frozen=True)
class Platform:
    """An image platform; ``str()`` gives ``os/arch`` or ``os/arch/variant``."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


def normalize_platform(p: Platform) -> Platform:
    """Apply containerd's normalisation as libimage does (``aarch64`` → ``arm64``...).

    ``arm`` without a variant means ``arm/v7``; ``arm64`` keeps an explicit
    ``v8``; unknown values are only lower-cased.
    """
    os_name = p.os.lower()
    if os_name == "macos":
        os_name = "darwin"
    arch, variant = p.architecture.lower(), p.variant.lower()
    if arch in ("i386", "i686"):
        arch = "386"
    elif arch in ("x86_64", "x86-64", "amd64"):
        arch = "amd64"
        if variant == "v1":
            variant = ""
    elif arch in ("aarch64", "arm64"):
        arch = "arm64"
        if variant in ("8", "v8", "v8.0"):
            variant = "v8"
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
    elif arch == "armhf":
        arch, variant = "arm", "v7"
    elif arch == "armel":
        arch, variant = "arm", "v6"
    elif arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    return Platform(os_name, arch, variant)


def _invalid_platform(value: str) -> TowlineError:
    return TowlineError(
        f"invalid platform {go_quote(value)}: use os/arch[/variant], e.g. linux/arm64",
        slug="invalid_platform",
    )


def parse_platform(value: str) -> Platform:
    """Parse ``os/arch[/variant]`` and normalise it (see :func:`normalize_platform`).

    Raises :class:`~towline.errors.TowlineError` with slug ``invalid_platform``.
    """
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(_SPECIFIER_RE.fullmatch(part) for part in parts):
        raise _invalid_platform(value)
    variant = parts[2] if len(parts) == 3 else ""
    return normalize_platform(Platform(parts[0], parts[1], variant))


def _goos(system: str) -> str:
    if system.startswith("linux"):
        return "linux"
    if system in ("win32", "cygwin"):
        return "windows"
    for prefix in ("freebsd", "openbsd", "netbsd"):
        if system.startswith(prefix):
            return prefix
    return system


def _goarch(machine: str) -> str:
    machine = machine.lower()
    if machine in _MACHINE_TO_GOARCH:
        return _MACHINE_TO_GOARCH[machine]
    if machine.startswith("arm"):
        return "arm"  # armv6l, armv7l, armv8l: 32-bit userland
    return machine


def _cpuinfo_field(path: Path, key: str) -> str | None:
    """The value of the first ``key : value`` line in a cpuinfo file (key case-insensitive)."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            parts = line.split(":")
            if len(parts) > 1 and parts[0].strip().lower() == key:
                return parts[1].strip()
    return None


def _arm_variant(cpuinfo: Path) -> str:
    """The ARM variant from cpuinfo, or "" when it cannot be told (as containers/image)."""
    try:
        cpu_arch = _cpuinfo_field(cpuinfo, "cpu architecture")
        if cpu_arch is None:
            log.warning("no 'CPU architecture' line in %s; not using an ARM variant", cpuinfo)
            return ""
        variant = _CPUINFO_VARIANTS.get(cpu_arch.lower(), "")
        if cpu_arch == "7":
            # Raspberry Pi Zero/1 kernels report 7 for an ARMv6 core.
            model = _cpuinfo_field(cpuinfo, "model name") or ""
            if model.lower().startswith("armv6-compatible"):
                variant = "v6"
        return variant
    except OSError as exc:
        log.warning("cannot read %s (%s); not using an ARM variant", cpuinfo, exc)
        return ""


def host_platform(
    cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo",
    *,
    machine: str | None = None,
    system: str | None = None,
) -> Platform:
    """The platform of this machine, as Go would call it (``linux/amd64``, ``linux/arm/v7``).

    ``machine`` and ``system`` default to :func:`platform.machine` and
    :data:`sys.platform`; ``cpuinfo`` is read for the ARM variant on Linux.
    """
    goos = _goos(sys.platform if system is None else system)
    goarch = _goarch(_stdlib_platform.machine() if machine is None else machine)
    variant = ""
    if goos in ("darwin", "windows"):
        variant = {"arm64": "v8", "arm": "v7"}.get(goarch, "")
    elif goos == "linux" and goarch in ("arm", "arm64"):
        variant = _arm_variant(Path(cpuinfo))
    return Platform(goos, goarch, variant)


def wanted_platforms(choice: Platform | None, host: Platform | None = None) -> list[Platform]:
    """Platforms to accept from an index, best first (containers/image ``WantedPlatforms``).

    Empty fields of ``choice`` come from ``host`` (default :func:`host_platform`);
    the host's variant is used only when the architecture was not chosen. A
    variant ``V`` gives ``[V, less capable compatible variants..., ""]``; no
    variant gives ``["", every known variant...]``.
    """
    choice = choice or Platform("", "")
    if host is None and not (choice.os and choice.architecture):
        host = host_platform()
    os_name = choice.os or (host.os if host else "")
    arch = choice.architecture or (host.architecture if host else "")
    variant = choice.variant
    if not variant and not choice.architecture and host is not None:
        variant = host.variant
    if variant:
        order = _COMPATIBILITY.get(arch, ())
        variants = [*order[order.index(variant) :], ""] if variant in order else [variant, ""]
    else:
        variants = ["", *_COMPATIBILITY.get(arch, ())]
    return [Platform(os_name, arch, v) for v in variants]


def _entry_platform(entry: Mapping[str, Any]) -> Platform | None:
    raw = entry.get("platform")
    if not isinstance(raw, Mapping):
        return None
    # A missing field is Go's zero value "", as when containers/image decodes the JSON.
    fields = (raw.get("os", ""), raw.get("architecture", ""), raw.get("variant", ""))
    if not all(isinstance(f, str) for f in fields):
        return None
    return Platform(*fields)


def _describe(entries: Sequence[Mapping[str, Any]]) -> str:
    names = [str(p) if (p := _entry_platform(e)) else "(no platform)" for e in entries]
    return ", ".join(names) if names else "(no entries)"


def choose_instance(
    index: Mapping[str, Any],
    wanted: Sequence[Platform],
    *,
    media_type: str | None = None,
) -> Mapping[str, Any]:
    """Pick the descriptor to pull from a Docker manifest list or OCI index.

    Docker list: the first entry, in list order, matching the earliest wanted
    platform. OCI index: the best by (rank of the wanted platform, zstd
    instance first, position); an entry without ``platform`` is accepted at the
    lowest rank. ``media_type`` (the Content-Type) overrides the document's own
    ``mediaType``. Raises :class:`~towline.errors.PlatformNotFoundError`.
    """
    if not wanted:
        raise ValueError("choose_instance needs at least one wanted platform")
    raw_entries = index.get("manifests")
    entries = (
        [e for e in raw_entries if isinstance(e, Mapping)] if isinstance(raw_entries, list) else []
    )
    is_docker_list = (media_type or index.get("mediaType")) == DOCKER_MANIFEST_LIST
    if is_docker_list:
        for want in wanted:
            for entry in entries:
                if _entry_platform(entry) == want:
                    return entry
    else:
        best: tuple[tuple[int, bool, int], Mapping[str, Any]] | None = None
        for position, entry in enumerate(entries):
            found = _entry_platform(entry)
            if "platform" not in entry or entry["platform"] is None:
                rank = len(wanted)
            elif found in wanted:
                rank = wanted.index(found)
            else:
                continue
            annotations = entry.get("annotations")
            is_zstd = (
                isinstance(annotations, Mapping) and annotations.get(ZSTD_ANNOTATION) == "true"
            )
            key = (rank, not is_zstd, position)
            if best is None or key < best[0]:
                best = (key, entry)
        if best is not None:
            return best[1]
    first = wanted[0]
    kind = "manifest list" if is_docker_list else "image index"
    available = _describe(entries)
    raise PlatformNotFoundError(
        f'no image found in {kind} for architecture "{first.architecture}", '
        f'variant "{first.variant}", OS "{first.os}"; the index has: {available}',
        expected=str(first),
        actual=available,
    )
