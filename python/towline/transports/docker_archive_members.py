"""How ``docker-archive:`` reads its archive's members: c/image's names and links, its messages.

The reading itself (an index and ``pread`` for an uncompressed archive, passes
of a stream for a compressed one) is :mod:`towline.transports.tar_members`; this
module gives it the rules of a ``docker save`` archive:

* member names are compared after Go's ``path.Clean``, and the first member of
  a name wins, as in containers/image;
* a symbolic link (relative to its directory) or a hard link (from the archive
  root) is followed once, must stay inside the archive and end at a regular file;
* a first pass over a compressed archive keeps ``manifest.json`` and what looks
  like a config (a JSON object named ``*.json`` or ``blobs/…``), 32 MiB in all;
* errors name the archive and say what to do (re-create it, or use ``oci-archive:``).
"""

from __future__ import annotations

from pathlib import Path

from towline.errors import TowlineError, TransportError
from towline.quoting import go_quote
from towline.transports.docker_archive_format import (
    MANIFEST_JSON,
    MANIFEST_JSON_LIMIT,
    clean_path,
    escapes,
    refuse_escape,
)
from towline.transports.tar_members import Catalog, Member, TarMembers, link_target, open_tar

__all__ = ["open_members"]

#: JSON kept from the first pass over a compressed archive (manifest.json, configs).
_KEPT_JSON_BUDGET = 32 << 20
_CONFIG_CANDIDATE_LIMIT = 4 << 20
_KINDS = {"dir": "directory", "symlink": "symbolic link", "other": "special file"}


def open_members(path: Path, archive: str) -> TarMembers:
    """The members of the tar at ``path``; ``archive`` names it in errors."""
    if not path.exists():
        raise TransportError(
            f"{archive}: {path} does not exist; check the path", slug="archive_not_found"
        )
    if not path.is_file():
        raise TransportError(
            f"{archive}: {path} is not a file; a docker-archive: is a tar file "
            "(for a directory, use dir: or oci:)",
            slug="invalid_archive",
        )
    try:
        return open_tar(path, _DockerSaveRules(archive))
    except OSError as exc:
        raise TransportError(
            f"{archive}: cannot read {path}: {exc.strerror or exc}", slug="io"
        ) from exc


class _DockerSaveRules:
    """The :class:`~towline.transports.tar_members.TarRules` of a ``docker save`` archive."""

    kept_budget = _KEPT_JSON_BUDGET

    def __init__(self, archive: str) -> None:
        self.description = archive

    def clean(self, name: str) -> str:
        return clean_path(name)

    # === names and links
    def lookup(self, catalog: Catalog, name: str, what: str) -> Member:
        member = self._find(catalog, name, what)
        if member.kind in ("symlink", "hardlink"):
            link = member
            target = link_target(link)
            if escapes(clean_path(target)):
                raise refuse_escape(
                    self.description,
                    f"{named(what, name)} is a link to {go_quote(link.link)}, which",
                )
            member = self._find(catalog, target, f"the target of the link {link.name}:")
        if member.kind != "file":
            kind = _KINDS.get(member.kind, member.kind)
            raise TransportError(
                f"{self.description}: {named(what, member.name)} is a {kind}, not a regular "
                "file; the archive is malformed",
                slug="invalid_archive",
            )
        return member

    def _find(self, catalog: Catalog, name: str, what: str) -> Member:
        member = catalog.first(name)
        if member is not None:
            return member
        if name != MANIFEST_JSON:
            hint = "the archive is incomplete (re-create it with `docker save`)"
        elif "oci-layout" in catalog and "index.json" in catalog:
            hint = "it is an OCI archive, not a `docker save` one: use oci-archive:"
        else:
            hint = "it is not a `docker save` archive"
        raise TransportError(
            f"{self.description}: {named(what, name)} is missing from the archive: {hint}",
            slug="invalid_archive",
        )

    # === what a first pass keeps
    def keep(self, member: Member, head: bytes) -> bool:
        if member.name == MANIFEST_JSON and member.size <= MANIFEST_JSON_LIMIT:
            return True
        # Configs are JSON objects named <hex>.json (docker save) or blobs/<alg>/<hex> (Docker 25+).
        config_name = member.name.endswith(".json") or member.name.startswith("blobs/")
        return config_name and member.size <= _CONFIG_CANDIDATE_LIMIT and head.lstrip()[:1] == b"{"

    # === messages
    def damaged(self, exc: TowlineError) -> TransportError:
        return TransportError(
            f"{self.description}: cannot read the archive: {exc}; it is damaged, truncated or "
            "not a tar (re-create or download it again)",
            slug=exc.slug if exc.slug != "error" else "bad_tar",
        )

    def truncated(self, member: Member) -> TransportError:
        return TransportError(
            f"{self.description}: {member.name} ends early: the archive is truncated "
            "(re-create or download it again)",
            slug="truncated",
        )

    def too_large(self, member: Member, limit: int, what: str) -> TransportError:
        return TransportError(
            f"{self.description}: {named(what, member.name)} is {member.size} bytes, more than "
            f"the {limit} allowed (as containers/image); the archive is malformed or hostile",
            slug="too_large",
        )


def named(what: str, name: str) -> str:
    """``name`` in a message: quoted after the phrase ``what``, or bare when there is none."""
    return f"{what} {go_quote(name)}" if what else name
