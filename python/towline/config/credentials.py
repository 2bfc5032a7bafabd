"""Registry credentials: ``--creds``, auth.json files, Docker's config.json, credential helpers.

:func:`lookup_credentials` finds the credentials for one repository in the
order containers/image ``pkg/docker/config`` uses (libimage-pull.md §4.3):
explicit ``--creds`` first; otherwise each entry of registries.conf's
``credential-helpers`` in turn, where ``containers-auth.json`` means "scan the
auth files" and any other name runs ``docker-credential-<name> get``. Within a
file: its ``credHelpers`` entry for the host, then ``auths`` keys from the
repository up to the host, then any key that normalises to the host (URLs,
``index.docker.io``). The first non-empty result wins.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from towline.config.paths import ConfigPaths
from towline.config.registries import AUTH_FILE_HELPER
from towline.errors import ConfigError

__all__ = ["AuthFile", "Credentials", "auth_files", "lookup_credentials", "parse_creds"]

_log = logging.getLogger(__name__)

#: What a credential helper prints when it has nothing for the host.
_HELPER_NOT_FOUND = "credentials not found in native keychain"
#: A helper username meaning "the secret is an OAuth2 identity (refresh) token".
_TOKEN_USERNAME = "<token>"


@dataclass(frozen=True)
class Credentials:
    """A username and password, or an identity token (OAuth2 refresh token) for bearer auth."""

    username: str
    password: str = field(repr=False)
    identity_token: str | None = field(default=None, repr=False)

    @property
    def is_empty(self) -> bool:
        """True when nothing is set (c/image treats this as "no credentials")."""
        return not (self.username or self.password or self.identity_token)


@dataclass(frozen=True)
class AuthFile:
    """An auth file to scan; ``legacy`` is the old ``~/.dockercfg`` format (host keys only)."""

    path: Path
    legacy: bool = False


def parse_creds(value: str) -> Credentials:
    """Parse ``--creds user:password``, split at the first ``:``.

    podman prompts for a missing password; towline does not prompt, so a bare
    user name is an error.
    """
    if not value:
        raise ConfigError("credentials can't be empty: use --creds user:password")
    username, colon, password = value.partition(":")
    if not username:
        raise ConfigError("username can't be empty: use --creds user:password")
    if not colon:
        raise ConfigError(
            f"--creds {json.dumps(username)} has no password: use --creds user:password "
            "(towline does not prompt for it)"
        )
    return Credentials(username, password)


def auth_files(paths: ConfigPaths, auth_file: Path | None = None) -> list[AuthFile]:
    """The auth files scanned, in order. A user-specified file is the only one read."""
    chosen = auth_file or paths.auth_file
    if chosen is not None:
        return [AuthFile(chosen)]
    files = []
    runtime_dir = paths.auth_runtime_dir
    if runtime_dir is not None and not runtime_dir.exists():
        # c/image warns and goes on, so public images still pull.
        _log.warning(
            "%s directory set by $XDG_RUNTIME_DIR does not exist. Either create the directory "
            "or unset $XDG_RUNTIME_DIR.: Trying to pull image in the event that it is a public "
            "image.",
            json.dumps(str(runtime_dir)),
        )
    else:
        files.append(AuthFile(paths.auth_primary))
    files += [AuthFile(paths.auth_xdg), AuthFile(paths.docker_config)]
    files.append(AuthFile(paths.docker_legacy_config, legacy=True))
    return files


def lookup_credentials(
    registry: str,
    repo_name: str,
    paths: ConfigPaths,
    *,
    creds: str | None = None,
    auth_file: Path | None = None,
    helpers: list[str] | None = None,
) -> Credentials | None:
    """The credentials for ``repo_name`` (``Reference.name``: ``host/path``) on ``registry``.

    ``registry`` is the host part of ``repo_name`` (``host[:port]``); external
    helpers are asked for it, auth files are searched from ``repo_name`` up.

    ``creds`` (``user:password``) wins outright. ``helpers`` is registries.conf's
    ``credential-helpers`` (None or empty: ``["containers-auth.json"]``).
    ``auth_file`` overrides ``paths.auth_file``. Returns None when nothing is
    found; helper and file errors are raised (as :class:`ConfigError`) only if
    no other source had credentials.
    """
    key = repo_name or registry
    _validate_key(key)
    if key != registry and not key.startswith(registry + "/"):
        raise ValueError(f"repository {key!r} is not on registry {registry!r}")
    if creds is not None:
        return parse_creds(creds)
    problems: list[ConfigError] = []
    for helper in helpers or [AUTH_FILE_HELPER]:
        try:
            if helper == AUTH_FILE_HELPER:
                found = _from_auth_files(key, registry, auth_files(paths, auth_file))
            else:
                found = _from_helper(helper, registry)
        except ConfigError as exc:
            _log.debug("looking up credentials for %s in %s failed: %s", key, helper, exc)
            problems.append(exc)
            continue
        if found is not None and not found.is_empty:
            _log.debug("found credentials for %s in credential helper %s", key, helper)
            return found
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ConfigError("errors looking up credentials: " + "; ".join(map(str, problems)))
    return None


def _validate_key(key: str) -> None:
    if key.startswith(("http://", "https://")):
        raise ConfigError(f"key {key} contains http[s]:// prefix")
    if "@" in key:
        raise ConfigError(f"key {key} contains a '@' character")
    _, slash, rest = key.partition("/")
    if slash and ":" in rest:
        raise ConfigError(f"key {key} contains a ':' character after host[:port]")


def _from_auth_files(key: str, registry: str, files: list[AuthFile]) -> Credentials | None:
    for auth_file in files:
        found = _from_file(key, registry, auth_file)
        if found is not None and not found.is_empty:
            _log.debug("found credentials for %s in %s", key, auth_file.path)
            return found
    return None


def _from_file(key: str, registry: str, auth_file: AuthFile) -> Credentials | None:
    auths, cred_helpers = _read(auth_file)
    helper = cred_helpers.get(registry)
    if helper is not None:
        return _from_helper(helper, registry)
    for candidate in _lookup_order(key, registry, auth_file.legacy):
        if candidate in auths:
            return _decode(auth_file.path, candidate, auths[candidate])
    # Old `docker login` wrote URLs as keys, and Docker Hub still uses one.
    host = _normalize_registry(registry)
    for stored, entry in auths.items():
        if _normalize_key(stored, auth_file.legacy) == host:
            return _decode(auth_file.path, stored, entry)
    return None


def _lookup_order(key: str, registry: str, legacy: bool) -> Iterator[str]:
    """``quay.io/ns/repo`` → itself, ``quay.io/ns``, ``quay.io``; legacy files: the host only."""
    if legacy:
        yield registry
        return
    while True:
        yield key
        if "/" not in key:
            return
        key = key.rsplit("/", 1)[0]


def _normalize_key(key: str, legacy: bool) -> str:
    stripped = key.removeprefix("http://").removeprefix("https://")
    if legacy or stripped != key:
        stripped = stripped.partition("/")[0]
    return _normalize_registry(stripped)


def _normalize_registry(registry: str) -> str:
    return "index.docker.io" if registry in ("docker.io", "registry-1.docker.io") else registry


def _read(auth_file: AuthFile) -> tuple[dict[str, Mapping[str, Any]], dict[str, str]]:
    """``(auths, credHelpers)`` of one file; a missing file is empty."""
    path = auth_file.path
    where = f"reading JSON file {json.dumps(str(path))}"
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}, {}
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}; fix the JSON or remove the file") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a JSON object")
    # JSON null reads as absent, as with Go's decoder.
    auths = data if auth_file.legacy else data.get("auths")
    helpers = None if auth_file.legacy else data.get("credHelpers")
    auths = {} if auths is None else auths
    helpers = {} if helpers is None else helpers
    if not isinstance(auths, dict) or not all(isinstance(v, dict) for v in auths.values()):
        raise ConfigError(f'{where}: "auths" must map registries to objects')
    if not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
        raise ConfigError(f'{where}: "credHelpers" must map registries to helper names')
    return auths, helpers


def _decode(path: Path, key: str, entry: Mapping[str, Any]) -> Credentials | None:
    """An ``auths`` entry: ``auth`` is base64 ``user:password``, plus an optional identity token."""
    auth, token = entry.get("auth") or "", entry.get("identitytoken") or None
    if not isinstance(auth, str) or not isinstance(token, str | None):
        raise ConfigError(
            f'credential entry "{key}" in "{path}": auth and identitytoken are strings'
        )
    try:
        decoded = base64.b64decode(auth, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ConfigError(
            f'credential entry "{key}" in "{path}": the "auth" field is not base64 of '
            f"user:password ({exc}); log in again"
        ) from exc
    username, colon, password = decoded.partition(":")
    if not colon:
        if decoded:
            _log.warning(
                'Error parsing the "auth" field of a credential entry "%s" in "%s", '
                "missing semicolon",
                key,
                path,
            )
        # An empty entry marks a credential helper in Docker's files: nothing here.
        return None
    return Credentials(username, password.strip("\x00"), token)


def _from_helper(helper: str, registry: str) -> Credentials | None:
    """Run ``docker-credential-<helper> get`` with the host on stdin."""
    program = f"docker-credential-{helper}"
    try:
        result = subprocess.run(
            [program, "get"], input=registry, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise ConfigError(
            f"credential helper {program} for {registry} could not run: {exc.strerror}; "
            "install it or remove it from credential-helpers/credHelpers"
        ) from exc
    output = result.stdout.strip()
    if result.returncode != 0:
        if output == _HELPER_NOT_FOUND:
            return None
        raise ConfigError(
            f"error getting credentials - err: exit status {result.returncode}, out: `{output}` "
            f"(credential helper {program} for {registry})"
        )
    try:
        reply = json.loads(output)
    except ValueError as exc:
        raise ConfigError(
            f"credential helper {program} for {registry} printed an invalid reply: {exc}"
        ) from exc
    # Missing fields read as empty, as Go's decoder leaves them.
    username = reply.get("Username", "") if isinstance(reply, dict) else None
    secret = reply.get("Secret", "") if isinstance(reply, dict) else None
    if not isinstance(username, str) or not isinstance(secret, str):
        raise ConfigError(f"credential helper {program} for {registry}: Username/Secret not text")
    if username == _TOKEN_USERNAME:
        return Credentials("", "", identity_token=secret)
    return Credentials(username, secret)
