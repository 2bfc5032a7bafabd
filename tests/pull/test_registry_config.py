"""Credentials and registries.conf in real pulls: auth, insecure, short names, mirrors."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

import towline
from support.registry import PushedImage, RegistryServer

OPTS = towline.PullOptions(tls_verify=False)


def write_conf(config_root: Path, text: str) -> Path:
    path = config_root / "etc/containers/registries.conf"
    path.write_text(text)
    return path


def test_basic_auth_with_creds(
    runtime: towline.Runtime, basic_auth_registry: RegistryServer
) -> None:
    pushed = basic_auth_registry.pushed["gzip"]
    options = towline.PullOptions(tls_verify=False, credentials="alice:s3cret")
    [image] = runtime.pull(pushed.reference, options=options)
    assert image.names == [pushed.reference]


@pytest.mark.parametrize("creds", [None, "alice:wrong"])
def test_basic_auth_refused(
    runtime: towline.Runtime, basic_auth_registry: RegistryServer, creds: str | None
) -> None:
    pushed = basic_auth_registry.pushed["gzip"]
    options = towline.PullOptions(tls_verify=False, credentials=creds, max_retries=0)
    with pytest.raises(towline.AuthenticationError) as info:
        runtime.pull(pushed.reference, options=options)
    assert basic_auth_registry.host in str(info.value)


def test_auth_file(
    runtime: towline.Runtime, basic_auth_registry: RegistryServer, tmp_path: Path
) -> None:
    auth = tmp_path / "auth.json"
    token = base64.b64encode(b"alice:s3cret").decode()
    auth.write_text(json.dumps({"auths": {basic_auth_registry.host: {"auth": token}}}))
    pushed = basic_auth_registry.pushed["gzip"]
    [image] = runtime.pull(
        pushed.reference, options=towline.PullOptions(tls_verify=False, auth_file=auth)
    )
    assert image.names == [pushed.reference]


def test_token_auth_anonymous_public_repository(
    runtime: towline.Runtime, token_registry: RegistryServer, token_server
) -> None:
    pushed = token_registry.pushed["gzip"]
    [image] = runtime.pull(pushed.reference, options=OPTS)
    assert image.names == [pushed.reference]
    # One token for the repository scope, reused for the manifest and every blob.
    assert len(token_server.requests) == 1


def test_token_auth_private_repository_needs_credentials(
    runtime: towline.Runtime, token_registry: RegistryServer, token_server
) -> None:
    pushed = token_registry.pushed["private-gzip"]
    with pytest.raises(towline.AuthenticationError):
        runtime.pull(pushed.reference, options=towline.PullOptions(tls_verify=False, max_retries=0))
    password = token_server.users["alice"]
    options = towline.PullOptions(tls_verify=False, credentials=f"alice:{password}")
    [image] = runtime.pull(pushed.reference, options=options)
    assert image.names == [pushed.reference]


def test_insecure_registry_from_registries_conf(
    runtime: towline.Runtime,
    config_root: Path,
    test_images: dict[str, PushedImage],
    registry: RegistryServer,
) -> None:
    write_conf(config_root, f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
    [image] = runtime.pull(test_images["gzip"].reference)
    assert image.names == [test_images["gzip"].reference]


def test_short_name_through_search_registries(
    runtime: towline.Runtime,
    config_root: Path,
    test_images: dict[str, PushedImage],
    registry: RegistryServer,
) -> None:
    conf = write_conf(
        config_root,
        f'unqualified-search-registries = ["127.0.0.1:9", "{registry.host}"]\n'
        'short-name-mode = "permissive"\n'
        f'[[registry]]\nlocation = "127.0.0.1:9"\ninsecure = true\n'
        f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n',
    )
    out = io.StringIO()
    [image] = runtime.pull("test/gzip", options=towline.PullOptions(writer=out, max_retries=0))
    assert image.names == [test_images["gzip"].reference]
    lines = out.getvalue().splitlines()
    assert lines[0] == f'Resolving "test/gzip" using unqualified-search registries ({conf})'
    assert lines[1] == "Trying to pull 127.0.0.1:9/test/gzip:latest..."
    assert f"Trying to pull {registry.host}/test/gzip:latest..." in lines
    # The short name now finds the local image.
    assert runtime.lookup_image("test/gzip")[0] == image


def test_short_name_alias(
    runtime: towline.Runtime,
    config_root: Path,
    test_images: dict[str, PushedImage],
    registry: RegistryServer,
) -> None:
    write_conf(
        config_root,
        f'[aliases]\n"mytool" = "{registry.host}/test/docker"\n'
        f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n',
    )
    [image] = runtime.pull("mytool")
    assert image.names == [test_images["docker"].reference]


def test_short_name_without_search_registries(runtime: towline.Runtime) -> None:
    with pytest.raises(towline.ShortNameError, match="no unqualified-search registries"):
        runtime.pull("alpine")


def test_blocked_registry(
    runtime: towline.Runtime,
    config_root: Path,
    test_images: dict[str, PushedImage],
    registry: RegistryServer,
) -> None:
    write_conf(config_root, f'[[registry]]\nlocation = "{registry.host}"\nblocked = true\n')
    with pytest.raises(towline.TransportError, match="is blocked in"):
        runtime.pull(test_images["gzip"].reference, options=OPTS)


def test_mirror_is_tried_first(
    runtime: towline.Runtime,
    config_root: Path,
    test_images: dict[str, PushedImage],
    registry: RegistryServer,
    fault_proxy,
) -> None:
    write_conf(
        config_root,
        f'[[registry]]\nprefix = "example.invalid"\nlocation = "127.0.0.1:9"\ninsecure = true\n'
        f'[[registry.mirror]]\nlocation = "{fault_proxy.host}"\ninsecure = true\n',
    )
    [image] = runtime.pull("example.invalid/test/gzip", options=towline.PullOptions(max_retries=0))
    assert image.names == ["example.invalid/test/gzip:latest"]
    assert any("/test/gzip/manifests/" in e.path for e in fault_proxy.log)


def test_registries_conf_option(
    runtime: towline.Runtime,
    tmp_path: Path,
    test_images: dict[str, PushedImage],
    registry: RegistryServer,
) -> None:
    conf = tmp_path / "my-registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
    [image] = runtime.pull(
        test_images["zstd"].reference, options=towline.PullOptions(registries_conf=conf)
    )
    assert image.names == [test_images["zstd"].reference]


def test_unsupported_transport(runtime: towline.Runtime) -> None:
    with pytest.raises(towline.TransportError, match='transport "sif" is not supported by'):
        runtime.pull("sif:/some/image.sif")


def test_invalid_names(runtime: towline.Runtime) -> None:
    for bad in ("Alpine", "a:b:c", "x@sha256:123", "a" * 300, "docker://UPPER"):
        with pytest.raises(towline.InvalidReferenceError):
            runtime.pull(bad, options=OPTS)
