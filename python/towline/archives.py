"""``save`` and ``load``: images of the store into one archive or layout, and back.

Saving follows libimage's ``Runtime.Save`` (podman 4): the images, each looked up
in the store, are copied from ``containers-storage:`` into ONE destination opened
through the transport table, which is committed once at the end or aborted on
any failure (nothing is left at the output). Names, as podman gives them:

- an image looked up by name carries that name (the normalized name it was found
  under); looked up by ID (or ID prefix, or digest) it is saved unnamed;
- without ``multi_image`` only the first NAME is an image: the others are more
  names for it (podman's "additional tags", normalized as libimage's
  ``NormalizeName``: ``foo`` → ``localhost/foo:latest``);
- with ``multi_image`` every NAME is an image; names of one image are grouped
  in the order given, a repeated name counts once. Only ``docker-archive`` and
  ``oci-archive`` hold several images (podman: ``docker-archive`` only).

A ``docker-archive`` takes all names of an image as its RepoTags; an OCI layout
or archive gets one index entry per name (``org.opencontainers.image.ref.name``),
all pointing at the same manifest; ``dir:`` holds no name.

Loading finds the format by content, as podman: a tar with ``oci-layout`` or
``index.json`` is an ``oci-archive`` (tried first, as podman does), one with
``manifest.json`` a ``docker-archive``; a directory is an ``oci:`` layout or a
``dir:`` image. Every image in it is then a reference of its transport
(:func:`archive_references`: ``docker-archive:PATH:@N``, ``oci-archive:PATH:@N``,
``oci:PATH:REF`` by ref.name where an entry has one), which the runtime pulls one
after the other; each transport names what it reads (RepoTags, annotations).
"""

from __future__ import annotations

import importlib
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from towline.copy import CopyOptions, copy_image
from towline.errors import InvalidReferenceError, TowlineError, TransportError
from towline.events import Reporter
from towline.image import Image
from towline.reference import normalize_name, parse_reference
from towline.transports import parse_transport_reference
from towline.transports.base import ImageDestination, ImageReference, TransportContext
from towline.untrusted_json import UntrustedJSONError, load_object

__all__ = [
    "MULTI_IMAGE_FORMATS",
    "SAVE_FORMATS",
    "SavedImage",
    "archive_references",
    "detect_format",
    "output_reference",
    "plan_save",
    "save_images",
    "tag_name",
]

#: ``--format`` of save → the transport written.
SAVE_FORMATS: dict[str, str] = {
    "docker-archive": "docker-archive",
    "oci-archive": "oci-archive",
    "oci-dir": "oci",
    "docker-dir": "dir",
}
#: Formats that hold several images.
MULTI_IMAGE_FORMATS = frozenset({"docker-archive", "oci-archive"})

_REF_NAME = "org.opencontainers.image.ref.name"
#: Largest index.json read from an archive to count its images (as c/image's JSON cap).
_INDEX_LIMIT = 4 << 20

Lookup = Callable[[str], tuple[Image, str]]


@dataclass
class SavedImage:
    """One image to write, with the names it carries there (RepoTags or ref.name)."""

    image: Image
    names: list[str] = field(default_factory=list)


# === names


def tag_name(value: str) -> str:
    """A new name for an image (``tag``, additional names of ``save``), as libimage's.

    Normalized by ``NormalizeName`` (``foo`` → ``localhost/foo:latest``); a digest
    is refused, as podman's "tag by digest not supported".
    """
    ref = normalize_name(value)
    if ref.digest is not None:
        raise InvalidReferenceError(f"{value}: tag by digest not supported")
    return str(ref)


def _found_name(image: Image, resolved: str) -> str | None:
    """The name an image looked up as ``resolved`` is saved under; None when found by ID."""
    if image.id.startswith(resolved.removeprefix("sha256:")):
        return None
    ref = parse_reference(resolved)
    return None if ref.digest is not None else str(ref)


def plan_save(
    names: Sequence[str], fmt: str, multi_image: bool, lookup: Lookup
) -> list[SavedImage]:
    """The images ``names`` denote and the names each is saved under (see the module doc)."""
    transport = _save_transport(fmt)
    if not names:
        raise TowlineError("no image to save: give at least one name")
    if not multi_image:
        image, resolved = lookup(names[0])
        found = _found_name(image, resolved)
        extra = [tag_name(n) for n in names[1:]] if transport != "dir" else []
        return [SavedImage(image, _unique([found] if found else []) + _unique(extra))]
    if len(names) > 1 and fmt not in MULTI_IMAGE_FORMATS:
        raise TransportError(
            f'unsupported format "{fmt}" for saving multiple images '
            "(only docker-archive and oci-archive)",
            slug="multiple_images",
        )
    planned: dict[str, SavedImage] = {}
    for name in dict.fromkeys(names):
        image, resolved = lookup(name)
        saved = planned.setdefault(image.id, SavedImage(image))
        found = _found_name(image, resolved)
        if found and found not in saved.names:
            saved.names.append(found)
    return list(planned.values())


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _save_transport(fmt: str) -> str:
    transport = SAVE_FORMATS.get(fmt)
    if transport is None:
        raise TransportError(
            f"format value must be one of {', '.join(SAVE_FORMATS)}, not {fmt!r}",
            slug="unknown_format",
        )
    return transport


def output_reference(fmt: str, output: Path) -> ImageReference:
    """The destination ``save`` writes for ``--format fmt -o output``."""
    transport = _save_transport(fmt)
    if ":" in str(output):
        # The transport reference would split there (podman refuses it the same way).
        raise TransportError(
            f"invalid filename (should not contain ':') {str(output)!r}", slug="invalid_path"
        )
    return parse_transport_reference(transport, str(output))


# === save


@runtime_checkable
class _OneNamePerImage(Protocol):
    """An OCI layout destination: the ref.name of the manifests put from now on."""

    def set_ref_name(self, name: str | None) -> None: ...


@runtime_checkable
class _SeveralNamesPerImage(Protocol):
    """A docker-archive destination: the RepoTags of the next image."""

    def set_repo_tags(self, names: Sequence[str]) -> None: ...


def save_images(
    plan: Sequence[SavedImage],
    destination: ImageReference,
    context: TransportContext,
    options: CopyOptions,
    reporter: Reporter,
) -> None:
    """Copy every planned image into one destination and commit it; abort it on failure."""
    dest = destination.new_destination(context)
    try:
        for saved in plan:
            for _ in _name_each_copy(dest, saved.names):
                source = parse_transport_reference("containers-storage", saved.image.id)
                src = source.new_source(context)
                try:
                    copy_image(src, dest, options, reporter)
                finally:
                    src.close()
        dest.commit()
    except BaseException:
        dest.abort()
        raise


def _name_each_copy(dest: ImageDestination, names: list[str]) -> Iterator[None]:
    """Name the next copy of one image before each copy is made (one per item yielded).

    A destination that names an image once per manifest (an OCI index entry per
    ref.name) gets one copy per name: the blobs are there after the first, so
    the others only add an entry.
    """
    if isinstance(dest, _SeveralNamesPerImage):
        dest.set_repo_tags(names)
        yield None
    elif isinstance(dest, _OneNamePerImage):
        each: list[str | None] = list(names) or [None]
        for name in each:
            dest.set_ref_name(name)
            yield None
    else:
        yield None


# === load


def detect_format(path: Path) -> str:
    """The transport of what is at ``path``, by content: ``oci-archive``, ``docker-archive``,
    ``oci`` or ``dir``. Raises :class:`~towline.errors.TransportError` for anything else."""
    if path.is_dir():
        if (path / "oci-layout").is_file() or (path / "index.json").is_file():
            return "oci"
        if (path / "manifest.json").is_file():
            return "dir"
        raise _unrecognized(path, "a directory with neither index.json nor manifest.json")
    try:
        with tarfile.open(path, "r:*") as tar:
            docker = False
            for member in tar:
                name = member.name.removeprefix("./")
                if name in ("oci-layout", "index.json"):
                    return "oci-archive"
                docker = docker or name == "manifest.json"
    except FileNotFoundError as exc:
        raise TransportError(f"{path}: no such file", slug="not_found") from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _unrecognized(path, f"not a tar archive ({exc})") from exc
    if docker:
        return "docker-archive"
    raise _unrecognized(path, "a tar with neither index.json nor manifest.json")


def _unrecognized(path: Path, what: str) -> TransportError:
    return TransportError(
        f"{path}: payload does not match any of the supported image formats "
        f"(oci-archive, docker-archive, oci, dir): {what}",
        slug="unknown_format",
    )


def archive_references(path: Path) -> list[ImageReference]:
    """One reference per image at ``path`` (an archive or a directory), in its order."""
    if ":" in str(path):
        raise TransportError(
            f"invalid filename (should not contain ':') {str(path)!r}", slug="invalid_path"
        )
    fmt = detect_format(path)
    if fmt == "docker-archive":
        module = importlib.import_module("towline.transports.docker_archive")
        references: list[ImageReference] = list(module.list_archive_images(str(path)))
        return references
    if fmt == "dir":
        return [parse_transport_reference("dir", str(path))]
    return [_entry_reference(fmt, path, i, name) for i, name in enumerate(_index_names(path, fmt))]


def _entry_reference(fmt: str, path: Path, position: int, name: str | None) -> ImageReference:
    """Entry ``position`` of a layout's index.json.

    An ``oci-archive:`` entry by position (its source names it from its annotations);
    an ``oci:`` directory entry by its ref.name where it has one, the only way the
    ``oci:`` transport names what it reads (libimage ``copyFromDefault``).
    """
    if fmt == "oci" and name:
        try:
            return parse_transport_reference(fmt, f"{path}:{name}")
        except InvalidReferenceError:
            pass  # not a name the transport accepts: the entry stays unnamed
    return parse_transport_reference(fmt, f"{path}:@{position}")


def _index_names(path: Path, fmt: str) -> list[str | None]:
    """The ref.name (or None) of every entry the index.json of a layout (or archive) lists."""
    try:
        if fmt == "oci":
            raw = _read_capped(path / "index.json")
        else:
            raw = _read_member(path, "index.json")
        manifests = load_object(raw).get("manifests")
    except (UntrustedJSONError, OSError, tarfile.TarError) as exc:
        raise TransportError(f"{fmt}:{path}: index.json {exc}", slug="invalid_manifest") from exc
    if not isinstance(manifests, list) or not manifests:
        raise TransportError(f"{fmt}:{path}: index.json lists no image", slug="no_image")
    names: list[str | None] = []
    for entry in manifests:
        annotations = entry.get("annotations") if isinstance(entry, dict) else None
        name = annotations.get(_REF_NAME) if isinstance(annotations, dict) else None
        names.append(name if isinstance(name, str) else None)
    return names


def _read_capped(path: Path) -> bytes:
    with open(path, "rb") as file:
        data = file.read(_INDEX_LIMIT + 1)
    if len(data) > _INDEX_LIMIT:
        raise UntrustedJSONError(f"is larger than {_INDEX_LIMIT} bytes")
    return data


def _read_member(path: Path, wanted: str) -> bytes:
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if member.name.removeprefix("./") != wanted:
                continue
            if not member.isfile():
                raise UntrustedJSONError("is not a regular file")
            if member.size > _INDEX_LIMIT:
                raise UntrustedJSONError(f"is larger than {_INDEX_LIMIT} bytes")
            extracted = tar.extractfile(member)
            assert extracted is not None  # a regular file
            return extracted.read()
    raise UntrustedJSONError("is missing")
