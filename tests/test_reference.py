"""Image references: distribution/reference grammar and normalisation, podman defaults.

The cases mirror the behaviour exercised by distribution's normalize_test.go and
reference_test.go, written out as tables here.
"""

from __future__ import annotations

import pytest

from towline.errors import InvalidReferenceError
from towline.reference import (
    Reference,
    image_id_candidate,
    is_local_only_name,
    is_short_name,
    parse_named_strict,
    parse_normalized_named,
    parse_reference,
)

HEX = "86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
DIGEST = f"sha256:{HEX}"
HEX_NAME = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"

# input → (domain, path, tag, digest) from ParseNormalizedNamed (no default tag).
NORMALIZED = [
    ("alpine", ("docker.io", "library/alpine", None, None)),
    ("alpine:3.20", ("docker.io", "library/alpine", "3.20", None)),
    ("library/debian", ("docker.io", "library/debian", None, None)),
    ("docker/docker", ("docker.io", "docker/docker", None, None)),
    ("docker.io/debian", ("docker.io", "library/debian", None, None)),
    ("docker.io/docker/docker", ("docker.io", "docker/docker", None, None)),
    ("index.docker.io/debian", ("docker.io", "library/debian", None, None)),
    ("index.docker.io/docker/docker", ("docker.io", "docker/docker", None, None)),
    ("index.docker.io/library/x:1", ("docker.io", "library/x", "1", None)),
    ("docker.io/library/foo/bar", ("docker.io", "library/foo/bar", None, None)),
    ("store/foo/bar", ("docker.io", "store/foo/bar", None, None)),
    ("other/library", ("docker.io", "other/library", None, None)),
    ("localhost/debian", ("localhost", "debian", None, None)),
    ("localhost/library/debian", ("localhost", "library/debian", None, None)),
    ("localhost:5000/a/b:t", ("localhost:5000", "a/b", "t", None)),
    ("LOCALDOMAIN/debian", ("LOCALDOMAIN", "debian", None, None)),
    ("Docker/docker", ("Docker", "docker", None, None)),
    ("DOCKER/docker", ("DOCKER", "docker", None, None)),
    ("Example.COM/foo", ("Example.COM", "foo", None, None)),
    ("127.0.0.1:5000/docker/docker", ("127.0.0.1:5000", "docker/docker", None, None)),
    ("192.168.0.1:8/debian", ("192.168.0.1:8", "debian", None, None)),
    ("example.com:8000/private/moonbase", ("example.com:8000", "private/moonbase", None, None)),
    ("quay.io/fedora", ("quay.io", "fedora", None, None)),
    ("[fc00::1]:5000/docker", ("[fc00::1]:5000", "docker", None, None)),
    (
        "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
        ("[fc00:1:2:3:4:5:6:7]:5000", "library/debian", None, None),
    ),
    # A single component is always Docker Hub, even when it looks like a host:port.
    ("192.168.0.1", ("docker.io", "library/192.168.0.1", None, None)),
    ("192.168.0.1:80", ("docker.io", "library/192.168.0.1", "80", None)),
    ("localhost:5000", ("docker.io", "library/localhost", "5000", None)),
    ("localhost", ("docker.io", "library/localhost", None, None)),
    # A 64-hex name is allowed when a domain removes the ambiguity with an ID.
    (f"docker.io/{HEX_NAME}", ("docker.io", f"library/{HEX_NAME}", None, None)),
    # 64 characters that are not hex are an ordinary name.
    (
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        (
            "docker.io",
            "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            None,
            None,
        ),
    ),
    ("docker-rules/docker", ("docker.io", "docker-rules/docker", None, None)),
    ("docker---rules/docker", ("docker.io", "docker---rules/docker", None, None)),
    ("dock__er/docker", ("docker.io", "dock__er/docker", None, None)),
    ("d/docker", ("docker.io", "d/docker", None, None)),
    ("jess/t", ("docker.io", "jess/t", None, None)),
    ("a.b-c/e", ("a.b-c", "e", None, None)),
    ("foo:Tag_1.0-x", ("docker.io", "library/foo", "Tag_1.0-x", None)),
    ("foo:" + "t" * 128, ("docker.io", "library/foo", "t" * 128, None)),
    (f"busybox@{DIGEST}", ("docker.io", "library/busybox", None, DIGEST)),
    (f"busybox:latest@{DIGEST}", ("docker.io", "library/busybox", "latest", DIGEST)),
    (f"quay.io/a/b:1@{DIGEST}", ("quay.io", "a/b", "1", DIGEST)),
    (f"localhost:5000/x@sha512:{'ab' * 64}", ("localhost:5000", "x", None, f"sha512:{'ab' * 64}")),
    (f"x@blake3:{'c' * 64}", ("docker.io", "library/x", None, f"blake3:{'c' * 64}")),
    # distribution quirk: a first component with "." that is not a valid host is part of
    # the path and the reference has no domain at all.
    ("foo_bar.com/x", ("", "foo_bar.com/x", None, None)),
    ("a.b_c-d/e", ("", "a.b_c-d/e", None, None)),
    # The 255-character limit is on the path, library/ included; the domain is not counted.
    ("a/" + "b" * 253, ("docker.io", "a/" + "b" * 253, None, None)),
    ("a" * 247, ("docker.io", "library/" + "a" * 247, None, None)),
    ("quay.io/" + "a" * 255, ("quay.io", "a" * 255, None, None)),
]


@pytest.mark.parametrize(("text", "expected"), NORMALIZED)
def test_parse_normalized_named(
    text: str, expected: tuple[str, str, str | None, str | None]
) -> None:
    ref = parse_normalized_named(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == expected


# input → fragment of the reason; every message starts with `invalid reference "<input>": `.
INVALID = [
    ("", "name is empty"),
    (HEX_NAME, "cannot specify 64-byte hexadecimal strings"),
    ("Alpine", "repository name (library/Alpine) must be lowercase"),
    ("docker/Docker", "repository name (docker/Docker) must be lowercase"),
    ("docker.io/docker/Docker", "repository name (docker/Docker) must be lowercase"),
    ("quay.io/Foo:tag", "repository name (Foo) must be lowercase"),
    ("a/" + "b" * 254, "repository name must not be more than 255 characters (it has 256)"),
    ("x" * 256, "repository name must not be more than 255 characters (it has 264)"),
    ("a" * 248, "(it has 256)"),  # library/ counts
    ("quay.io/" + "a" * 256, "(it has 256)"),
    (
        "_".join(["this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255"] * 4)
        + "/docker",
        "must not be more than 255 characters",
    ),
    ("alpine:-x", 'tag "-x" is invalid'),
    ("alpine:.x", 'tag ".x" is invalid'),
    ("alpine:" + "t" * 129, "is invalid"),
    ("alpine:", 'tag "" is invalid'),
    ("alpine:t@g", "invalid"),
    ("alpine@sha256:abc", "a sha256 value has 64 hex digits, this one has 3"),
    (f"alpine@md5:{'a' * 32}", 'unsupported digest algorithm "md5"'),
    (f"alpine@sha256:{HEX.upper()}", "lowercase hexadecimal"),
    (f"alpine@sha256:{HEX}0", "this one has 65"),
    ("alpine@", "invalid"),
    ("https://github.com/docker/docker", "invalid reference format"),
    ("-docker", "invalid reference format"),
    ("-docker/docker", "invalid reference format"),
    ("docker-/docker", "invalid reference format"),
    ("-docker.io/docker/docker", "invalid reference format"),
    ("docker///docker", "invalid reference format"),
    ("docker.io/docker///docker", "invalid reference format"),
    ("____/____", "invalid reference format"),
    ("_docker/_docker", "invalid reference format"),
    ("dock..er/docker", "invalid reference format"),
    ("dock_.er/docker", "invalid reference format"),
    ("dock-.er/docker", "invalid reference format"),
    ("docker/", "invalid reference format"),
    ("[fc00::1]", "invalid reference format"),
    ("[fc00::1]:5000", "invalid reference format"),
    ("fc00::1:5000/debian", "invalid reference format"),
    ("[fe80::1%eth0]:5000/debian", "invalid reference format"),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", "invalid reference format"),
    ("a b", "invalid reference format"),
    ("alpine\n", "invalid reference format"),
    ("alpine:latest\n", "invalid"),
    (" alpine", "invalid reference format"),
    ("alpïne", "invalid reference format"),
    ("alpine:täg", "invalid"),
    ("::", "invalid reference format"),
    ("$$$", "invalid reference format"),
    ("docker://alpine", "invalid reference format"),
    (f"@{DIGEST}", "invalid reference format"),
    (":tag", "invalid reference format"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID)
def test_parse_normalized_named_rejects(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_normalized_named(text)
    message = str(info.value)
    assert fragment in message
    # The message quotes what the user typed, escaped so odd characters stay visible.
    assert message.startswith("invalid reference ")
    assert "\n" not in message
    if "\n" not in text and text.isascii():
        assert message.startswith(f'invalid reference "{text}": ')


def test_exact_lowercase_message() -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_reference("Alpine")
    assert str(info.value) == (
        'invalid reference "Alpine": repository name (library/Alpine) must be lowercase'
    )
    assert isinstance(info.value, ValueError)
    assert info.value.slug == "invalid_reference"


# input → str(parse_reference(input)).
PARSE_REFERENCE = [
    ("alpine", "docker.io/library/alpine:latest"),
    ("alpine:3.20", "docker.io/library/alpine:3.20"),
    ("docker.io/alpine", "docker.io/library/alpine:latest"),
    ("index.docker.io/user/app", "docker.io/user/app:latest"),
    ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
    ("localhost/x", "localhost/x:latest"),
    ("quay.io/repo/fedora", "quay.io/repo/fedora:latest"),
    (f"alpine@{DIGEST}", f"docker.io/library/alpine@{DIGEST}"),
    # Tag and digest: the tag is dropped, the digest decides.
    (f"alpine:3.20@{DIGEST}", f"docker.io/library/alpine@{DIGEST}"),
    (f"quay.io/a/b:1@{DIGEST}", f"quay.io/a/b@{DIGEST}"),
    ("localhost:5000", "docker.io/library/localhost:5000"),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_REFERENCE)
def test_parse_reference(text: str, expected: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == expected
    # Round trip: the normalised string parses to the same reference.
    assert parse_reference(str(ref)) == ref
    assert str(parse_reference(str(ref))) == expected


@pytest.mark.parametrize("text", [t for t, _ in NORMALIZED])
def test_round_trip_every_valid_name(text: str) -> None:
    ref = parse_reference(text)
    assert str(parse_reference(str(ref))) == str(ref)
    assert parse_reference(ref.familiar()) == ref
    assert (ref.tag is None) != (ref.digest is None)


@pytest.mark.parametrize(("text", "_fragment"), INVALID)
def test_parse_reference_rejects_what_normalized_rejects(text: str, _fragment: str) -> None:
    with pytest.raises(InvalidReferenceError):
        parse_reference(text)


def test_reference_fields_and_name() -> None:
    ref = parse_reference(f"quay.io/a/b:1@{DIGEST}")
    assert ref == Reference("quay.io", "a/b", None, DIGEST)
    assert ref.name == "quay.io/a/b"
    assert parse_reference("foo_bar.com/x").name == "foo_bar.com/x"


# canonical string → familiar form (FamiliarString).
FAMILIAR = [
    ("docker.io/library/alpine:latest", "alpine:latest"),
    ("docker.io/library/ubuntu", "ubuntu"),
    ("docker.io/library/foo/bar", "library/foo/bar"),
    ("docker.io/fooo/bar", "fooo/bar"),
    ("docker.io/nonlibrary/ubuntu", "nonlibrary/ubuntu"),
    ("docker.io/library/ubuntu-12.04-base", "ubuntu-12.04-base"),
    ("localhost/fooo", "localhost/fooo"),
    ("LOCALDOMAIN/fooo/bar", "LOCALDOMAIN/fooo/bar"),
    ("127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase"),
    ("example.com:8000/private/moonbase", "example.com:8000/private/moonbase"),
    (f"docker.io/library/busybox:latest@{DIGEST}", f"busybox:latest@{DIGEST}"),
    (f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
]


@pytest.mark.parametrize(("canonical", "familiar"), FAMILIAR)
def test_familiar(canonical: str, familiar: str) -> None:
    assert parse_normalized_named(canonical).familiar() == familiar
    # The familiar form normalises back to the canonical one.
    assert str(parse_normalized_named(familiar)) == canonical


def test_with_tag_and_digest() -> None:
    ref = parse_reference("alpine")
    assert str(ref.with_tag("3.20")) == "docker.io/library/alpine:3.20"
    pinned = ref.with_digest(DIGEST)
    assert str(pinned) == f"docker.io/library/alpine:latest@{DIGEST}"
    assert str(pinned.with_tag("1")) == f"docker.io/library/alpine:1@{DIGEST}"
    with pytest.raises(
        InvalidReferenceError, match=r'invalid tag "-foo" for docker.io/library/alpine'
    ):
        ref.with_tag("-foo")
    with pytest.raises(InvalidReferenceError, match="no ':' separator"):
        ref.with_digest("foo")
    with pytest.raises(InvalidReferenceError, match="unsupported digest algorithm"):
        ref.with_digest(f"md5:{'a' * 32}")


@pytest.mark.parametrize(
    "text",
    [
        "docker.io/library/foo",
        "docker.io/library/foo:1",
        f"docker.io/library/foo@{DIGEST}",
        f"docker.io/library/foo:1@{DIGEST}",
        "quay.io/a/b:t",
        "localhost:5000/x",
        "example.com/image",
    ],
)
def test_parse_named_strict_accepts_canonical(text: str) -> None:
    assert str(parse_named_strict(text)) == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("foo", "docker.io/library/foo"),
        ("foo:1", "docker.io/library/foo:1"),
        ("docker.io/foo", "docker.io/library/foo"),
        ("index.docker.io/library/foo", "docker.io/library/foo"),
        ("library/foo", "docker.io/library/foo"),
    ],
)
def test_parse_named_strict_rejects_familiar(text: str, canonical: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_named_strict(text)
    assert str(info.value) == (
        f'invalid reference "{text}": repository name must be canonical '
        f"(the canonical form is {canonical})"
    )


def test_parse_named_strict_rejects_invalid() -> None:
    with pytest.raises(InvalidReferenceError, match="must be lowercase"):
        parse_named_strict("quay.io/Foo")


@pytest.mark.parametrize(
    ("text", "short"),
    [
        ("fedora", True),
        ("fedora:39", True),
        ("library/fedora", True),
        ("library/fedora:tag", True),
        (f"busybox@{DIGEST}", True),
        (f"busybox:latest@{DIGEST}", True),
        ("a/b/c", True),
        # An uppercase first component is a (bogus) domain without "." or ":".
        ("FOO/bar", True),
        # Not a valid host, so not a domain: still short, as containers/image says.
        ("foo_bar.com/x", True),
        ("quay.io/fedora", False),
        ("quay.io/fedora:1", False),
        ("localhost/x", False),
        ("localhost:5000/x", False),
        ("docker.io/fedora", False),
        ("docker.io/library/fedora", False),
        ("server.org:5000/lib/image", False),
        ("[::1]:5000/x", False),
        # Unparseable input is not a short name.
        ("", False),
        ("$$$", False),
        ("::", False),
        (" ", False),
        ("docker://fedora", False),
        ("Fedora", False),
    ],
)
def test_is_short_name(text: str, short: bool) -> None:
    assert is_short_name(text) is short


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"sha256:{HEX}", HEX),
        (HEX, HEX),
        (HEX_NAME, HEX_NAME),
        # 64 characters but not hex: a repository name, not an ID.
        ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", None),
        (HEX.upper(), None),
        (HEX[:12], None),
        (HEX + "0", None),
        ("alpine", None),
        (f"alpine@{DIGEST}", None),
        (f"docker.io/{HEX_NAME}", None),
        ("", None),
    ],
)
def test_image_id_candidate(text: str, expected: str | None) -> None:
    assert image_id_candidate(text) == expected


@pytest.mark.parametrize(
    "text", ["sha256:abc", f"sha256:{HEX.upper()}", "sha256:", f"sha256:{HEX}0"]
)
def test_image_id_candidate_rejects_bad_sha256(text: str) -> None:
    with pytest.raises(InvalidReferenceError, match="invalid format: no 64-byte hexadecimal value"):
        image_id_candidate(text)


@pytest.mark.parametrize(
    ("text", "local_only"),
    [
        (f"sha256:{HEX}", True),
        ("sha256:abc", True),
        (HEX, True),
        ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", True),
        (f"docker.io/{HEX_NAME}"[:64], False),
        ("a" * 63 + ".", False),
        ("alpine", False),
        (HEX[:12], False),
    ],
)
def test_is_local_only_name(text: str, local_only: bool) -> None:
    assert is_local_only_name(text) is local_only


def test_reference_is_frozen_and_hashable() -> None:
    ref = parse_reference("alpine")
    assert {ref, parse_reference("docker.io/library/alpine:latest")} == {ref}
    with pytest.raises(AttributeError):
        ref.tag = "x"  # type: ignore[misc]
