"""Image references: the distribution/reference grammar and Docker normalisation.

Follows github.com/distribution/reference (regexp.go, reference.go,
normalize.go): the same grammar, the same domain rule and the same
``docker.io/library/`` normalisation, so a name means here what it means to
podman, skopeo and Docker. On top of that, :func:`parse_reference` adds the
``latest`` default and drops the tag of a ``name:tag@digest`` (the digest
decides), as libimage does.

Short-name and image-ID helpers (:func:`is_short_name`,
:func:`image_id_candidate`) follow containers/image ``pkg/shortnames`` and
libimage's local lookup rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from towline.digest import parse_digest
from towline.errors import InvalidReferenceError
from towline.quoting import go_quote

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "NAME_TOTAL_LENGTH_MAX",
    "Reference",
    "image_id_candidate",
    "is_local_only_name",
    "is_short_name",
    "normalize_name",
    "parse_named_strict",
    "parse_normalized_named",
    "parse_reference",
]

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
#: Longest repository path (everything after the domain) distribution accepts.
NAME_TOTAL_LENGTH_MAX = 255

_LEGACY_DEFAULT_DOMAIN = "index.docker.io"
_OFFICIAL_REPO_PREFIX = "library/"
_LOCALHOST = "localhost"

# === grammar (regexp.go), built from the same pieces so the two can be compared.
# re.ASCII because Go's \w is ASCII-only; fullmatch() because Python's $ also
# matches before a trailing newline.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}"

_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_ANCHORED_NAME_RE = re.compile(rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})", re.ASCII)
_NAME_RE = re.compile(_NAME, re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)

_TAG_RULE = 'up to 128 letters, digits, "_", "." and "-", not starting with "." or "-"'
_NAME_RULE = (
    "repository path components are lowercase letters and digits joined by "
    '".", "_", "__" or "-", separated by "/"; e.g. docker.io/library/alpine:3.20'
)


def _invalid(value: str, reason: str) -> InvalidReferenceError:
    return InvalidReferenceError(f"invalid reference {go_quote(value)}: {reason}")


@dataclass(frozen=True)
class Reference:
    """A parsed image reference.

    ``domain`` is the registry (``docker.io``, ``localhost:5000``...) and ``path``
    the repository inside it (``library/alpine``). ``tag`` and ``digest`` are
    None when absent; ``digest`` is the ``algorithm:hex`` string. ``str()`` is
    the normalised form ``domain/path[:tag][@digest]``.

    The domain is empty only for the rare names distribution accepts without
    one (a first component such as ``foo_bar.com`` that is not a valid host).
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository name without tag or digest: ``domain/path``."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def familiar(self) -> str:
        """The Docker UI short form: ``docker.io/library/alpine:latest`` → ``alpine:latest``.

        Only Docker Hub names are shortened, and ``library/`` only when nothing
        is nested below it (distribution's ``FamiliarString``).
        """
        domain, path = self.domain, self.path
        if domain == DEFAULT_DOMAIN:
            domain = ""
            rest = path.removeprefix(_OFFICIAL_REPO_PREFIX)
            if rest != path and "/" not in rest:
                path = rest
        return str(Reference(domain, path, self.tag, self.digest))

    def with_tag(self, tag: str) -> Reference:
        """Return a copy carrying ``tag`` (the digest, if any, is kept)."""
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReferenceError(
                f"invalid tag {go_quote(tag)} for {self.name}: use {_TAG_RULE}"
            )
        return replace(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        """Return a copy pinned to ``digest`` (the tag, if any, is kept)."""
        return replace(self, digest=str(parse_digest(digest)))


def _diagnose(value: str) -> str:
    """Say which part of a string that does not match the grammar is wrong."""
    rest, at, digest = value.partition("@")
    tag: str | None = None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
    if _NAME_RE.fullmatch(rest):
        if tag is not None and not _TAG_RE.fullmatch(tag):
            return f"tag {go_quote(tag)} is invalid: use {_TAG_RULE}"
        if at and not _DIGEST_RE.fullmatch(digest):
            try:
                parse_digest(digest)
            except InvalidReferenceError as exc:
                return str(exc)
            return f"digest {go_quote(digest)} is malformed"
    return f"invalid reference format: {_NAME_RULE}"


def _parse(value: str, shown: str | None = None) -> Reference:
    """distribution's ``Parse``: the grammar alone, no normalisation.

    Errors quote ``shown`` (what the user typed) when ``value`` is a rewritten form of it.
    """
    original = value if shown is None else shown
    if not value:
        raise _invalid(original, "the name is empty; give an image name such as alpine:latest")
    match = _REFERENCE_RE.fullmatch(value)
    if match is None:
        lowered = value.lower()
        if lowered != value and _REFERENCE_RE.fullmatch(lowered):
            raise _invalid(original, "repository name must be lowercase")
        raise _invalid(original, _diagnose(value))
    name, tag, digest = match.group(1, 2, 3)
    name_match = _ANCHORED_NAME_RE.fullmatch(name)
    if name_match is None:  # unreachable: the group already matched the same pattern
        raise _invalid(original, f"invalid reference format: {_NAME_RULE}")
    domain, path = name_match.group(1) or "", name_match.group(2)
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(
            original,
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters "
            f"(it has {len(path)})",
        )
    if digest is not None:
        try:
            digest = str(parse_digest(digest))
        except InvalidReferenceError as exc:
            raise _invalid(original, str(exc)) from exc
    return Reference(domain, path, tag, digest)


def _split_docker_domain(value: str) -> tuple[str, str]:
    """normalize.go ``splitDockerDomain``: decide whether the first component is a registry."""
    first, slash, remainder = value.partition("/")
    if not slash:
        # A single component is always a Docker Hub name, even "localhost:5000",
        # which becomes library/localhost with tag 5000 (distribution's FIXME).
        return DEFAULT_DOMAIN, _OFFICIAL_REPO_PREFIX + value
    if first == _LOCALHOST:
        domain = first
    elif first == _LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    elif ("." in first or ":" in first) or first.lower() != first:
        # Uppercase is not allowed in repository paths, so it must be a host.
        domain = first
    else:
        domain, remainder = DEFAULT_DOMAIN, value
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = _OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse_normalized_named(value: str) -> Reference:
    """distribution's ``ParseNormalizedNamed``: parse a familiar name into canonical form.

    No domain means ``docker.io``; ``index.docker.io`` becomes ``docker.io``; a
    single Docker Hub component gets ``library/``. No default tag is added and a
    ``name:tag@digest`` keeps both. Raises
    :class:`~towline.errors.InvalidReferenceError` naming the input and the problem.
    """
    if not value:
        raise _invalid(value, "the name is empty; give an image name such as alpine:latest")
    if _IDENTIFIER_RE.fullmatch(value):
        raise _invalid(
            value,
            "invalid repository name, cannot specify 64-byte hexadecimal strings "
            "(to refer to a local image by ID, use sha256:<id>)",
        )
    domain, remainder = _split_docker_domain(value)
    # The lowercase check covers only the repository part; a host may have capitals.
    remote = re.split(r"[:@]", remainder, maxsplit=1)[0]
    if remote.lower() != remote:
        raise _invalid(value, f"repository name ({remote}) must be lowercase")
    return _parse(f"{domain}/{remainder}", shown=value)


def parse_reference(value: str) -> Reference:
    """Parse an image name as podman does: normalised, ``latest`` by default.

    ``alpine`` → ``docker.io/library/alpine:latest``. When both a tag and a
    digest are given, the tag is dropped and the digest decides (Docker and
    podman compatibility).
    """
    ref = parse_normalized_named(value)
    if ref.digest is not None and ref.tag is not None:
        return replace(ref, tag=None)
    if ref.digest is None and ref.tag is None:
        return replace(ref, tag=DEFAULT_TAG)
    return ref


def normalize_name(value: str) -> Reference:
    """libimage's ``NormalizeName``: how names found in archives are stored.

    Unlike :func:`parse_reference`, a name without a registry goes to
    ``localhost/`` (``pretty-empty:latest`` → ``localhost/pretty-empty:latest``);
    ``docker.io/foo`` still becomes ``docker.io/library/foo``; ``latest`` is added
    and a tag beside a digest is dropped.
    """
    first, slash, _ = value.partition("/")
    if not slash or not ("." in first or ":" in first or first == _LOCALHOST):
        value = f"{_LOCALHOST}/{value}"
    return parse_reference(value)


def parse_named_strict(value: str) -> Reference:
    """distribution's ``ParseNamed``: accept only names already in canonical form.

    Used where a rewritten name (registries.conf prefix → location) must not be
    re-normalised: ``docker.io/library/foo:1`` passes, ``foo:1`` does not.
    """
    ref = parse_normalized_named(value)
    if str(ref) != value:
        raise _invalid(value, f"repository name must be canonical (the canonical form is {ref})")
    return ref


def is_short_name(value: str) -> bool:
    """True when ``value`` names an image without a registry (containers/image shortnames).

    The name must parse, and its first component must not look like a host: no
    ``.`` or ``:`` and not ``localhost``. ``fedora``, ``library/fedora:1`` and
    ``busybox@sha256:…`` are short; ``quay.io/x``, ``localhost/x`` and
    ``docker.io/x`` are not. Unparseable input is not a short name.
    """
    try:
        domain = _parse(value).domain
    except InvalidReferenceError:
        return False
    return not ("." in domain or ":" in domain or domain == _LOCALHOST)


def is_local_only_name(value: str) -> bool:
    """True when libimage would look ``value`` up only locally, never pull it.

    That is ``sha256:…`` or exactly 64 characters with none of ``/.:@`` (the
    test in libimage's ``Runtime.Pull``); such a name may still be a repository
    name, so look it up by :func:`image_id_candidate` first, then by name.
    """
    return value.startswith("sha256:") or (len(value) == 64 and not any(c in value for c in "/.:@"))


def image_id_candidate(value: str) -> str | None:
    """The full image ID (64 hex) ``value`` denotes, or None if it is not one.

    ``sha256:<64 hex>`` and a bare 64-hex string are IDs. ``sha256:`` followed
    by anything else is an error, as in libimage (it is never a registry name).
    ID prefixes are the store's business and return None here.
    """
    if value.startswith("sha256:"):
        hex_id = value.removeprefix("sha256:")
        if _IDENTIFIER_RE.fullmatch(hex_id):
            return hex_id
        raise InvalidReferenceError(
            f"invalid image ID {go_quote(value)}: invalid format: no 64-byte hexadecimal value "
            "(an ID is sha256: followed by 64 lowercase hex digits)"
        )
    if len(value) == 64 and not any(c in value for c in "/.:@"):
        return value if _IDENTIFIER_RE.fullmatch(value) else None
    return None
