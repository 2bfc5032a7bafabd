"""Short-name resolution (libimage-pull.md §2.2, §2.3) and the alias cache (§2.4)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import towline
from towline.config.paths import ConfigPaths
from towline.config.registries import RegistriesConf
from towline.config.registries_files import load_registries_conf
from towline.config.shortnames import AliasCache, Resolution, resolve, resolve_locally
from towline.errors import ConfigError, InvalidReferenceError, ShortNameError
from towline.reference import parse_reference

DIGEST = "sha256:" + "0123456789abcdef" * 4


def load(tmp_path: Path, text: str) -> RegistriesConf:
    conf = tmp_path / "registries.conf"
    conf.write_text(textwrap.dedent(text))
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"TOWLINE_CONFIG_ROOT": str(tmp_path / "root")}
    return load_registries_conf(ConfigPaths.from_env(env, home=home, registries_conf=conf))


@pytest.fixture
def two_regs(tmp_path: Path) -> RegistriesConf:
    return load(
        tmp_path,
        """
        unqualified-search-registries = ["quay.io", "docker.io"]
        [aliases]
        fedora = "registry.fedoraproject.org/fedora"
        "quay/foo" = "quay.io/library/foo"
        erased = ""
        """,
    )


def names(resolution: Resolution) -> list[str]:
    return [str(c) for c in resolution.candidates]


# === resolve


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("quay.io/repo/fedora", "quay.io/repo/fedora:latest"),
        ("docker.io/fedora", "docker.io/library/fedora:latest"),
        ("localhost/x", "localhost/x:latest"),
        ("localhost:5000/x:1", "localhost:5000/x:1"),
        (f"quay.io/x@{DIGEST}", f"quay.io/x@{DIGEST}"),
    ],
)
def test_qualified_names_are_a_single_candidate(
    two_regs: RegistriesConf, name: str, expected: str
) -> None:
    resolution = resolve(name, two_regs, is_tty=False, mode="enforcing")
    assert names(resolution) == [expected]
    assert resolution.description is None
    assert not resolution.record


def test_alias_wins_and_keeps_tag_and_digest(two_regs: RegistriesConf, tmp_path: Path) -> None:
    resolution = resolve(f"fedora:38@{DIGEST}", two_regs, is_tty=False, mode="enforcing")
    assert names(resolution) == [f"registry.fedoraproject.org/fedora:38@{DIGEST}"]
    assert resolution.description == (
        f'Resolved "fedora" as an alias ({tmp_path / "registries.conf"})'
    )
    assert not resolution.record
    assert resolution.short_name == "fedora"
    plain = resolve("quay/foo", two_regs, is_tty=False)
    assert names(plain) == ["quay.io/library/foo:latest"]


def test_search_registries_in_order(two_regs: RegistriesConf, tmp_path: Path) -> None:
    resolution = resolve("foo:tag", two_regs, is_tty=False)
    assert names(resolution) == ["quay.io/foo:tag", "docker.io/library/foo:tag"]
    assert resolution.description == (
        f'Resolving "foo" using unqualified-search registries ({tmp_path / "registries.conf"})'
    )
    assert not resolution.record


def test_erased_alias_falls_through_to_search_registries(two_regs: RegistriesConf) -> None:
    assert names(resolve("erased", two_regs, is_tty=False)) == [
        "quay.io/erased:latest",
        "docker.io/library/erased:latest",
    ]


def test_nested_short_name(two_regs: RegistriesConf) -> None:
    assert names(resolve("library/fedora", two_regs, is_tty=False)) == [
        "quay.io/library/fedora:latest",
        "docker.io/library/fedora:latest",
    ]


def test_enforcing_without_tty_fails(two_regs: RegistriesConf) -> None:
    with pytest.raises(ShortNameError) as info:
        resolve("foo", two_regs, is_tty=False, mode="enforcing")
    assert str(info.value) == "short-name resolution enforced but cannot prompt without a TTY"


def test_enforcing_with_tty_asks_for_a_qualified_name(two_regs: RegistriesConf) -> None:
    with pytest.raises(ShortNameError) as info:
        resolve("foo", two_regs, is_tty=True, mode="enforcing")
    message = str(info.value)
    assert "quay.io/foo:latest, docker.io/library/foo:latest" in message
    assert "fully-qualified name" in message
    assert "alias" in message


@pytest.mark.parametrize(("mode", "tty"), [("permissive", True), ("permissive", False)])
def test_permissive_returns_every_candidate(two_regs: RegistriesConf, mode: str, tty: bool) -> None:
    assert len(resolve("foo", two_regs, is_tty=tty, mode=mode).candidates) == 2


@pytest.mark.parametrize("tty", [True, False])
def test_disabled_returns_every_candidate(two_regs: RegistriesConf, tty: bool) -> None:
    assert len(resolve("foo", two_regs, is_tty=tty, mode="disabled").candidates) == 2


def test_single_search_registry_needs_no_prompt(tmp_path: Path) -> None:
    conf = load(
        tmp_path, 'unqualified-search-registries = ["quay.io"]\nshort-name-mode = "enforcing"'
    )
    resolution = resolve("foo", conf, is_tty=False)
    assert names(resolution) == ["quay.io/foo:latest"]


def test_mode_comes_from_config(tmp_path: Path) -> None:
    conf = load(
        tmp_path, 'unqualified-search-registries = ["a.io", "b.io"]\nshort-name-mode = "enforcing"'
    )
    with pytest.raises(ShortNameError, match="enforced"):
        resolve("foo", conf, is_tty=False)


def test_no_search_registries(tmp_path: Path) -> None:
    conf = load(tmp_path, "unqualified-search-registries = []")
    with pytest.raises(ShortNameError) as info:
        resolve("foo:1", conf, is_tty=False)
    assert str(info.value) == (
        'short-name "foo:1" did not resolve to an alias and no unqualified-search registries '
        f'are defined in "{tmp_path / "registries.conf"}"'
    )
    with pytest.raises(ShortNameError) as info:
        resolve("foo", RegistriesConf(), is_tty=False)
    assert str(info.value) == (
        'short-name "foo" did not resolve to an alias and no unqualified-search registries '
        "are defined and no containers-registries.conf(5) was found"
    )


def test_unsupported_mode(two_regs: RegistriesConf) -> None:
    with pytest.raises(ShortNameError, match=r"^unsupported short-name mode \(prompt\)$"):
        resolve("foo", two_regs, is_tty=False, mode="prompt")


@pytest.mark.parametrize("name", ["", "$$$", "::", "docker://busybox", " "])
def test_unparseable_input(two_regs: RegistriesConf, name: str) -> None:
    with pytest.raises(InvalidReferenceError, match=r"^cannot parse input: "):
        resolve(name, two_regs, is_tty=False)


def test_alias_cache_outranks_registries_conf(two_regs: RegistriesConf, tmp_path: Path) -> None:
    cache = AliasCache(tmp_path / "cache/aliases.conf")
    cache.add("fedora", "quay.io/fedora/fedora")
    resolution = resolve("fedora", two_regs, is_tty=False, alias_cache=cache)
    assert names(resolution) == ["quay.io/fedora/fedora:latest"]
    assert resolution.description == f'Resolved "fedora" as an alias ({cache.path})'


def test_record_alias_only_when_asked(tmp_path: Path) -> None:
    cache = AliasCache(tmp_path / "aliases.conf")
    pulled = parse_reference("quay.io/foo:1")
    assert not Resolution([pulled], None, short_name="foo").record_alias(pulled, cache)
    assert not cache.path.exists()
    assert Resolution([pulled], None, record=True, short_name="foo").record_alias(pulled, cache)
    alias = cache.lookup("foo")
    assert alias is not None
    assert str(alias.value) == "quay.io/foo"


# === resolve_locally


def test_resolve_locally_order(two_regs: RegistriesConf) -> None:
    assert [str(r) for r in resolve_locally("fedora:38", two_regs)] == [
        "registry.fedoraproject.org/fedora:38",
        "localhost/fedora:38",
        "quay.io/fedora:38",
        "docker.io/library/fedora:38",
    ]
    assert [str(r) for r in resolve_locally("foo", two_regs)] == [
        "localhost/foo:latest",
        "quay.io/foo:latest",
        "docker.io/library/foo:latest",
    ]
    assert [str(r) for r in resolve_locally("docker.io/foo", two_regs)] == [
        "docker.io/library/foo:latest"
    ]


# === alias cache


def test_alias_cache_file_format_and_permissions(tmp_path: Path) -> None:
    cache = AliasCache(tmp_path / "cache/containers/short-name-aliases.conf")
    cache.add("fedora", "registry.fedoraproject.org/fedora")
    cache.add("quay/foo", parse_reference("quay.io/library/foo:latest").with_tag("x").name)
    cache.add("alpine", "docker.io/alpine")
    assert cache.path.read_text() == textwrap.dedent(
        """\
        [aliases]
          alpine = "docker.io/library/alpine"
          fedora = "registry.fedoraproject.org/fedora"
          "quay/foo" = "quay.io/library/foo"
        """
    )
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.path.parent.stat().st_mode) & 0o077 == 0
    assert cache.lock_path.exists()
    loaded = cache.load()
    assert sorted(loaded) == ["alpine", "fedora", "quay/foo"]
    assert loaded["fedora"].origin == str(cache.path)


def test_alias_cache_add_overrides_and_remove(tmp_path: Path) -> None:
    cache = AliasCache(tmp_path / "aliases.conf")
    cache.add("foo", "quay.io/foo")
    cache.add("foo", "quay.io/bar")
    alias = cache.lookup("foo")
    assert alias is not None
    assert str(alias.value) == "quay.io/bar"
    cache.remove("foo")
    assert cache.lookup("foo") is None
    with pytest.raises(ShortNameError) as info:
        cache.remove("foo")
    assert str(info.value) == (
        f'short-name alias "foo" not found in "{cache.path}": please check registries.conf files'
    )


def test_missing_cache_reads_empty_without_creating_anything(tmp_path: Path) -> None:
    cache = AliasCache(tmp_path / "absent/aliases.conf")
    assert cache.load() == {}
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("quay.io/foo", "quay.io/foo", '"quay.io/foo" is not a short name'),
        ("foo:1", "quay.io/foo", 'invalid short name "foo:1": must not contain tag'),
        ("foo", "foo", 'invalid alias "foo": must contain registry and repository'),
        ("foo", "quay.io/foo:1", 'invalid alias "quay.io/foo:1": must not contain tag'),
        ("foo", f"quay.io/foo@{DIGEST}", "must not contain digest"),
    ],
)
def test_alias_cache_rejects_bad_entries(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    cache = AliasCache(tmp_path / "aliases.conf")
    with pytest.raises(ShortNameError) as info:
        cache.add(name, value)
    assert message in str(info.value)
    assert not cache.path.exists()


def test_corrupt_cache_is_a_config_error(tmp_path: Path) -> None:
    cache = AliasCache(tmp_path / "aliases.conf")
    cache.path.write_text("[aliases\n")
    with pytest.raises(ConfigError, match="loading short-name aliases config file"):
        cache.load()
    cache.path.write_text('[aliases]\n"quay.io/x" = "quay.io/x"\n')
    with pytest.raises(ConfigError, match="must not contain registry"):
        cache.lookup("x")


def test_concurrent_adds_from_threads_and_processes_all_land(tmp_path: Path) -> None:
    cache = AliasCache(tmp_path / "aliases.conf")
    package_root = Path(towline.__file__).parent.parent
    script = (
        "import sys; from pathlib import Path; from towline.config.shortnames import AliasCache\n"
        "cache = AliasCache(Path(sys.argv[1]))\n"
        "for i in range(5): cache.add(f'{sys.argv[2]}{i}', f'quay.io/{sys.argv[2]}{i}')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(cache.path), f"p{n}x"], env=env)
        for n in range(3)
    ]
    threads = [
        threading.Thread(target=cache.add, args=(f"t{i}", f"quay.io/t{i}")) for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [p.wait(timeout=60) for p in processes] == [0, 0, 0]
    expected = [f"t{i}" for i in range(8)] + [f"p{n}x{i}" for n in range(3) for i in range(5)]
    assert sorted(cache.load()) == sorted(expected)
