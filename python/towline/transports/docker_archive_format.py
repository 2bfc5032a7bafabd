"""The ``docker save`` archive format: ``manifest.json``, ``repositories`` and member paths.

As containers/image ``docker/internal/tarfile``: ``manifest.json`` is a list of
items ``{Config, RepoTags, Layers}``, each naming files inside the archive; an
image is chosen from it by tag, by ``@index`` or as the only one
(``ChooseManifestItem``); and the names a pulled image gets are the chosen
item's RepoTags (``ManifestTagsForReference``) through libimage's
``NormalizeName``. Messages keep c/image's wording, followed by what to do.

What is written is the layout podman and Docker read: ``manifest.json``,
``repositories``, ``<config-hex>.json`` and one ``<diff_id-hex>/layer.tar`` per
layer (uncompressed).
"""

from __future__ import annotations

import json
import posixpath
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from towline.errors import InvalidReferenceError, ManifestUnknownError, TransportError
from towline.quoting import go_quote
from towline.reference import Reference, normalize_name, parse_normalized_named
from towline.untrusted_json import UntrustedJSONError, load_object

__all__ = [
    "MANIFEST_JSON",
    "MANIFEST_JSON_LIMIT",
    "REPOSITORIES",
    "ManifestItem",
    "WrittenImage",
    "choose_item",
    "clean_path",
    "config_member",
    "config_path",
    "confined_path",
    "escapes",
    "item_names",
    "layer_member",
    "layer_path",
    "parse_manifest_json",
    "refuse_escape",
    "render_manifest_json",
    "render_repositories",
]

MANIFEST_JSON = "manifest.json"
REPOSITORIES = "repositories"
#: Largest manifest.json read (as containers/image's ``iolimits.MaxTarFileManifestSize``).
MANIFEST_JSON_LIMIT = 1 << 20


@dataclass(frozen=True)
class ManifestItem:
    """One image of ``manifest.json``: its config file, its tags, its layer files in order."""

    config: str
    repo_tags: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()


# === member paths


def clean_path(name: str) -> str:
    """Go's ``path.Clean``: how c/image compares member names (``./a//b`` is ``a/b``)."""
    cleaned = posixpath.normpath(name) if name else "."
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")  # POSIX keeps two leading slashes; Go does not
    return cleaned


def escapes(cleaned: str) -> bool:
    """Whether a cleaned member path points outside the archive (absolute, or ``..``)."""
    return cleaned in (".", "") or cleaned.startswith("/") or cleaned.split("/")[0] == ".."


def refuse_escape(archive: str, what: str) -> TransportError:
    """The error for ``what`` (a phrase naming the path) pointing outside the archive."""
    return TransportError(
        f"{archive}: {what} points outside the archive; the archive is malformed or hostile, "
        "refusing it (re-create it with `docker save` or `towline save`)",
        slug="unsafe_path",
    )


def confined_path(name: str, archive: str, what: str) -> str:
    """``name`` cleaned, refused when it points outside the archive (absolute or ``..``).

    c/image only compares such names with the members and so never finds them;
    towline says why instead.
    """
    cleaned = clean_path(name)
    if escapes(cleaned):
        raise refuse_escape(archive, f"{what} {go_quote(name)}")
    return cleaned


# === reading manifest.json


def _load_array(raw: bytes) -> list[Any]:
    """``raw`` as a JSON array, with :func:`load_object`'s limits.

    ``load_object`` takes objects only, so the array is wrapped as the value of
    a random key. A document that would add keys of its own (``[], "x": 1``)
    leaves other keys beside ours and is refused: only a lone array passes.
    """
    key = secrets.token_hex(16)
    document = load_object(b'{"' + key.encode() + b'":' + raw + b"}")
    value = document.get(key)
    if len(document) != 1 or not isinstance(value, list):
        raise UntrustedJSONError("must be a JSON array")
    return value


def _field(item: dict[str, Any], name: str) -> Any:
    # Go's encoding/json matches field names case-insensitively (exact match first).
    if name in item:
        return item[name]
    lowered = name.lower()
    return next((v for k, v in item.items() if k.lower() == lowered), None)


def _strings(value: Any, where: str, archive: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(archive, f"{where} must be a list of strings")
    return tuple(value)


def _invalid(archive: str, problem: str) -> TransportError:
    return TransportError(
        f"{archive}: invalid manifest.json: {problem}; the archive is not a valid `docker save` "
        "archive (re-create it, or check that it is not an OCI archive: oci-archive:)",
        slug="invalid_archive",
    )


def parse_manifest_json(raw: bytes, archive: str) -> list[ManifestItem]:
    """The items of a ``manifest.json``; ``archive`` names the archive in errors."""
    try:
        document = _load_array(raw)
    except UntrustedJSONError as exc:
        raise _invalid(archive, f"it {exc}") from exc
    items = []
    for i, entry in enumerate(document):
        if not isinstance(entry, dict):
            raise _invalid(archive, f"item @{i} must be an object")
        config = _field(entry, "Config")
        if not isinstance(config, str) or not config:
            raise _invalid(archive, f"item @{i} has no Config file name")
        items.append(
            ManifestItem(
                config=config,
                repo_tags=_strings(_field(entry, "RepoTags"), f"item @{i} RepoTags", archive),
                layers=_strings(_field(entry, "Layers"), f"item @{i} Layers", archive),
            )
        )
    return items


def config_member(item: ManifestItem, archive: str) -> str:
    """The cleaned member path of ``item``'s config."""
    return confined_path(item.config, archive, "manifest.json Config")


def layer_member(item: ManifestItem, index: int, archive: str) -> str:
    """The cleaned member path of ``item``'s layer ``index``."""
    return confined_path(item.layers[index], archive, "manifest.json Layers entry")


def _tag_list(items: Sequence[ManifestItem]) -> str:
    tags = [tag for item in items for tag in item.repo_tags]
    return ", ".join(tags) if tags else "no tagged images"


def choose_item(
    items: Sequence[ManifestItem], ref: Reference | None, index: int | None, archive: str
) -> tuple[ManifestItem, int | None]:
    """c/image ``ChooseManifestItem``: the item ``ref`` or ``index`` names, or the only one.

    Returns the item and, when chosen by ``ref``, the position of the matching tag.
    A RepoTag matches when ``ParseNormalizedNamed`` of it equals ``ref`` (which
    carries a tag), so ``busybox:latest`` matches ``docker.io/library/busybox:latest``.
    """
    if ref is not None:
        for position, item in enumerate(items):
            for tag_index, tag in enumerate(item.repo_tags):
                try:
                    parsed = parse_normalized_named(tag)
                except InvalidReferenceError as exc:
                    raise _invalid(
                        archive, f"invalid tag {go_quote(tag)} in item @{position}: {exc}"
                    ) from exc
                if str(parsed) == str(ref):
                    return item, tag_index
        raise ManifestUnknownError(
            f"{archive}: Tag {go_quote(str(ref))} not found; the archive holds {_tag_list(items)}"
        )
    if index is not None:
        if index >= len(items):
            raise ManifestUnknownError(
                f"{archive}: Invalid source index @{index}, only {len(items)} manifest items "
                f"available; use @0 to @{max(len(items) - 1, 0)}"
            )
        return items[index], None
    if len(items) != 1:
        hint = (
            "choose one with docker-archive:PATH:NAME[:TAG] or docker-archive:PATH:@INDEX "
            f"(the archive holds {_tag_list(items)}), or load them all with `towline load`"
            if items
            else "the archive holds no image"
        )
        raise TransportError(
            f"{archive}: Unexpected tar manifest.json: expected 1 item, got {len(items)}; {hint}",
            slug="ambiguous_archive" if items else "invalid_archive",
        )
    return items[0], None


def item_names(item: ManifestItem, tag_index: int | None, archive: str) -> list[str]:
    """The names a pulled item gets (libimage ``storageReferencesReferencesFromArchiveReader``).

    The matching tag when chosen by name, else every RepoTag; each through
    ``NormalizeName`` (``busybox:1`` → ``localhost/busybox:1``). None: unnamed.
    """
    raw = item.repo_tags if tag_index is None else (item.repo_tags[tag_index],)
    names: list[str] = []
    for tag in raw:
        try:
            name = str(normalize_name(tag))
        except InvalidReferenceError as exc:
            raise _invalid(archive, f"invalid RepoTag {go_quote(tag)}: {exc}") from exc
        if name not in names:
            names.append(name)
    return names


# === writing


@dataclass
class WrittenImage:
    """One image written to an archive: its config file, RepoTags and layer files."""

    config_hex: str
    layer_hexes: list[str]
    repo_tags: list[str] = field(default_factory=list)


def layer_path(diff_hex: str) -> str:
    """Where a layer is written: a legacy layer directory named by the diff_id."""
    return f"{diff_hex}/layer.tar"


def config_path(config_hex: str) -> str:
    """Where a config is written."""
    return f"{config_hex}.json"


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def render_manifest_json(images: Iterable[WrittenImage]) -> bytes:
    """``manifest.json`` for the written images, in order."""
    return _dumps(
        [
            {
                "Config": config_path(image.config_hex),
                "RepoTags": image.repo_tags,
                "Layers": [layer_path(h) for h in image.layer_hexes],
            }
            for image in images
        ]
    )


def render_repositories(images: Iterable[WrittenImage]) -> bytes:
    """The legacy ``repositories`` file: ``{name: {tag: top-layer-directory}}``.

    Only Docker's loader for archives without manifest.json reads it; it is
    written as ``docker save`` does, for tools that look for it.
    """
    repositories: dict[str, dict[str, str]] = {}
    for image in images:
        if not image.layer_hexes:
            continue
        for tag in image.repo_tags:
            name, _, version = tag.rpartition(":")
            repositories.setdefault(name, {})[version] = image.layer_hexes[-1]
    return _dumps(repositories)
