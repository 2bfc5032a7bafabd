"""registries.conf: loading, v1 compatibility, merging, validation, matching, rewriting, mirrors.

Cases follow containers/image pkg/sysregistriesv2 behaviour (libimage-pull.md §2.5, §3).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from towline.config.paths import ConfigPaths
from towline.config.registries import RegistriesConf, Registry, match_prefix
from towline.config.registries_files import load_registries_conf
from towline.errors import ConfigError, TransportError
from towline.reference import parse_normalized_named, parse_reference

DIGEST = "sha256:" + "0123456789abcdef" * 4


class Layout:
    """A fake filesystem root and home under tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "root"
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.main = self.root / "etc/containers/registries.conf"
        self.system_dir = self.root / "etc/containers/registries.conf.d"
        self.user_dir = self.home / ".config/containers/registries.conf.d"

    def paths(self, **env: str) -> ConfigPaths:
        return ConfigPaths.from_env(
            {"TOWLINE_CONFIG_ROOT": str(self.root), **env}, home=self.home, uid=1000
        )

    def write(self, path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def load(self, main: str | None = None, **env: str) -> RegistriesConf:
        if main is not None:
            self.write(self.main, main)
        return load_registries_conf(self.paths(**env))


@pytest.fixture
def fs(tmp_path: Path) -> Layout:
    return Layout(tmp_path)


# === loading


def test_missing_default_file_is_an_empty_config(fs: Layout) -> None:
    conf = fs.load()
    assert conf.registries == ()
    assert conf.unqualified_search_registries == ()
    assert conf.unqualified_search_registries_origin == ""
    assert conf.short_name_mode == "permissive"
    assert conf.credential_helpers == ("containers-auth.json",)
    assert conf.conf_path == str(fs.main)
    assert conf.conf_dir_path == str(fs.user_dir)


def test_missing_explicit_file_is_an_error(fs: Layout, tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigError, match=r"loading registries configuration \".*nope.conf\""):
        fs.load(CONTAINERS_REGISTRIES_CONF=str(missing))


def test_main_file_values(fs: Layout) -> None:
    conf = fs.load(
        """
        unqualified-search-registries = ["registry.fedoraproject.org/", "quay.io", "docker.io"]
        short-name-mode = "enforcing"
        credential-helpers = ["containers-auth.json", "secretservice"]
        additional-layer-store-auth-helper = "helper"
        unknown-key = 1

        [[registry]]
        location = "registry.com/"
        insecure = true
        """
    )
    assert conf.unqualified_search_registries == (
        "registry.fedoraproject.org",
        "quay.io",
        "docker.io",
    )
    assert conf.unqualified_search_registries_origin == str(fs.main)
    assert conf.short_name_mode == "enforcing"
    assert conf.credential_helpers == ("containers-auth.json", "secretservice")
    assert conf.additional_layer_store_auth_helper == "helper"
    assert conf.registries == (
        Registry(prefix="registry.com", location="registry.com", insecure=True),
    )
    assert conf.registries[0].origin == str(fs.main)


def test_empty_credential_helpers_fall_back_to_auth_files(fs: Layout) -> None:
    assert fs.load("credential-helpers = []").credential_helpers == ("containers-auth.json",)


def test_same_prefix_in_one_file_first_wins_and_list_is_sorted(fs: Layout) -> None:
    conf = fs.load(
        """
        [[registry]]
        prefix = "z.com"
        location = "first.com"
        [[registry]]
        prefix = "a.com"
        location = "a.com"
        [[registry]]
        prefix = "z.com"
        location = "second.com"
        """
    )
    assert [(r.prefix, r.location) for r in conf.registries] == [
        ("a.com", "a.com"),
        ("z.com", "first.com"),
    ]


def test_v1_format_is_converted(fs: Layout) -> None:
    conf = fs.load(
        """
        [registries.search]
        registries = ["registry-a.com////", "registry-c.com", "registry-d.com"]
        [registries.block]
        registries = ["registry-b.com"]
        [registries.insecure]
        registries = ["registry-b.com////", "registry-d.com", "registry-e.com", "registry-a.com"]
        """
    )
    assert conf.unqualified_search_registries == (
        "registry-a.com",
        "registry-c.com",
        "registry-d.com",
    )
    by_prefix = {r.prefix: r for r in conf.registries}
    assert sorted(by_prefix) == [
        "registry-a.com",
        "registry-b.com",
        "registry-d.com",
        "registry-e.com",
    ]
    assert by_prefix["registry-b.com"].blocked
    assert by_prefix["registry-b.com"].insecure
    assert not by_prefix["registry-a.com"].blocked
    assert by_prefix["registry-a.com"].insecure


@pytest.mark.parametrize(
    "text",
    [
        """
        unqualified-search-registries = ["registry-a.com"]
        [registries.search]
        registries = ["registry-a.com"]
        """,
        # Even empty lists count as "set" on both sides (c/image mixing-v1-v2-empty.conf).
        """
        unqualified-search-registries = []
        [registries.search]
        registries = []
        """,
    ],
)
def test_mixing_v1_and_v2_fails(fs: Layout, text: str) -> None:
    with pytest.raises(ConfigError, match="mixing sysregistry v1/v2 is not supported") as info:
        fs.load(text)
    assert str(fs.main) in str(info.value)


def test_v1_drop_in_is_rejected(fs: Layout) -> None:
    fs.write(fs.system_dir / "old.conf", "[registries.search]\nregistries = ['a.com']\n")
    with pytest.raises(ConfigError) as info:
        fs.load()
    assert str(info.value) == (
        f'loading drop-in registries configuration "{fs.system_dir / "old.conf"}": '
        "registry must be in v2 format but is in v1"
    )


def test_invalid_toml_names_the_file(fs: Layout) -> None:
    with pytest.raises(
        ConfigError, match=r"loading registries configuration \".*registries.conf\""
    ):
        fs.load("[[registry]\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[registry]]\nlocation = "registry.com:5000"\nprefix = "http://schema-is-invalid.com"',
            "invalid location 'http://schema-is-invalid.com': URI schemes are not supported",
        ),
        (
            '[[registry]]\nlocation = "https://registry.com"',
            "invalid location 'https://registry.com': URI schemes are not supported",
        ),
        ("[[registry]]\ninsecure = true", "invalid condition: both location and prefix are unset"),
        (
            '[[registry]]\nprefix = "example.com"',
            "invalid condition: location is unset and prefix is not in the format: *.example.com",
        ),
        (
            '[[registry]]\nprefix = "*.example.com/foo"',
            "Wildcarded prefix should be in the format: *.example.com. Current prefix "
            '"*.example.com/foo" is incorrectly formatted',
        ),
        (
            '[[registry]]\nlocation = "r.com"\npull-from-mirror = "all"',
            'pull-from-mirror must not be set for a non-mirror registry "r.com"',
        ),
        (
            '[[registry]]\nlocation = "r.com"\n[[registry.mirror]]\ninsecure = true',
            "invalid condition: mirror location is unset",
        ),
        (
            '[[registry]]\nlocation = "r.com"\nmirror-by-digest-only = true\n'
            '[[registry.mirror]]\nlocation = "m.com"\npull-from-mirror = "digest-only"',
            'cannot set mirror usage mirror-by-digest-only for the registry ("r.com") and '
            'pull-from-mirror for per-mirror ("m.com") at the same time',
        ),
        (
            '[[registry]]\nlocation = "r.com"\n[[registry.mirror]]\nlocation = "m.com"\n'
            'pull-from-mirror = "sometimes"',
            'unsupported pull-from-mirror value "sometimes" for mirror "m.com"',
        ),
        (
            '[[registry]]\nlocation = "r.com"\ninsecure = true\n'
            '[[registry]]\nprefix = "r.com/foo"\nlocation = "r.com"',
            "registry 'r.com' is defined multiple times with conflicting 'insecure' setting",
        ),
        (
            '[[registry]]\nlocation = "r.com"\nblocked = true\n'
            '[[registry]]\nprefix = "x.com"\nlocation = "r.com"',
            "registry 'r.com' is defined multiple times with conflicting 'blocked' setting",
        ),
        (
            'unqualified-search-registries = ["quay.io/ns"]',
            'Invalid unqualified-search-registries entry "quay.io/ns"',
        ),
        ('short-name-mode = "prompt"', 'invalid short-name mode: "prompt"'),
        ('[[registry]]\nlocation = "r.com"\ninsecure = "yes"', "insecure in [[registry]] #1"),
        ('unqualified-search-registries = "quay.io"', "unqualified-search-registries must be"),
    ],
)
def test_validation_errors(fs: Layout, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        fs.load(text)
    assert message in str(info.value)
    assert str(info.value).startswith(f'loading registries configuration "{fs.main}": ')


def test_alias_errors_are_all_reported(fs: Layout) -> None:
    text = """
    [aliases]
    "quay.io/foo" = "quay.io/foo"
    "tagged:1" = "quay.io/foo"
    noreg = "foo"
    withtag = "quay.io/foo:1"
    withdigest = "quay.io/foo@DIGEST"
    """.replace("DIGEST", DIGEST)
    with pytest.raises(ConfigError) as info:
        fs.load(text)
    message = str(info.value)
    assert "validating short-name aliases: " in message
    for part in (
        'invalid short name "quay.io/foo": must not contain registry',
        'invalid short name "tagged:1": must not contain tag',
        'invalid alias "foo": must contain registry and repository',
        'invalid alias "quay.io/foo:1": must not contain tag',
        'invalid alias "quay.io/foo@sha256:0123',
    ):
        assert part in message
    assert "\n" not in message


def test_aliases_are_normalised(fs: Layout) -> None:
    conf = fs.load(
        """
        [aliases]
        docker = "docker.io/foo"
        "quay/foo" = "quay.io/library/foo"
        empty = ""
        """
    )
    docker = conf.lookup_alias("docker")
    assert docker is not None
    assert docker.value == parse_normalized_named("docker.io/library/foo")
    assert docker.origin == str(fs.main)
    empty = conf.lookup_alias("empty")
    assert empty is not None
    assert empty.value is None
    assert conf.lookup_alias("missing") is None


# === drop-ins


def test_drop_ins_merge_in_order(fs: Layout) -> None:
    fs.write(
        fs.main,
        """
        unqualified-search-registries = ["main.com"]
        short-name-mode = "enforcing"
        credential-helpers = ["one"]
        [aliases]
        keep = "quay.io/keep"
        erase = "quay.io/erase"
        replace = "quay.io/old"
        [[registry]]
        location = "a.com"
        [[registry]]
        location = "b.com"
        insecure = true
        """,
    )
    fs.write(
        fs.system_dir / "10-first.conf",
        """
        unqualified-search-registries = ["first.com"]
        [aliases]
        erase = ""
        replace = "quay.io/new"
        [[registry]]
        location = "b.com"
        blocked = true
        """,
    )
    second = fs.write(
        fs.system_dir / "20-second.conf",
        """
        short-name-mode = ""
        [[registry]]
        location = "c.com"
        """,
    )
    fs.write(fs.system_dir / "30-ignored.conf.ignore", 'unqualified-search-registries = ["no"]')
    fs.write(fs.system_dir / "sub/40-nested.conf", 'unqualified-search-registries = ["no"]')
    user = fs.write(fs.user_dir / "00-user.conf", 'unqualified-search-registries = ["user.com"]')
    conf = fs.load()
    assert conf.unqualified_search_registries == ("user.com",)
    assert conf.unqualified_search_registries_origin == str(user)
    assert conf.short_name_mode == "enforcing"
    assert conf.credential_helpers == ("one",)
    assert [(r.prefix, r.insecure, r.blocked) for r in conf.registries] == [
        ("a.com", False, False),
        ("b.com", False, True),
        ("c.com", False, False),
    ]
    assert conf.registries[2].origin == str(second)
    keep, erase, replace = (conf.lookup_alias(n) for n in ("keep", "erase", "replace"))
    assert keep is not None
    assert keep.origin == str(fs.main)
    assert erase is not None
    assert erase.value is None
    assert replace is not None
    assert str(replace.value) == "quay.io/new"


def test_empty_search_list_in_drop_in_replaces(fs: Layout) -> None:
    fs.write(fs.main, 'unqualified-search-registries = ["main.com"]')
    drop_in = fs.write(fs.user_dir / "x.conf", "unqualified-search-registries = []")
    conf = fs.load()
    assert conf.unqualified_search_registries == ()
    assert conf.unqualified_search_registries_origin == str(drop_in)


def test_drop_in_without_search_list_keeps_origin(fs: Layout) -> None:
    fs.write(fs.main, 'unqualified-search-registries = ["main.com"]')
    fs.write(fs.user_dir / "x.conf", 'short-name-mode = "disabled"')
    conf = fs.load()
    assert conf.unqualified_search_registries_origin == str(fs.main)
    assert conf.short_name_mode == "disabled"


def test_drop_ins_apply_without_main_file(fs: Layout) -> None:
    fs.write(fs.system_dir / "a.conf", "[[registry]]\nlocation = 'a.com'\n")
    assert [r.prefix for r in fs.load().registries] == ["a.com"]


def test_user_registries_conf_skips_system_drop_ins(fs: Layout) -> None:
    fs.write(
        fs.home / ".config/containers/registries.conf", "unqualified-search-registries = ['u.io']"
    )
    fs.write(fs.system_dir / "a.conf", "unqualified-search-registries = ['system.io']")
    conf = fs.load()
    assert conf.unqualified_search_registries == ("u.io",)


def test_bad_drop_in_names_the_drop_in(fs: Layout) -> None:
    bad = fs.write(fs.user_dir / "bad.conf", 'short-name-mode = "sometimes"')
    with pytest.raises(ConfigError) as info:
        fs.load()
    assert str(info.value) == (
        f'loading drop-in registries configuration "{bad}": invalid short-name mode: "sometimes"'
    )


# === matching


@pytest.mark.parametrize(
    ("ref", "prefix", "expected"),
    [
        ("example.com", "example.com", 11),
        ("example.com/foo", "example.com", 11),
        ("example.com:5000", "example.com", 11),  # the c/image quirk, kept on purpose
        ("example.com@sha256:abc", "example.com", 11),
        ("example.community", "example.com", -1),
        ("example.co", "example.com", -1),
        ("a.example.com/foo", "*.example.com", 13),
        ("a.b.example.com:5000/foo", "*.example.com", 15),
        ("example.com/foo", "*.example.com", -1),
        ("docker.io/library/busybox", "*.io", 9),
        ("example.net/ns.com/x", "*.com", -1),
        ("a.example.comx/foo", "*.example.com", -1),
    ],
)
def test_match_prefix(ref: str, prefix: str, expected: int) -> None:
    assert match_prefix(ref, prefix) == expected


FIND_REGISTRY_CONF = """
[[registry]]
location = "registry.com:5000"
prefix = "simple-prefix.com"

[[registry]]
location = "another-registry.com:5000"
prefix = "complex-prefix.com:4000/with/path"

[[registry]]
location = "registry.com:5000"
prefix = "another-registry.com"

[[registry]]
location = "no-prefix.com"

[[registry]]
location = "subdomain-prefix.com"
prefix = "*.so.simple-prefix.com"

[[registry]]
location = "subdomain-prefix-2.com"
prefix = "*.simple-prefix.com"

[[registry]]
location = "subdomain-prefix-4.com"
prefix = "*.bar.docker.io"

[[registry]]
location = "subdomain-prefix-2.com"
prefix = "*.docker.io"

[[registry]]
location = "subdomain-prefix-5.com"
prefix = "foo.bar.example.com:5000"

[[registry]]
prefix = "*.internal.registry.com"
"""


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("simple-prefix.com/foo/bar:latest", "simple-prefix.com"),
        ("complex-prefix.com:4000/with/path/and/beyond:tag", "complex-prefix.com:4000/with/path"),
        ("another-registry.com/image", "another-registry.com"),
        ("no-prefix.com/image", "no-prefix.com"),
        ("not.so.simple-prefix.com/foo", "*.so.simple-prefix.com"),
        ("not.quite.simple-prefix.com/foo", "*.simple-prefix.com"),
        ("foo.bar.docker.io/x", "*.bar.docker.io"),
        ("foo.docker.io/x", "*.docker.io"),
        ("foo.bar.example.com:5000/x", "foo.bar.example.com:5000"),
        ("a.internal.registry.com/x", "*.internal.registry.com"),
        ("unknown.com/x", None),
        ("simple-prefix.co/x", None),
    ],
)
def test_find_registry(fs: Layout, name: str, prefix: str | None) -> None:
    registry = fs.load(FIND_REGISTRY_CONF).find_registry(name)
    assert (registry.prefix if registry else None) == prefix


# === rewriting and pull sources

PULL_SOURCES_CONF = """
[[registry]]
prefix = "registry-a.com/foo"
location = "registry-a.com/bar"
[[registry.mirror]]
location = "mirror-1.registry-a.com"
[[registry.mirror]]
location = "mirror-2.registry-a.com"
insecure = true

[[registry]]
prefix = "registry-b.com/foo"
location = "registry-b.com/bar"
mirror-by-digest-only = true
[[registry.mirror]]
location = "mirror-1.registry-b.com"

[[registry]]
prefix = "registry-g.com/baz"
location = "registry-g.com/bar"
[[registry.mirror]]
pull-from-mirror = "digest-only"
location = "mirror-1.registry-g.com"
[[registry.mirror]]
pull-from-mirror = "tag-only"
location = "mirror-2.registry-g.com"
[[registry.mirror]]
location = "mirror-3.registry-g.com"
[[registry.mirror]]
pull-from-mirror = "all"
location = "mirror-4.registry-g.com"

[[registry]]
prefix = "docker.io/library"
location = "example.com"

[[registry]]
prefix = "*.wild.io"
insecure = true

[[registry]]
prefix = "*.rewrite.io"
location = "elsewhere.io"

[[registry]]
location = "blocked.com"
blocked = true
[[registry.mirror]]
location = "mirror.blocked.com"
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "registry-a.com/foo/image:latest",
            [
                ("mirror-1.registry-a.com/image:latest", False, True),
                ("mirror-2.registry-a.com/image:latest", True, True),
                ("registry-a.com/bar/image:latest", False, False),
            ],
        ),
        (
            f"registry-a.com/foo/image@{DIGEST}",
            [
                (f"mirror-1.registry-a.com/image@{DIGEST}", False, True),
                (f"mirror-2.registry-a.com/image@{DIGEST}", True, True),
                (f"registry-a.com/bar/image@{DIGEST}", False, False),
            ],
        ),
        ("registry-b.com/foo/image:latest", [("registry-b.com/bar/image:latest", False, False)]),
        (
            f"registry-b.com/foo/image@{DIGEST}",
            [
                (f"mirror-1.registry-b.com/image@{DIGEST}", False, True),
                (f"registry-b.com/bar/image@{DIGEST}", False, False),
            ],
        ),
        (
            "registry-g.com/baz/image:latest",
            [
                ("mirror-2.registry-g.com/image:latest", False, True),
                ("mirror-3.registry-g.com/image:latest", False, True),
                ("mirror-4.registry-g.com/image:latest", False, True),
                ("registry-g.com/bar/image:latest", False, False),
            ],
        ),
        (
            f"registry-g.com/baz/image@{DIGEST}",
            [
                (f"mirror-1.registry-g.com/image@{DIGEST}", False, True),
                (f"mirror-3.registry-g.com/image@{DIGEST}", False, True),
                (f"mirror-4.registry-g.com/image@{DIGEST}", False, True),
                (f"registry-g.com/bar/image@{DIGEST}", False, False),
            ],
        ),
        ("busybox", [("example.com/busybox:latest", False, False)]),
        ("a.wild.io:5000/x:1", [("a.wild.io:5000/x:1", True, False)]),
        ("a.rewrite.io:5000/x:1", [("elsewhere.io:5000/x:1", False, False)]),
        ("unconfigured.io/x", [("unconfigured.io/x:latest", False, False)]),
    ],
)
def test_pull_sources(fs: Layout, name: str, expected: list[tuple[str, bool, bool]]) -> None:
    conf = fs.load(PULL_SOURCES_CONF)
    sources = conf.pull_sources(parse_reference(name))
    assert [(str(s.reference), s.insecure, s.mirror) for s in sources] == expected


def test_rewrite_to_invalid_reference_is_a_config_error(fs: Layout) -> None:
    conf = fs.load('[[registry]]\nprefix = "example.com/foo"\nlocation = "Bad Location"\n')
    with pytest.raises(ConfigError, match="rewriting reference: ") as info:
        conf.pull_sources(parse_reference("example.com/foo/bar"))
    assert str(fs.main) in str(info.value)


def test_blocked_registry(fs: Layout) -> None:
    conf = fs.load(PULL_SOURCES_CONF)
    assert conf.is_blocked("blocked.com/x")
    assert not conf.is_blocked("mirror.blocked.com/x")
    with pytest.raises(TransportError) as info:
        conf.check_not_blocked("blocked.com/x")
    assert str(info.value) == (f"registry blocked.com is blocked in {fs.main} or {fs.user_dir}")
    assert info.value.slug == "registry_blocked"
    # The mirror of a blocked registry is still tried: the check is per physical endpoint.
    sources = conf.pull_sources(parse_reference("blocked.com/x"))
    assert [str(s.reference) for s in sources] == [
        "mirror.blocked.com/x:latest",
        "blocked.com/x:latest",
    ]
    conf.check_not_blocked(sources[0].reference.name)


def test_insecure_lookup(fs: Layout) -> None:
    conf = fs.load(PULL_SOURCES_CONF)
    assert conf.is_insecure("a.wild.io/x")
    assert not conf.is_insecure("registry-a.com/foo/x")
    assert not conf.is_insecure("localhost:5000/x")  # localhost is not implicitly insecure
