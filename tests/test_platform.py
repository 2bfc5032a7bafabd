"""Platforms: parsing and normalisation, the host, wanted platforms, index instance choice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from towline.errors import PlatformNotFoundError, TowlineError
from towline.platform import (
    DOCKER_MANIFEST_LIST,
    ZSTD_ANNOTATION,
    Platform,
    choose_instance,
    host_platform,
    normalize_platform,
    parse_platform,
    wanted_platforms,
)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64", "linux/arm64"),
        ("linux/arm64/8", "linux/arm64/v8"),
        ("linux/arm64/v8", "linux/arm64/v8"),
        ("linux/aarch64/v8", "linux/arm64/v8"),
        ("linux/arm64/v9.0", "linux/arm64/v9"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm/6", "linux/arm/v6"),
        ("linux/arm/v5", "linux/arm/v5"),
        ("linux/arm/8", "linux/arm/v8"),
        ("linux/i386", "linux/386"),
        ("linux/i686", "linux/386"),
        ("linux/386", "linux/386"),
        ("Linux/AMD64", "linux/amd64"),
        ("macos/arm64", "darwin/arm64"),
        ("MacOS/x86_64", "darwin/amd64"),
        ("windows/amd64", "windows/amd64"),
        ("linux/s390x", "linux/s390x"),
        ("linux/ppc64le", "linux/ppc64le"),
        ("linux/riscv64", "linux/riscv64"),
        ("freebsd/amd64", "freebsd/amd64"),
    ],
)
def test_parse_platform(text: str, expected: str) -> None:
    p = parse_platform(text)
    assert str(p) == expected
    # Normalisation is idempotent.
    assert parse_platform(str(p)) == p
    assert normalize_platform(p) == p


def test_parse_platform_fields() -> None:
    assert parse_platform("linux/arm/v6") == Platform("linux", "arm", "v6")
    assert parse_platform("linux/amd64") == Platform("linux", "amd64", "")


@pytest.mark.parametrize(
    "text",
    [
        "linux",
        "",
        "a/b/c/d",
        "/amd64",
        "linux/",
        "linux/amd64/",
        "linux//v7",
        "lin ux/amd64",
        "linux/amd64\n",
        "linux/amd:64",
        "linux/ämd64",
    ],
)
def test_parse_platform_rejects(text: str) -> None:
    with pytest.raises(TowlineError) as info:
        parse_platform(text)
    assert info.value.slug == "invalid_platform"
    assert "use os/arch[/variant], e.g. linux/arm64" in str(info.value)


def test_parse_platform_message() -> None:
    with pytest.raises(TowlineError) as info:
        parse_platform("linux")
    assert str(info.value) == 'invalid platform "linux": use os/arch[/variant], e.g. linux/arm64'


def test_normalize_keeps_unknown_values_lowercased() -> None:
    assert normalize_platform(Platform("Plan9", "MIPS64", "X")) == Platform("plan9", "mips64", "x")


# --- host


def _cpuinfo(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


RPI4 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
"""

ARMV7 = """processor\t: 0
model name\t: ARMv7 Processor rev 4 (v7l)
BogoMIPS\t: 38.40
CPU architecture: 7
"""

RPI_ZERO = """processor\t: 0
model name\t: ARMv6-compatible processor rev 7 (v6l)
CPU architecture: 7
"""


@pytest.mark.parametrize(
    ("machine", "cpuinfo", "expected"),
    [
        ("x86_64", RPI4, "linux/amd64"),  # cpuinfo is read only on ARM
        ("aarch64", RPI4, "linux/arm64/v8"),
        ("armv7l", ARMV7, "linux/arm/v7"),
        ("armv7l", RPI_ZERO, "linux/arm/v6"),
        ("armv6l", "CPU architecture: 6TEJ\n", "linux/arm/v6"),
        ("armv5tel", "cpu architecture : 5TE\n", "linux/arm/v5"),
        ("aarch64", "processor : 0\n", "linux/arm64"),
        ("armv7l", "CPU architecture: weird\n", "linux/arm"),
        ("i686", "", "linux/386"),
        ("ppc64le", "", "linux/ppc64le"),
        ("s390x", "", "linux/s390x"),
        ("riscv64", "", "linux/riscv64"),
    ],
)
def test_host_platform_linux(tmp_path: Path, machine: str, cpuinfo: str, expected: str) -> None:
    path = _cpuinfo(tmp_path, cpuinfo)
    assert str(host_platform(path, machine=machine, system="linux")) == expected


def test_host_platform_missing_cpuinfo(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = host_platform(tmp_path / "absent", machine="aarch64", system="linux")
    assert p == Platform("linux", "arm64", "")
    assert "cannot read" in caplog.text


@pytest.mark.parametrize(
    ("machine", "system", "expected"),
    [
        ("arm64", "darwin", "darwin/arm64/v8"),
        ("x86_64", "darwin", "darwin/amd64"),
        ("AMD64", "win32", "windows/amd64"),
        ("ARM64", "win32", "windows/arm64/v8"),
        ("amd64", "freebsd14", "freebsd/amd64"),
    ],
)
def test_host_platform_other_systems(machine: str, system: str, expected: str) -> None:
    assert str(host_platform("/nonexistent", machine=machine, system=system)) == expected


def test_host_platform_defaults_run() -> None:
    p = host_platform()
    assert p.os
    assert p.architecture
    assert normalize_platform(p) == p or p.architecture == "arm"


# --- wanted platforms


def _variants(platforms: list[Platform]) -> list[str]:
    return [p.variant for p in platforms]


@pytest.mark.parametrize(
    ("choice", "variants"),
    [
        (Platform("linux", "arm", "v6"), ["v6", "v5", ""]),
        (Platform("linux", "arm", "v7"), ["v7", "v6", "v5", ""]),
        (Platform("linux", "arm", "v8"), ["v8", "v7", "v6", "v5", ""]),
        (Platform("linux", "arm", ""), ["", "v8", "v7", "v6", "v5"]),
        (Platform("linux", "arm64", ""), ["", "v8"]),
        (Platform("linux", "arm64", "v8"), ["v8", ""]),
        (Platform("linux", "arm64", "v9"), ["v9", ""]),
        (Platform("linux", "amd64", ""), [""]),
        (Platform("linux", "amd64", "v3"), ["v3", ""]),
        (Platform("linux", "arm", "v9"), ["v9", ""]),
    ],
)
def test_wanted_platforms_with_choice(choice: Platform, variants: list[str]) -> None:
    wanted = wanted_platforms(choice, host=Platform("linux", "arm64", "v8"))
    assert _variants(wanted) == variants
    assert all((p.os, p.architecture) == (choice.os, choice.architecture) for p in wanted)


def test_wanted_platforms_from_host_uses_host_variant() -> None:
    wanted = wanted_platforms(None, host=Platform("linux", "arm", "v7"))
    assert [str(p) for p in wanted] == ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5", "linux/arm"]


def test_wanted_platforms_host_variant_only_when_arch_not_chosen() -> None:
    host = Platform("linux", "arm64", "v8")
    # Arch chosen (even equal to the host's): no variant detection.
    assert _variants(wanted_platforms(Platform("linux", "arm64"), host)) == ["", "v8"]
    # Only the OS chosen: arch and variant come from the host.
    wanted = wanted_platforms(Platform("freebsd", ""), host)
    assert [str(p) for p in wanted] == ["freebsd/arm64/v8", "freebsd/arm64"]
    # Only a variant chosen: it wins over the host's.
    wanted = wanted_platforms(Platform("", "", "v9"), host)
    assert [str(p) for p in wanted] == ["linux/arm64/v9", "linux/arm64"]


def test_wanted_platforms_without_host_argument() -> None:
    # A full choice never needs the host; a None choice detects it.
    assert wanted_platforms(Platform("linux", "s390x"))[0] == Platform("linux", "s390x")
    assert wanted_platforms(None)[0].os == host_platform().os


# --- instance choice


def _desc(name: str, platform: str | None, *, zstd: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{name * 64}"[:71],
        "size": 1,
    }
    if platform is not None:
        parts = platform.split("/")
        entry["platform"] = {"os": parts[0], "architecture": parts[1]}
        if len(parts) == 3:
            entry["platform"]["variant"] = parts[2]
    if zstd:
        entry["annotations"] = {ZSTD_ANNOTATION: "true"}
    return entry


def _oci(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries)}


def _docker(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": list(entries)}


def _digest_char(entry: Any) -> str:
    return str(entry["digest"])[7]


WANT_ARM64 = wanted_platforms(Platform("linux", "arm64"))
WANT_ARMV7 = wanted_platforms(Platform("linux", "arm", "v7"))
WANT_AMD64 = wanted_platforms(Platform("linux", "amd64"))


@pytest.mark.parametrize(
    ("entries", "wanted", "chosen"),
    [
        ([_desc("a", "linux/amd64"), _desc("b", "linux/arm64/v8")], WANT_ARM64, "b"),
        ([_desc("a", "linux/arm64/v8"), _desc("b", "linux/arm64")], WANT_ARM64, "b"),  # "" first
        ([_desc("a", "linux/arm/v6"), _desc("b", "linux/arm/v7")], WANT_ARMV7, "b"),
        ([_desc("a", "linux/arm/v5"), _desc("b", "linux/arm/v6")], WANT_ARMV7, "b"),
        ([_desc("a", "linux/arm"), _desc("b", "linux/arm/v5")], WANT_ARMV7, "b"),
        ([_desc("a", "linux/amd64"), _desc("b", "linux/amd64")], WANT_AMD64, "a"),
        ([_desc("a", "windows/amd64"), _desc("b", "linux/amd64")], WANT_AMD64, "b"),
    ],
)
def test_choose_same_for_both_formats(
    entries: list[dict[str, Any]], wanted: list[Platform], chosen: str
) -> None:
    assert _digest_char(choose_instance(_oci(*entries), wanted)) == chosen
    assert _digest_char(choose_instance(_docker(*entries), wanted)) == chosen


def test_oci_prefers_zstd_instance_of_the_same_platform() -> None:
    index = _oci(_desc("a", "linux/amd64"), _desc("b", "linux/amd64", zstd=True))
    assert _digest_char(choose_instance(index, WANT_AMD64)) == "b"
    # ...but platform rank comes first.
    index = _oci(_desc("a", "linux/arm64/v8", zstd=True), _desc("b", "linux/arm64"))
    assert _digest_char(choose_instance(index, WANT_ARM64)) == "b"


def test_oci_zstd_annotation_must_be_the_string_true() -> None:
    index = _oci(_desc("a", "linux/amd64"), _desc("b", "linux/amd64"))
    index["manifests"][1]["annotations"] = {ZSTD_ANNOTATION: "yes"}
    assert _digest_char(choose_instance(index, WANT_AMD64)) == "a"


def test_docker_list_ignores_zstd_annotation() -> None:
    index = _docker(_desc("a", "linux/amd64"), _desc("b", "linux/amd64", zstd=True))
    assert _digest_char(choose_instance(index, WANT_AMD64)) == "a"


def test_oci_entry_without_platform_is_lowest_rank() -> None:
    index = _oci(_desc("a", None), _desc("b", "linux/arm64/v8"))
    assert _digest_char(choose_instance(index, WANT_ARM64)) == "b"
    index = _oci(_desc("a", None), _desc("b", "linux/s390x"))
    assert _digest_char(choose_instance(index, WANT_ARM64)) == "a"


def test_index_without_media_type_is_oci() -> None:
    index = {"schemaVersion": 2, "manifests": [_desc("a", None)]}
    assert _digest_char(choose_instance(index, WANT_AMD64)) == "a"


def test_media_type_argument_overrides_document() -> None:
    index = {"schemaVersion": 2, "manifests": [_desc("a", None)]}
    with pytest.raises(PlatformNotFoundError, match="in manifest list"):
        choose_instance(index, WANT_AMD64, media_type=DOCKER_MANIFEST_LIST)


def test_returns_the_descriptor_itself() -> None:
    entry = _desc("c", "linux/amd64")
    assert choose_instance(_oci(entry), WANT_AMD64) is entry


def test_no_match_docker_list_message() -> None:
    index = _docker(_desc("a", "linux/amd64"), _desc("b", "linux/arm/v7"))
    with pytest.raises(PlatformNotFoundError) as info:
        choose_instance(index, wanted_platforms(Platform("linux", "arm64", "v8")))
    assert str(info.value) == (
        'no image found in manifest list for architecture "arm64", variant "v8", OS "linux"; '
        "the index has: linux/amd64, linux/arm/v7"
    )
    assert info.value.slug == "platform_not_found"
    assert info.value.expected == "linux/arm64/v8"
    assert info.value.actual == "linux/amd64, linux/arm/v7"


def test_no_match_oci_index_message() -> None:
    index = _oci(_desc("a", "linux/amd64"), _desc("b", "windows/amd64"))
    with pytest.raises(PlatformNotFoundError) as info:
        choose_instance(index, WANT_ARM64)
    assert str(info.value) == (
        'no image found in image index for architecture "arm64", variant "", OS "linux"; '
        "the index has: linux/amd64, windows/amd64"
    )


@pytest.mark.parametrize(
    "index",
    [
        {"mediaType": OCI_INDEX, "manifests": []},
        {"mediaType": OCI_INDEX},
        {"mediaType": OCI_INDEX, "manifests": "nope"},
        {"mediaType": OCI_INDEX, "manifests": [1, "x"]},
    ],
)
def test_empty_or_malformed_index(index: dict[str, Any]) -> None:
    with pytest.raises(PlatformNotFoundError, match=r"the index has: \(no entries\)"):
        choose_instance(index, WANT_AMD64)


def test_malformed_platform_is_not_a_match() -> None:
    bad = _desc("a", "linux/amd64")
    bad["platform"] = {"os": "linux", "architecture": 64}
    with pytest.raises(PlatformNotFoundError, match=r"the index has: \(no platform\)"):
        choose_instance(_oci(bad), WANT_AMD64)


def test_docker_list_entry_without_platform_never_matches() -> None:
    with pytest.raises(PlatformNotFoundError, match=r"the index has: \(no platform\)"):
        choose_instance(_docker(_desc("a", None)), WANT_AMD64)


def test_match_is_exact_including_variant() -> None:
    index = _oci(_desc("a", "linux/arm64/v9"))
    with pytest.raises(PlatformNotFoundError):
        choose_instance(index, WANT_ARM64)


def test_needs_a_wanted_platform() -> None:
    with pytest.raises(ValueError, match="at least one"):
        choose_instance(_oci(_desc("a", None)), [])
