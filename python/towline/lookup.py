"""Finding an image in the local store by name or ID, as libimage's ``LookupImage``.

Order: a full ID (``sha256:<hex>`` or 64 hex) is looked up by ID only. Otherwise
the names ``resolve_locally`` gives (alias, ``localhost/<name>``, each search
registry, the docker.io name), then the name as a unique ID prefix, then, for
short names only, any image whose name ends in ``/<name>`` with the same tag.
A short name therefore outranks an ID prefix.
"""

from __future__ import annotations

from towline.config import AliasCache, RegistriesConf, resolve_locally
from towline.errors import InvalidReferenceError, ShortNameError, TowlineError, TransportError
from towline.platform import Platform, normalize_platform, parse_platform
from towline.reference import image_id_candidate, is_short_name, parse_reference
from towline.store import Store
from towline.store.records import ImageRecord
from towline.transports import split_transport

__all__ = ["find_local", "platform_matches"]


def platform_matches(record: ImageRecord, wanted: Platform | None) -> bool:
    """True when ``wanted`` is None or the image's platform satisfies it."""
    if wanted is None:
        return True
    try:
        have = normalize_platform(parse_platform(record.platform))
    except TowlineError:  # an unparsable stored platform matches nothing
        return False
    want = normalize_platform(wanted)
    return (have.os, have.architecture) == (want.os, want.architecture) and (
        not want.variant or have.variant == want.variant
    )


def find_local(
    store: Store,
    name: str,
    conf: RegistriesConf,
    alias_cache: AliasCache | None = None,
    platform: Platform | None = None,
) -> tuple[ImageRecord, str] | None:
    """The image ``name`` denotes locally and the name it was found under, or None.

    With ``platform`` set, an image of another platform counts as not found.
    """
    transport, rest = split_transport(name)
    if transport == "containers-storage":
        name = rest
    elif transport is not None:
        raise TransportError(
            f'unsupported transport "{transport}" for looking up local images',
            slug="unsupported_transport",
        )

    full_id = image_id_candidate(name)
    if full_id is not None:
        record = store.image(full_id)
        if record is not None and platform_matches(record, platform):
            return record, record.id
        return None

    try:
        candidates = resolve_locally(name, conf, alias_cache)
    except (InvalidReferenceError, ShortNameError):
        candidates = []  # not a usable name; it may still be an ID prefix
    for ref in candidates:
        if ref.digest:
            record = store.lookup_digest(
                ref.name, ref.digest, platform=None if platform is None else str(platform)
            )
        else:
            record = store.lookup_name(str(ref))
        if record is not None and platform_matches(record, platform):
            return record, str(ref)

    by_prefix = store.lookup_id_prefix(name)
    if by_prefix is not None and platform_matches(by_prefix, platform):
        return by_prefix, by_prefix.id

    if candidates and is_short_name(name):
        return _fuzzy(store, name, platform)
    return None


def _fuzzy(store: Store, name: str, platform: Platform | None) -> tuple[ImageRecord, str] | None:
    """An image named ``…/<name>`` with the same tag (and digest, if one was given)."""
    wanted = parse_reference(name)
    suffix = "/" + wanted.path.removeprefix("library/")
    for record in store.list_images():
        for stored in record.names:
            try:
                ref = parse_reference(stored)
            except InvalidReferenceError:
                continue
            if not (ref.name.endswith(suffix) or ref.path == wanted.path):
                continue
            if wanted.digest is not None and wanted.digest not in record.digests:
                continue
            if wanted.digest is None and ref.tag != wanted.tag:
                continue
            if platform_matches(record, platform):
                return record, stored
    return None
