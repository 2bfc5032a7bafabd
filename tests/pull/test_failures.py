"""Broken blobs, broken connections, interruptions: the store is left exactly as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

import towline
from support.registry import PushedImage, RegistryServer

from .conftest import store_files

OPTS = towline.PullOptions(tls_verify=False)


def snapshot(runtime: towline.Runtime) -> tuple[list[str], set[str]]:
    return [i.id for i in runtime.list_images()], store_files(runtime.root)


def test_tampered_blob_fails_with_digest_mismatch_and_changes_nothing(
    runtime: towline.Runtime,
    test_images: dict[str, PushedImage],
    registry: RegistryServer,
    push_unique,
) -> None:
    runtime.pull(test_images["gzip"].reference, options=OPTS)  # some prior state to keep
    before = snapshot(runtime)
    pushed = push_unique()
    victim = registry.blob_data_path(pushed.layers[1].digest)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x55
    victim.write_bytes(bytes(data))
    with pytest.raises(towline.DigestMismatchError) as info:
        runtime.pull(pushed.reference, options=OPTS)
    assert info.value.expected == pushed.layers[1].digest
    # The message says which blob of which image failed.
    assert f"docker://{pushed.reference}: blob {pushed.layers[1].digest}:" in str(info.value)
    assert snapshot(runtime) == before
    assert list((runtime.root / "tmp").iterdir()) == []


def test_a_layer_whose_diff_id_lies_is_refused(
    runtime: towline.Runtime, registry: RegistryServer
) -> None:
    from support.images import build_image
    from support.registry import push_named

    from .conftest import unique_layers

    image = build_image(unique_layers("liar"))
    config = image.config.replace(image.layers[0].diff_id.encode(), b"sha256:" + b"0" * 64)
    from support.images import Image, sha256_digest

    config_digest = sha256_digest(config)
    manifest = image.manifest.replace(image.config_digest.encode(), config_digest.encode())
    liar = Image(
        manifest=manifest,
        config=config,
        blobs={**image.blobs, config_digest: config},
        manifest_digest=sha256_digest(manifest),
        config_digest=config_digest,
        layers=image.layers,
        media_type=image.media_type,
        platform=image.platform,
    )
    pushed = push_named(registry, "unique/liar", liar)
    before = snapshot(runtime)
    with pytest.raises(towline.DigestMismatchError) as info:
        runtime.pull(pushed.reference, options=OPTS)
    assert info.value.slug == "diff_id_mismatch"
    assert snapshot(runtime) == before


def test_a_broken_download_resumes_with_range(
    runtime: towline.Runtime, push_unique, fault_proxy
) -> None:
    pushed = push_unique()
    big = max(pushed.layers, key=lambda x: x.size)
    fault_proxy.drop_after(f"/blobs/{big.digest}", nbytes=1000)
    [image] = runtime.pull(f"{fault_proxy.host}/{pushed.repo}", options=OPTS)
    assert image.id == pushed.config_digest[7:]
    gets = [e for e in fault_proxy.log if e.method == "GET" and e.path.endswith(big.digest)]
    assert len(gets) == 2
    assert gets[1].headers.get("range") == "bytes=1000-"


@pytest.mark.parametrize(("status", "headers"), [(429, {"Retry-After": "0"}), (503, {}), (502, {})])
def test_transient_errors_are_retried(
    runtime: towline.Runtime, push_unique, fault_proxy, status: int, headers: dict[str, str]
) -> None:
    pushed = push_unique()
    fault_proxy.respond("/blobs/sha256:", status, times=2, headers=headers)
    options = towline.PullOptions(tls_verify=False, retry_delay=0.01)
    [image] = runtime.pull(f"{fault_proxy.host}/{pushed.repo}", options=options)
    assert image.id == pushed.config_digest[7:]


def test_a_server_error_that_persists_fails_cleanly(
    runtime: towline.Runtime, push_unique, fault_proxy
) -> None:
    pushed = push_unique()
    fault_proxy.respond(f"/blobs/{pushed.layers[0].digest}", 500, times=100)
    before = snapshot(runtime)
    with pytest.raises(towline.TransportError, match="500"):
        runtime.pull(f"{fault_proxy.host}/{pushed.repo}", options=OPTS)
    assert snapshot(runtime) == before


def test_interrupting_a_pull_leaves_the_store_unchanged(
    runtime: towline.Runtime, test_images: dict[str, PushedImage], push_unique
) -> None:
    runtime.pull(test_images["docker"].reference, options=OPTS)
    before = snapshot(runtime)
    pushed = push_unique()
    calls = 0

    def ctrl_c(event: towline.ProgressEvent) -> None:
        nonlocal calls
        calls += 1
        if event.kind == "done":  # one layer is complete and renamed into place
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runtime.pull(
            pushed.reference, options=towline.PullOptions(tls_verify=False, progress=ctrl_c)
        )
    assert calls > 0
    assert snapshot(runtime) == before
    assert list((runtime.root / "tmp").iterdir()) == []


def test_unreachable_registry(runtime: towline.Runtime) -> None:
    with pytest.raises(towline.TransportError, match=r"pinging container registry 127\.0\.0\.1:9"):
        runtime.pull(
            "127.0.0.1:9/x/y", options=towline.PullOptions(tls_verify=False, max_retries=0)
        )


def test_https_is_the_default(
    runtime: towline.Runtime, test_images: dict[str, PushedImage]
) -> None:
    # The test registry speaks plain HTTP; without --tls-verify=false that must fail.
    with pytest.raises(towline.TransportError, match="pinging container registry"):
        runtime.pull(test_images["gzip"].reference, options=towline.PullOptions(max_retries=0))


def test_store_reopens_after_a_failed_pull(
    tmp_path: Path, env: dict[str, str], push_unique, registry: RegistryServer
) -> None:
    pushed = push_unique()
    victim = registry.blob_data_path(pushed.layers[0].digest)
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")
    with towline.Runtime(tmp_path / "s", env=env) as rt, pytest.raises(towline.DigestMismatchError):
        rt.pull(pushed.reference, options=OPTS)
    with towline.Runtime(tmp_path / "s", env=env) as rt:
        assert rt.list_images() == []
