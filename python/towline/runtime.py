"""Runtime: pull, look up, list, remove and unpack images in one store.

``pull`` follows libimage's ``Runtime.Pull`` and ``copySingleImageFromRegistry``
(containers/common): local-only IDs, pull policies (with a custom platform
turning ``missing`` into ``newer``), short-name candidates tried in order, and
``pull`` / ``pull-error`` events. As in libimage, a registry name (plain or
``docker://``) goes through the policies; any other transport is opened through
the transport table and always copied, the image named as that transport says.
``copy`` moves an image between any two transports, as ``skopeo copy``.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from towline.archives import archive_references, output_reference, plan_save, save_images, tag_name
from towline.config import (
    AliasCache,
    ConfigPaths,
    EngineSettings,
    RegistriesConf,
    load_engine_settings,
    load_registries_conf,
    resolve,
)
from towline.copy import CopyOptions, CopyResult, copy_and_commit
from towline.errors import (
    ImageUnknownError,
    InvalidReferenceError,
    ManifestUnknownError,
    PolicyError,
    StoreError,
    TowlineError,
    TransportError,
)
from towline.events import Event, Reporter
from towline.image import Image
from towline.lookup import find_local
from towline.options import PullOptions
from towline.platform import Platform, host_platform, parse_platform, wanted_platforms
from towline.policy import PullPolicy, parse_pull_policy
from towline.reference import (
    Reference,
    is_local_only_name,
    parse_normalized_named,
    parse_reference,
)
from towline.store import Store
from towline.store.records import ImageRecord
from towline.transports import parse_image_name, require_supported, split_transport
from towline.transports.base import ImageSource, TransportContext
from towline.transports.docker import RegistryAccess, open_docker_source, remote_digest
from towline.transports.storage import StorageDestination

__all__ = ["Runtime", "default_root"]


def default_root(env: Mapping[str, str] | None = None) -> Path:
    """``$TOWLINE_ROOT``, else ``$XDG_DATA_HOME/towline`` (``~/.local/share/towline``)."""
    env = os.environ if env is None else env
    if env.get("TOWLINE_ROOT"):
        return Path(env["TOWLINE_ROOT"])
    data = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "towline"


@dataclass(frozen=True)
class _Config:
    paths: ConfigPaths
    registries: RegistriesConf
    engine: EngineSettings


class Runtime:
    """A towline store and the configuration to fill it.

    ``root`` defaults to :func:`default_root`. ``on_event`` is called with every
    :class:`~towline.events.Event`; the last 100 are also kept in ``events``.
    ``env`` replaces ``os.environ`` for finding configuration files.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        on_event: Callable[[Event], None] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        self.root = Path(root) if root is not None else default_root(self._env)
        self.store = Store(self.root)
        self.events: deque[Event] = deque(maxlen=100)
        self._on_event = on_event

    def close(self) -> None:
        """Close the store; the runtime is unusable afterwards."""
        self.store.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # === configuration
    def _config(self, options: PullOptions | None = None) -> _Config:
        options = options or PullOptions()
        paths = ConfigPaths.from_env(
            self._env,
            registries_conf=_path(options.registries_conf),
            auth_file=_path(options.auth_file),
            cert_dir=_path(options.cert_dir),
        )
        return _Config(paths, load_registries_conf(paths), load_engine_settings(paths))

    def _alias_cache(self, config: _Config) -> AliasCache:
        return AliasCache(config.paths.short_name_alias_cache)

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    # === lookups
    def lookup_image(self, name: str, *, platform: str | None = None) -> tuple[Image, str]:
        """The local image ``name`` (a name, ID or ID prefix) denotes, and the name it matched.

        Raises :class:`~towline.errors.ImageUnknownError` when there is none.
        """
        config = self._config()
        wanted = parse_platform(platform) if platform else None
        found = find_local(self.store, name, config.registries, self._alias_cache(config), wanted)
        if found is None:
            raise ImageUnknownError(f"{name}: image not known")
        record, resolved = found
        return Image(record, self.store), resolved

    def list_images(self) -> list[Image]:
        """Every image in the store, most recently pulled first."""
        return [Image(r, self.store) for r in self.store.list_images()]

    def remove_image(self, name: str, *, force: bool = False) -> list[str]:
        """Remove an image (podman rmi semantics); returns what happened, line by line.

        By name, an image with other names only loses that name ("Untagged: …").
        By ID, an image with several names is kept unless ``force`` is set.
        """
        image, resolved = self.lookup_image(name)
        by_id = resolved == image.id
        if not by_id and len(image.names) > 1 and resolved in image.names:
            self.store.remove_name(resolved)
            return [f"Untagged: {resolved}"]
        if by_id and len(image.names) > 1 and not force:
            raise StoreError(
                f"unable to delete image {image.id[:12]}: it is referenced by several names "
                f"({', '.join(image.names)}); remove it by name, or force the removal",
                slug="image_in_use",
            )
        self.store.remove_image(image.id)
        return [f"Untagged: {n}" for n in image.names] + [f"Deleted: {image.id}"]

    # === pull
    def pull(
        self,
        name: str,
        policy: str | None = None,
        options: PullOptions | None = None,
    ) -> list[Image]:
        """Pull ``name`` into the store according to ``policy``; return the image(s).

        ``policy`` is ``always``, ``missing`` (default, or containers.conf's
        ``pull_policy``), ``newer`` or ``never`` (podman's aliases accepted).
        """
        options = options or PullOptions()
        try:
            config = self._config(options)
            chosen = parse_pull_policy(policy if policy is not None else config.engine.pull_policy)
            records = self._pull(name, chosen, options, config)
        except TowlineError as exc:
            self._emit(Event("pull-error", name, error=str(exc)))
            raise
        images = [Image(r, self.store) for r in records]
        for image in images:
            self._emit(Event("pull", name, image.id))
        return images

    def _pull(
        self, name: str, policy: PullPolicy, options: PullOptions, config: _Config
    ) -> list[ImageRecord]:
        transport, rest = split_transport(name)
        require_supported(transport)
        if transport is not None and transport != "docker":
            if options.all_tags:
                raise PolicyError(f"pulling all tags is not supported for {transport} transport")
            return self._pull_from_transport(name, options, config)
        if transport == "docker":
            # docker:// names are never short-name resolved (docker.io/library/ at most).
            ref = parse_reference(rest)
            if options.all_tags:
                return self._pull_all_tags(ref, policy, options, config)
            return [self._pull_single(str(ref), ref, policy, options, config)]
        if is_local_only_name(name):
            if policy == "always":
                raise PolicyError(
                    f"pull policy is always but image has been referred to by ID ({name})"
                )
            image, _ = self.lookup_image(name)
            return [image._record]
        ref = parse_reference(name)  # validates the name (and drops a tag beside a digest)
        if ref.digest is not None and parse_normalized_named(name).tag is not None:
            # Docker compatibility, as libimage: the digest decides, and the name becomes
            # the normalized repository (so a short name is no longer short).
            name = str(ref)
        if options.all_tags:
            # As podman: no short-name resolution, docker.io normalisation only.
            return self._pull_all_tags(parse_normalized_named(name), policy, options, config)
        return [self._pull_single(name, ref, policy, options, config)]

    def _access(self, options: PullOptions, config: _Config) -> RegistryAccess:
        return RegistryAccess(
            paths=config.paths,
            registries=config.registries,
            engine=config.engine,
            tls_verify=options.tls_verify,
            credentials=options.credentials,
            auth_file=_path(options.auth_file),
            cert_dir=_path(options.cert_dir),
            max_retries=config.engine.retry if options.max_retries is None else options.max_retries,
            retry_delay=_first_set(options.retry_delay, config.engine.retry_delay, 1.0),
        )

    def _pull_all_tags(
        self, ref: Reference, policy: PullPolicy, options: PullOptions, config: _Config
    ) -> list[ImageRecord]:
        access = self._access(options, config)
        try:
            source = access.registries.pull_sources(ref)[-1]
            client = access.client(source.reference, source.insecure, explicit_creds=True)
            tags = client.list_tags(source.reference.path)
        finally:
            access.close()
        if not tags:
            raise ManifestUnknownError(f"{ref.name}: the repository has no tags")
        # Sequential, and the first failure stops the rest (as podman).
        return [
            self._pull_single(f"{ref.name}:{tag}", ref.with_tag(tag), policy, options, config)
            for tag in tags
        ]

    def _pull_single(
        self,
        name: str,
        ref: Reference,
        policy: PullPolicy,
        options: PullOptions,
        config: _Config,
    ) -> ImageRecord:
        reporter = Reporter(options.writer, options.progress)
        choice = parse_platform(options.platform) if options.platform else None
        alias_cache = self._alias_cache(config)
        local = find_local(self.store, name, config.registries, alias_cache, choice)

        # === policy against the local store
        if choice is not None and policy == "missing":
            # Local images often claim the wrong platform (podman#10682): check the registry.
            policy = "newer"
        if policy == "never":
            if local is None:
                raise ImageUnknownError(f"{name}: image not known")
            return local[0]
        if policy == "missing" and local is not None:
            return local[0]
        if local is not None and local[0].id.startswith(name):
            if policy == "always":
                raise PolicyError(
                    f"pull policy is always but image has been referred to by ID ({name})"
                )
            return local[0]
        if local is not None and choice is None:
            name = local[1]  # pull what the local name resolved to (buildah#2904)

        # === candidates
        try:
            resolution = resolve(
                name,
                config.registries,
                alias_cache=alias_cache,
                is_tty=sys.stdin.isatty() and sys.stdout.isatty(),
            )
        except TowlineError:
            if policy == "newer" and local is not None:
                return local[0]
            raise

        access = self._access(options, config)
        errors: list[TowlineError] = []
        described = False
        try:
            for candidate in resolution.candidates:
                if policy == "newer" and local is not None:
                    try:
                        if remote_digest(candidate, access) in local[0].digests:
                            continue  # nothing newer there
                    except TowlineError as exc:
                        errors.append(exc)
                        continue
                if resolution.description and not described:
                    reporter.line(resolution.description)
                    described = True
                reporter.line(f"Trying to pull {candidate}...")
                try:
                    record = self._copy_from_registry(
                        candidate, access, choice, options, config, reporter
                    )
                except TowlineError as exc:
                    errors.append(exc)
                    continue
                resolution.record_alias(candidate, alias_cache)
                return record
        finally:
            access.close()

        if policy == "newer" and local is not None:
            return local[0]  # registry unreachable or nothing newer: keep what we have
        raise _pull_failure(errors, policy)

    def _copy_from_registry(
        self,
        ref: Reference,
        access: RegistryAccess,
        choice: Platform | None,
        options: PullOptions,
        config: _Config,
        reporter: Reporter,
    ) -> ImageRecord:
        source = open_docker_source(ref, access)
        try:
            return self._copy_to_store(source, [str(ref)], choice, options, config, reporter)[0]
        finally:
            source.close()

    def _copy_to_store(
        self,
        source: ImageSource,
        names: list[str],
        choice: Platform | None,
        options: PullOptions,
        config: _Config,
        reporter: Reporter,
    ) -> list[ImageRecord]:
        dest = StorageDestination(self.store, names, unpack=options.unpack, durable=options.durable)
        copy_and_commit(source, dest, self._copy_options(choice, options, config), reporter)
        return dest.records

    @staticmethod
    def _copy_options(
        choice: Platform | None,
        options: PullOptions,
        config: _Config,
        *,
        all_platforms: bool = False,
    ) -> CopyOptions:
        return CopyOptions(
            wanted=wanted_platforms(choice),
            expected=choice or host_platform(),
            all_platforms=all_platforms,
            parallel=options.max_parallel_downloads or config.engine.max_parallel_downloads,
        )

    def _context(
        self, options: PullOptions, config: _Config, reporter: Reporter
    ) -> TransportContext:
        return TransportContext(
            options=options,
            reporter=reporter,
            tmp_dir=self.store.tmp_dir,
            registry=self._access(options, config),
            store=self.store,
            env=self._env,
        )

    def _pull_from_transport(
        self, name: str, options: PullOptions, config: _Config
    ) -> list[ImageRecord]:
        """libimage's ``copyFromDefault``: always copy, named as the source transport says."""
        reporter = Reporter(options.writer, options.progress)
        choice = parse_platform(options.platform) if options.platform else None
        ref = parse_image_name(name)
        context = self._context(options, config, reporter)
        try:
            source = ref.new_source(context)
            try:
                return self._copy_to_store(
                    source, source.image_names(), choice, options, config, reporter
                )
            finally:
                source.close()
        finally:
            if context.registry is not None:
                context.registry.close()

    # === copy
    def copy(
        self,
        source: str,
        destination: str,
        options: PullOptions | None = None,
        *,
        all_platforms: bool = False,
        preserve_digests: bool = False,
    ) -> CopyResult:
        """Copy an image between two ``transport:reference`` names, as ``skopeo copy``.

        ``containers-storage:NAME`` is this runtime's store. With ``all_platforms``
        every instance of an index is copied, with the index (destinations that
        store indexes only); otherwise the platform is chosen as for a pull. Blobs
        pass unchanged; a manifest is converted only when the destination needs it,
        and with ``preserve_digests`` that is an error instead.
        """
        options = options or PullOptions()
        config = self._config(options)
        reporter = Reporter(options.writer, options.progress)
        choice = parse_platform(options.platform) if options.platform else None
        src_ref, dest_ref = parse_image_name(source), parse_image_name(destination)
        context = self._context(options, config, reporter)
        try:
            src = src_ref.new_source(context)
            try:
                dest = dest_ref.new_destination(context)
                copy_options = self._copy_options(
                    choice, options, config, all_platforms=all_platforms
                )
                copy_options = replace(copy_options, preserve_digests=preserve_digests)
                return copy_and_commit(src, dest, copy_options, reporter)
            finally:
                src.close()
        finally:
            if context.registry is not None:
                context.registry.close()

    # === save, load, tag: podman's commands (the work is in towline.archives)
    def save(
        self,
        names: Sequence[str],
        output: str | os.PathLike[str],
        format: str = "docker-archive",
        *,
        multi_image: bool = False,
        options: PullOptions | None = None,
    ) -> list[Image]:
        """Write the images ``names`` denote to ``output``, as ``podman save``; return them.

        ``format``: ``docker-archive`` (default), ``oci-archive``, ``oci-dir`` or
        ``docker-dir``. Without ``multi_image`` the first name is the image and the
        others more names for it; with it every name is an image (docker-archive and
        oci-archive only). Everything goes into one destination, committed once:
        a failure leaves nothing at ``output``. Names: see :mod:`towline.archives`.
        """
        options = options or PullOptions()
        plan = plan_save(names, format, multi_image, self.lookup_image)
        destination = output_reference(format, Path(output))
        config = self._config(options)
        reporter = Reporter(options.writer, options.progress)
        copy_options = replace(self._copy_options(None, options, config), expected=None)
        context = self._context(options, config, reporter)
        try:
            save_images(plan, destination, context, copy_options, reporter)
        finally:
            if context.registry is not None:
                context.registry.close()
        return [saved.image for saved in plan]

    def load(self, path: str | os.PathLike[str], options: PullOptions | None = None) -> list[Image]:
        """Store every image of the archive (or layout) at ``path``, as ``podman load``.

        The format is found by content (oci-archive, docker-archive, an ``oci:``
        layout or a ``dir:`` image); each image keeps the names it has there
        (RepoTags, ref.name), or none.
        """
        options = options or PullOptions()
        config = self._config(options)
        images: list[Image] = []
        for ref in archive_references(Path(path)):
            records = self._pull_from_transport(str(ref), options, config)
            images += [Image(record, self.store) for record in records]
        return images

    def tag(self, name: str, *new: str) -> Image:
        """Give the image ``name`` denotes the names ``new``, as ``podman tag``.

        Each new name is normalized as libimage's ``NormalizeName`` (``foo`` →
        ``localhost/foo:latest``) and moves from any image that had it. All names
        are checked before any is added.
        """
        if not new:
            raise InvalidReferenceError(f"{name}: give at least one new name to tag it with")
        names = [tag_name(n) for n in new]
        image, _ = self.lookup_image(name)
        return Image(self.store.add_names(image.id, names), self.store)


def _first_set(*values: float | None) -> float | None:
    """The first value that is not None (libimage: option, containers.conf, then 1s)."""
    return next((v for v in values if v is not None), None)


def _path(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)


def _pull_failure(errors: list[TowlineError], policy: PullPolicy) -> TowlineError:
    """podman's FormatPullErrors: one error as it is, several in one message."""
    if not errors:
        return TowlineError(f"internal error: no image pulled (pull policy {policy})")
    if len(errors) == 1:
        return errors[0]
    listed = " ".join(f"* {e}" for e in errors)
    cls: type[TowlineError] = (
        ManifestUnknownError
        if all(isinstance(e, ManifestUnknownError) for e in errors)
        else TransportError
    )
    return cls(f"{len(errors)} errors occurred while pulling: {listed}")
