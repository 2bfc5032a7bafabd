"""TLS settings for one registry host: ``certs.d/<host:port>/`` → :class:`ssl.SSLContext`.

As containers/image (libimage-pull.md §4.1): an explicit cert dir is used as
is for every host; otherwise the **first existing** ``<dir>/<host:port>`` of
``~/.config/containers/certs.d``, ``/etc/containers/certs.d`` and
``/etc/docker/certs.d`` (not merged). In that directory ``*.crt`` files are CA
certificates added to the system ones, and each ``*.cert`` needs a matching
``*.key`` (and vice versa): a client certificate. Pass the host as it appears
in the image name (``docker.io``, not ``registry-1.docker.io``).

Two differences from c/image, both so a mistake is reported where it is made:
an unparseable ``*.crt`` is an error here (Go skips it silently, and the user
later sees a confusing verification failure), and only one client pair per key
type takes effect (OpenSSL keeps the last one loaded, where Go offers all).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from pathlib import Path

from towline.config.paths import ConfigPaths
from towline.errors import ConfigError

__all__ = ["cert_dir_for", "ssl_context_for"]

_log = logging.getLogger(__name__)


def cert_dir_for(
    host_port: str, paths: ConfigPaths, *, cert_dir: Path | None = None
) -> Path | None:
    """The certificate directory used for ``host_port``, or None when there is none.

    ``cert_dir`` (``--cert-dir``) wins, then ``paths.cert_dir``, then the first
    existing per-host directory; unreadable candidates are skipped.
    """
    if cert_dir is not None:
        return cert_dir
    if paths.cert_dir is not None:
        return paths.cert_dir
    for base in paths.certs_d_dirs:
        candidate = base / host_port
        try:
            candidate.stat()
        except FileNotFoundError:
            continue
        except PermissionError as exc:
            _log.debug("skipping certs directory %s: %s", candidate, exc)
            continue
        except OSError as exc:
            raise ConfigError(f"cannot access certs directory {_q(candidate)}: {exc}") from exc
        return candidate
    return None


def ssl_context_for(
    host_port: str,
    paths: ConfigPaths,
    *,
    cert_dir: Path | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """An SSL context for talking to ``host_port`` (e.g. ``quay.io`` or ``localhost:5000``).

    It trusts the system CAs plus the directory's ``*.crt`` files and presents
    its client certificate, if any. With ``verify=False`` the server is not
    verified at all (``--tls-verify=false`` or an ``insecure`` registry); client
    certificates are still presented. Raises :class:`ConfigError` naming the
    file for a bad certificate or key, or a ``.cert``/``.key`` without partner.
    """
    if verify:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        # Nothing is verified, so the system CA store (tens of ms to load) is not read.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    directory = cert_dir_for(host_port, paths, cert_dir=cert_dir)
    if directory is not None:
        _load_directory(context, directory)
    return context


def _load_directory(context: ssl.SSLContext, directory: Path) -> None:
    """c/image ``tlsclientconfig.SetupCertificates``, in directory-listing (sorted) order."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    except PermissionError as exc:
        _log.debug("skipping scan of %s due to permission error: %s", directory, exc)
        return
    except OSError as exc:
        raise ConfigError(f"cannot read certs directory {_q(directory)}: {exc}") from exc
    _log.debug("looking for TLS certificates and private keys in %s", directory)
    for name in names:
        path = directory / name
        if name.endswith(".crt"):
            _load_ca(context, path)
        if name.endswith(".cert"):
            key_name = name.removesuffix(".cert") + ".key"
            if key_name not in names:
                raise ConfigError(
                    f"missing key {key_name} for client certificate {name}. Note that CA "
                    f"certificates should use the extension .crt (in {directory})"
                )
            _load_client_pair(context, path, directory / key_name)
        if name.endswith(".key"):
            cert_name = name.removesuffix(".key") + ".cert"
            if cert_name not in names:
                raise ConfigError(
                    f"missing client certificate {cert_name} for key {name} (in {directory})"
                )


def _load_ca(context: ssl.SSLContext, path: Path) -> None:
    try:
        context.load_verify_locations(cafile=str(path))
    except FileNotFoundError:
        # Removed between the listing and the read: an expected race, as in c/image.
        return
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"CA certificate {_q(path)} cannot be loaded: {exc}; it must hold PEM certificates"
        ) from exc


def _load_client_pair(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        # A password callback stops OpenSSL from prompting on the terminal for an
        # encrypted key; the empty password then fails and is reported below.
        context.load_cert_chain(certfile=str(cert), keyfile=str(key), password=lambda: b"")
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"client certificate {_q(cert)} with key {_q(key)} cannot be loaded: {exc}; "
            "they must be a matching PEM certificate and unencrypted private key"
        ) from exc


def _q(path: Path) -> str:
    return json.dumps(str(path), ensure_ascii=False)
