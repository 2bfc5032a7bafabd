"""The ``oci:`` transport: an OCI image layout directory, as a source and a destination.

A layout (OCI image-spec ``image-layout.md``) is ``oci-layout`` (``{"imageLayoutVersion":
"1.0.0"}``), ``index.json`` (an OCI index whose entries are the images, each named by
its ``org.opencontainers.image.ref.name`` annotation) and ``blobs/<alg>/<hex>``.
References are ``oci:PATH[:REF]`` or ``oci:PATH:@INDEX``, parsed as c/image's
``oci/layout`` does. Reading is :mod:`towline.transports.oci_layout_source` (shared
with ``oci-archive:``), writing :mod:`towline.transports.oci_layout_dest`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from towline.errors import InvalidReferenceError
from towline.manifest import Descriptor
from towline.quoting import go_quote
from towline.reference import parse_reference
from towline.transports.base import TransportContext
from towline.transports.oci_layout_dest import LayoutDestination
from towline.transports.oci_layout_source import DirectoryFiles, LayoutSource, valid_ref_name

__all__ = [
    "LayoutSpec",
    "OCIReference",
    "parse",
    "parse_layout_spec",
    "refuse_index_destination",
]


@dataclass(frozen=True)
class LayoutSpec:
    """``PATH[:REF]`` or ``PATH:@INDEX``: where a layout is and which of its images."""

    path: str
    image: str = ""
    index: int | None = None

    def __str__(self) -> str:
        if self.index is not None:
            return f"{self.path}:@{self.index}"
        return f"{self.path}:{self.image}" if self.image else self.path


def parse_layout_spec(transport: str, rest: str) -> LayoutSpec:
    """Split and check ``rest`` as c/image ``ParseReferenceIntoElements`` does.

    The path ends at the first ``:`` (so it cannot contain one); the rest is an
    image name of the image-spec grammar or ``@N``. Raises
    :class:`~towline.errors.InvalidReferenceError`.
    """
    path, _, image = rest.partition(":")
    if not path:
        raise InvalidReferenceError(
            f"invalid {transport}: reference {go_quote(rest)}: the path is empty; "
            f"use {transport}:PATH[:REF]"
        )
    if image.startswith("@"):
        number = image[1:]
        if not number.isdigit() or not number.isascii():
            raise InvalidReferenceError(
                f"invalid {transport}: reference {go_quote(rest)}: invalid source index "
                f"@{number}: not a non-negative integer"
            )
        return LayoutSpec(path, index=int(number))
    if image and not valid_ref_name(image):
        raise InvalidReferenceError(
            f"invalid {transport}: reference {go_quote(rest)}: invalid image {image}: "
            "use letters, digits and separators (-._:@+/), e.g. myimage:1.0"
        )
    return LayoutSpec(path, image)


@dataclass(frozen=True)
class OCIReference:
    """``oci:PATH[:REF]`` / ``oci:PATH:@INDEX``: one image of an OCI layout directory."""

    spec: LayoutSpec
    transport: str = "oci"

    def __str__(self) -> str:
        return f"oci:{self.spec}"

    def new_source(self, context: TransportContext) -> LayoutSource:
        files = DirectoryFiles(Path(self.spec.path), str(self))
        return LayoutSource(files, self.spec, str(self), self._names)

    def _names(self, _: Descriptor) -> list[str]:
        # libimage copyFromDefault: the REF, as ParseStoreReference reads it (docker.io/…).
        if self.spec.image:
            return [str(parse_reference(self.spec.image))]
        return []

    def new_destination(self, context: TransportContext) -> LayoutDestination:
        refuse_index_destination(self.spec, str(self))
        return LayoutDestination(
            Path(self.spec.path),
            self.spec.image or None,
            description=str(self),
            durable=context.options.durable,
        )


def parse(rest: str) -> OCIReference:
    """The reference of ``oci:<rest>``."""
    return OCIReference(parse_layout_spec("oci", rest))


def refuse_index_destination(spec: LayoutSpec, description: str) -> None:
    """A destination cannot be ``@N`` (c/image's message)."""
    if spec.index is not None:
        raise InvalidReferenceError(
            f"{description}: Destination reference must not contain a manifest index "
            f"@{spec.index}; give a name (:REF) or none"
        )
