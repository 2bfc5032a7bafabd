"""Configuration read from the places podman reads it.

- :mod:`~towline.config.paths`: every file and directory, overridable (``ConfigPaths``).
- :mod:`~towline.config.registries`: registries.conf v2 ``[[registry]]`` and alias rules.
- :mod:`~towline.config.registries_files`: reading registries.conf, drop-ins and v1 files.
- :mod:`~towline.config.shortnames`: short-name resolution and the alias cache.
- :mod:`~towline.config.credentials`: ``--creds``, auth files, credential helpers.
- :mod:`~towline.config.certs`: ``certs.d/<host:port>/`` → ``ssl.SSLContext``.
- :mod:`~towline.config.containers_conf`: containers.conf ``[engine]`` settings.
"""

from __future__ import annotations

from towline.config.certs import cert_dir_for, ssl_context_for
from towline.config.containers_conf import EngineSettings, load_engine_settings
from towline.config.credentials import Credentials, lookup_credentials, parse_creds
from towline.config.paths import ConfigPaths
from towline.config.registries import (
    Alias,
    Endpoint,
    PullSource,
    RegistriesConf,
    Registry,
)
from towline.config.registries_files import load_registries_conf
from towline.config.shortnames import AliasCache, Resolution, resolve, resolve_locally

__all__ = [
    "Alias",
    "AliasCache",
    "ConfigPaths",
    "Credentials",
    "Endpoint",
    "EngineSettings",
    "PullSource",
    "RegistriesConf",
    "Registry",
    "Resolution",
    "cert_dir_for",
    "load_engine_settings",
    "load_registries_conf",
    "lookup_credentials",
    "parse_creds",
    "resolve",
    "resolve_locally",
    "ssl_context_for",
]
