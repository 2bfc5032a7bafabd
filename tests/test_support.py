"""Proof that the test infrastructure works: registries, auth, token server, faults, images."""

from __future__ import annotations

import base64
import gzip
import io
import json
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import zstandard

from support.fault_proxy import BLOB_PATH, FaultProxy
from support.images import (
    LONG_PATH,
    OCI_INDEX,
    OCI_MANIFEST,
    STANDARD_ROOTFS,
    TarBuilder,
    build_image,
    build_index,
    compress,
    mixed_blob,
    sha256_digest,
    standard_images,
    standard_layers,
    tree_layer,
)
from support.registry import (
    PushedImage,
    RegistryServer,
    RegistryStartError,
    push_blob,
    push_image,
)
from support.token_server import TokenServer, parse_bearer_challenge
from support.tools import require_tool

ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
BIG_REPO = "test/big"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10.0) as c:
        yield c


@pytest.fixture(scope="module")
def big_blob(registry: RegistryServer) -> tuple[str, bytes]:
    data = mixed_blob(1 << 20, seed="fault-proxy")
    return push_blob(registry, BIG_REPO, data), data


def _members(tar: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        return archive.getmembers()


def _read_streamed(client: httpx.Client, url: str) -> tuple[bytes, Exception | None]:
    """The body bytes that arrived, and the error that ended the stream early, if any."""
    received = bytearray()
    try:
        with client.stream("GET", url) as response:
            for chunk in response.iter_raw():
                received += chunk
    except httpx.RemoteProtocolError as exc:
        return bytes(received), exc
    return bytes(received), None


def _manifest(client: httpx.Client, base: str, repo: str, ref: str) -> httpx.Response:
    return client.get(f"{base}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})


# === registry and pushed images


def test_registry_serves_pushed_manifest_and_blobs(
    registry: RegistryServer, test_images: dict[str, PushedImage], client: httpx.Client
) -> None:
    pushed = test_images["gzip"]
    response = _manifest(client, registry.url, pushed.repo, pushed.tag)
    assert response.status_code == 200
    assert sha256_digest(response.content) == pushed.manifest_digest
    assert response.headers["Docker-Content-Digest"] == pushed.manifest_digest
    assert response.headers["Content-Type"] == OCI_MANIFEST
    assert pushed.reference == f"{registry.host}/test/gzip:latest"
    for digest in [pushed.config_digest, *(layer.digest for layer in pushed.layers)]:
        blob = client.get(f"{registry.url}/v2/{pushed.repo}/blobs/{digest}")
        assert blob.status_code == 200
        assert sha256_digest(blob.content) == digest
        assert registry.blob_data_path(str(digest)).read_bytes() == blob.content


def test_layers_have_the_promised_content(test_images: dict[str, PushedImage]) -> None:
    tars = standard_layers()
    for n, (a, b) in enumerate(
        zip(test_images["gzip"].layers, test_images["zstd"].layers, strict=True)
    ):
        assert a.diff_id == b.diff_id == sha256_digest(tars[n])
        assert a.media_type.endswith("+gzip")
        assert b.media_type.endswith("+zstd")
    assert gzip.decompress(compress(tars[0], "gzip")) == tars[0]
    assert zstandard.ZstdDecompressor().decompress(compress(tars[0], "zstd")) == tars[0]
    names = [[m.name for m in _members(t)] for t in tars]
    assert LONG_PATH in names[1]
    assert len(LONG_PATH) > 100
    assert {"var/lib/data/.wh.old.txt", "etc/app/.wh.extra.conf", "opt/stuff/.wh..wh..opq"} <= set(
        names[2]
    )
    assert "usr/bin/tool-link" in names[1]
    assert "usr/lib/libdemo-hard.so.1" in names[1]
    assert "opt/stuff/a.txt" in names[0]
    assert "opt/stuff/a.txt" not in STANDARD_ROOTFS


def test_docker_multiarch_and_shared_images(
    registry: RegistryServer, test_images: dict[str, PushedImage], client: httpx.Client
) -> None:
    docker = test_images["docker"]
    assert docker.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert all(layer.media_type.endswith("diff.tar.gzip") for layer in docker.layers)

    multi = test_images["multiarch"]
    index = json.loads(_manifest(client, registry.url, multi.repo, multi.tag).content)
    assert index["mediaType"] == OCI_INDEX
    platforms = [m["platform"] for m in index["manifests"]]
    assert platforms == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
        {"os": "linux", "architecture": "arm", "variant": "v7"},
    ]
    assert len({m["digest"] for m in index["manifests"]}) == 3
    for platform, child in zip(platforms, multi.platforms.values(), strict=True):
        config = client.get(f"{registry.url}/v2/{multi.repo}/blobs/{child.config_digest}")
        assert {k: json.loads(config.content)[k] for k in platform} == platform

    a, b = test_images["shared-a"].layers, test_images["shared-b"].layers
    assert a[:2] == b[:2]
    assert a[2].digest != b[2].digest


def test_start_failure_names_the_log_tail(tmp_path: Path) -> None:
    executable = require_tool("docker-registry")
    bad = {"token": {"realm": "x", "service": "x", "issuer": "x", "rootcertbundle": "/nope"}}
    server = RegistryServer(tmp_path, auth_section=bad, executable=executable)
    with pytest.raises(RegistryStartError, match=r"(?s)did not answer.*/nope"):
        server.start()
    server.stop()


# === authentication


def test_basic_auth_refuses_without_credentials_and_accepts_alice(
    basic_auth_registry: RegistryServer, client: httpx.Client
) -> None:
    pushed = basic_auth_registry.pushed["gzip"]
    refused = _manifest(client, basic_auth_registry.url, pushed.repo, pushed.tag)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic ")
    wrong = client.get(
        f"{basic_auth_registry.url}/v2/{pushed.repo}/manifests/latest",
        auth=("alice", "wrong"),
        headers={"Accept": ACCEPT},
    )
    assert wrong.status_code == 401
    ok = client.get(
        f"{basic_auth_registry.url}/v2/{pushed.repo}/manifests/latest",
        auth=("alice", "s3cret"),
        headers={"Accept": ACCEPT},
    )
    assert ok.status_code == 200
    assert sha256_digest(ok.content) == pushed.manifest_digest


def _token(
    client: httpx.Client, server: TokenServer, scope: str, auth: tuple[str, str] | None = None
) -> httpx.Response:
    params = {"service": server.service, "scope": scope}
    return client.get(server.realm, params=params, auth=auth or httpx.USE_CLIENT_DEFAULT)


def test_token_registry_accepts_server_tokens_and_refuses_without(
    token_registry: RegistryServer, token_server: TokenServer, client: httpx.Client
) -> None:
    private = token_registry.pushed["private-gzip"]
    refused = _manifest(client, token_registry.url, private.repo, "latest")
    assert refused.status_code == 401
    challenge = parse_bearer_challenge(refused.headers["WWW-Authenticate"])
    assert challenge == {
        "realm": token_server.realm,
        "service": token_server.service,
        "scope": "repository:private/gzip:pull",
    }
    answer = _token(client, token_server, challenge["scope"], ("alice", "s3cret"))
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["token"] == body["access_token"]
    bearer = {"Authorization": f"Bearer {body['token']}", "Accept": ACCEPT}
    ok = client.get(f"{token_registry.url}/v2/{private.repo}/manifests/latest", headers=bearer)
    assert ok.status_code == 200
    assert sha256_digest(ok.content) == private.manifest_digest
    [seen] = token_server.requests
    assert seen.account == "alice"
    assert seen.scopes == ("repository:private/gzip:pull",)
    assert seen.granted == (("private/gzip", ("pull",)),)


def test_token_grants_per_account(
    token_registry: RegistryServer, token_server: TokenServer, client: httpx.Client
) -> None:
    def pull(repo: str, auth: tuple[str, str] | None) -> int:
        token = _token(client, token_server, f"repository:{repo}:pull", auth).json()["token"]
        headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
        return client.get(
            f"{token_registry.url}/v2/{repo}/manifests/latest", headers=headers
        ).status_code

    assert pull("public/gzip", None) == 200
    assert pull("private/gzip", None) == 401  # anonymous token, no actions granted
    assert pull("private/gzip", ("bob", "hunter2")) == 200
    assert (
        _token(client, token_server, "repository:private/gzip:pull", ("bob", "bad")).status_code
        == 401
    )
    push = _token(client, token_server, "repository:private/gzip:pull,push", ("bob", "hunter2"))
    assert token_server.requests[-1].granted == (("private/gzip", ("pull",)),)
    assert push.status_code == 200


def test_token_expires_in_is_configurable(token_server: TokenServer, client: httpx.Client) -> None:
    token_server.expires_in = 7
    body = _token(client, token_server, "repository:public/gzip:pull").json()
    assert body["expires_in"] == 7
    claims_part = body["token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(claims_part + "=" * (-len(claims_part) % 4)))
    assert claims["exp"] - claims["iat"] == 7
    assert claims["aud"] == token_server.service
    assert claims["iss"] == token_server.issuer


# === fault proxy


def test_proxy_forwards_pushes_and_chunked_uploads(
    registry: RegistryServer, fault_proxy: FaultProxy, client: httpx.Client
) -> None:
    image = build_image([TarBuilder().add_file("via-proxy", b"x").bytes()])
    assert (
        push_image(registry, "test/via-proxy", "v1", image, via=fault_proxy.url)
        == image.manifest_digest
    )
    assert {e.method for e in fault_proxy.log} >= {"HEAD", "POST", "PUT"}
    start = client.post(f"{fault_proxy.url}/v2/test/via-proxy/blobs/uploads/")
    location = httpx.URL(fault_proxy.url).join(start.headers["Location"])
    assert location.host == "127.0.0.1"
    assert location.port == int(fault_proxy.host.split(":")[1])
    data = mixed_blob(300_000, seed="chunked")
    patched = client.patch(location, content=iter([data[:100_000], data[100_000:]]))
    assert patched.status_code == 202
    done = client.put(
        httpx.URL(fault_proxy.url)
        .join(patched.headers["Location"])
        .copy_merge_params({"digest": sha256_digest(data)})
    )
    assert done.status_code == 201
    assert registry.blob_data_path(sha256_digest(data)).read_bytes() == data
    assert fault_proxy.errors == []


def test_drop_after_truncates_once(
    fault_proxy: FaultProxy, big_blob: tuple[str, bytes], client: httpx.Client
) -> None:
    digest, data = big_blob
    url = f"{fault_proxy.url}/v2/{BIG_REPO}/blobs/{digest}"
    fault_proxy.drop_after(BLOB_PATH, 1000)
    assert client.head(url).status_code == 200  # no body: the fault is not spent on it
    received, error = _read_streamed(client, url)
    assert isinstance(error, httpx.RemoteProtocolError)  # fewer bytes than Content-Length
    assert received == data[:1000]
    assert client.get(url).content == data
    assert [e.method for e in fault_proxy.log] == ["HEAD", "GET", "GET"]


def test_respond_429_then_passes(
    fault_proxy: FaultProxy, test_images: dict[str, PushedImage], client: httpx.Client
) -> None:
    fault_proxy.respond(r"/manifests/", 429, headers={"Retry-After": "1"}, body=b"slow down")
    first = _manifest(client, fault_proxy.url, "test/gzip", "latest")
    assert (first.status_code, first.headers["Retry-After"], first.content) == (
        429,
        "1",
        b"slow down",
    )
    second = _manifest(client, fault_proxy.url, "test/gzip", "latest")
    assert second.status_code == 200
    assert [e.status for e in fault_proxy.log] == [429, 200]
    fault_proxy.respond(r"/manifests/", 503, times=2)
    statuses = [
        _manifest(client, fault_proxy.url, "test/gzip", "latest").status_code for _ in range(3)
    ]
    assert statuses == [503, 503, 200]
    fault_proxy.reset()
    assert fault_proxy.log == []


def test_slow_throttles_bodies(
    fault_proxy: FaultProxy, big_blob: tuple[str, bytes], client: httpx.Client
) -> None:
    digest, data = big_blob
    fault_proxy.slow(BLOB_PATH, 100_000)
    started = time.monotonic()
    response = client.get(
        f"{fault_proxy.url}/v2/{BIG_REPO}/blobs/{digest}", headers={"Range": "bytes=0-29999"}
    )
    elapsed = time.monotonic() - started
    assert response.content == data[:30_000]
    assert 0.25 < elapsed < 3


def test_range_headers_are_forwarded_and_logged(
    fault_proxy: FaultProxy, big_blob: tuple[str, bytes], client: httpx.Client
) -> None:
    digest, data = big_blob
    response = client.get(
        f"{fault_proxy.url}/v2/{BIG_REPO}/blobs/{digest}", headers={"Range": "bytes=1000-"}
    )
    assert response.status_code == 206
    assert response.content == data[1000:]
    [entry] = fault_proxy.log
    assert entry.method == "GET"
    assert entry.status == 206
    assert entry.headers["range"] == "bytes=1000-"


def test_redirect_to_other_host_drops_authorization(
    fault_proxy: FaultProxy, other_host_proxy: FaultProxy, big_blob: tuple[str, bytes]
) -> None:
    digest, data = big_blob
    fault_proxy.redirect_blobs_to(other_host_proxy.host)
    with httpx.Client(trust_env=False, follow_redirects=True, timeout=10.0) as client:
        response = client.get(
            f"{fault_proxy.url}/v2/{BIG_REPO}/blobs/{digest}",
            headers={"Authorization": "Bearer secret-token"},
        )
    assert response.content == data
    assert response.history[0].status_code == 307
    assert response.url.host == "127.0.0.2"
    [first] = fault_proxy.log
    [second] = other_host_proxy.log
    assert first.status == 307
    assert first.headers["authorization"] == "Bearer secret-token"
    assert second.status == 200
    assert "authorization" not in second.headers


# === images


def test_images_are_deterministic(tmp_path: Path) -> None:
    layers = standard_layers()
    assert layers == standard_layers()
    for compression in ("gzip", "zstd", "none"):
        a = build_image(layers, compression)
        b = build_image(standard_layers(), compression)
        assert (a.manifest_digest, a.config_digest, a.layers) == (
            b.manifest_digest,
            b.config_digest,
            b.layers,
        )
    assert build_image(layers, "gzip").manifest_digest == standard_images()["gzip"].manifest_digest
    images = [build_image(layers[:1], platform=p) for p in ("linux/amd64", "linux/arm64/v8")]
    assert build_index(images).manifest == build_index(list(images)).manifest
    assert build_index(images, "docker").media_type.endswith("manifest.list.v2+json")
    with pytest.raises(ValueError, match="docker"):
        build_image(layers, "zstd", media="docker")
    extra = build_image(layers[:1], config_extra={"config": {"User": "1000"}, "author": "t"})
    config = json.loads(extra.config)
    assert config["config"]["User"] == "1000"
    assert config["author"] == "t"
    assert config["config"]["Cmd"] == ["/bin/sh"]

    blob = mixed_blob(200_000, seed=3)
    assert blob == mixed_blob(200_000, seed=3) != mixed_blob(200_000, seed=4)
    assert len(blob) == 200_000
    assert len(gzip.compress(blob[:100_000])) < 50_000
    assert len(gzip.compress(blob[100_000:])) > 99_000


def test_tar_builder_writes_what_it_is_told() -> None:
    long_name = "a/" + "b" * 120
    data = (
        TarBuilder(mtime=123)
        .add_dir("a", mode=0o700, uid=5, gid=6)
        .add_file(
            long_name,
            b"hi",
            mode=0o4755,
            xattrs={"user.k": b"v", "security.capability": b"\x01\x02"},
        )
        .add_symlink("a/link", "/etc/passwd")
        .add_hardlink("a/hard", long_name)
        .add_whiteout("a/gone")
        .add_opaque("a")
        .add_char_device("dev/null", 1, 3)
        .bytes()
    )
    members = {m.name: m for m in _members(data)}
    assert list(members) == [
        "a",
        long_name,
        "a/link",
        "a/hard",
        "a/.wh.gone",
        "a/.wh..wh..opq",
        "dev/null",
    ]
    assert (members["a"].mode, members["a"].uid, members["a"].gid, members["a"].mtime) == (
        0o700,
        5,
        6,
        123,
    )
    assert members[long_name].mode == 0o4755
    assert members[long_name].pax_headers["SCHILY.xattr.user.k"] == "v"
    assert members["a/link"].issym()
    assert members["a/link"].linkname == "/etc/passwd"
    assert members["a/hard"].islnk()
    assert members["a/hard"].linkname == long_name
    assert members["dev/null"].ischr()
    assert (
        members["dev/null"].devmajor,
        members["dev/null"].devminor,
    ) == (1, 3)


def test_tree_layer_is_deterministic(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "b.txt").write_text("b")
    (root / "a.txt").write_text("a")
    (root / "run").write_text("#!/bin/sh\n")
    (root / "run").chmod(0o755)
    (root / "link").symlink_to("a.txt")
    subprocess.run(["mkfifo", str(root / "fifo")], check=True)
    layer = tree_layer(root, prefix="usr/share/")
    assert layer == tree_layer(root, prefix="usr/share/")
    members = _members(layer)
    assert [m.name for m in members] == [
        "usr", "usr/share", "usr/share/a.txt", "usr/share/link", "usr/share/run",
        "usr/share/sub", "usr/share/sub/b.txt",
    ]  # fmt: skip
    assert {m.mtime for m in members} == {1_700_000_000}
    assert {m.uid for m in members} == {0}
    assert members[4].mode == 0o755
    assert members[3].linkname == "a.txt"
    limited = _members(tree_layer(root, limit_files=2))
    assert [m.name for m in limited] == ["a.txt", "link"]
    small = _members(tree_layer(root, max_file_size=1))
    assert "run" not in [m.name for m in small]
    assert "a.txt" in [m.name for m in small]
    real = tree_layer(Path("/usr/lib/python3.11"), limit_files=300, prefix="usr/lib/python3.11")
    assert real == tree_layer(
        Path("/usr/lib/python3.11"), limit_files=300, prefix="usr/lib/python3.11"
    )


# === peers


def test_require_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    assert require_tool("sh").endswith("/sh")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        require_tool("towline-no-such-tool")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must provide it"):
        require_tool("towline-no-such-tool")


def _skopeo_inspect(reference: str, tmp_path: Path, *extra: str) -> dict[str, object]:
    skopeo = require_tool("skopeo")
    authfile = tmp_path / "auth.json"
    authfile.write_text('{"auths": {}}')
    result = subprocess.run(
        [
            skopeo,
            "inspect",
            "--tls-verify=false",
            "--authfile",
            str(authfile),
            *extra,
            f"docker://{reference}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out: dict[str, object] = json.loads(result.stdout)
    return out


def test_skopeo_reads_pushed_images(
    test_images: dict[str, PushedImage],
    token_registry: RegistryServer,
    token_server: TokenServer,
    tmp_path: Path,
) -> None:
    for name in ("gzip", "docker"):
        pushed = test_images[name]
        info = _skopeo_inspect(pushed.reference, tmp_path)
        assert info["Digest"] == pushed.manifest_digest
        assert info["Layers"] == [layer.digest for layer in pushed.layers]
    # A real client through the token protocol: anonymous for public/, alice for private/.
    public = token_registry.pushed["gzip"]
    assert _skopeo_inspect(public.reference, tmp_path)["Digest"] == public.manifest_digest
    private = token_registry.pushed["private-gzip"]
    info = _skopeo_inspect(private.reference, tmp_path, "--creds", "alice:s3cret")
    assert info["Digest"] == private.manifest_digest
    assert {r.account for r in token_server.requests} == {None, "alice"}
