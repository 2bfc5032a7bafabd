"""A registry (or token server) that attacks the client: endless bodies, hostile JSON.

Findings 9, 10 and 12 (NaN) of issue 7. Error bodies are read up to 1 MiB and token
answers up to 1 MiB, as containers/image (``iolimits.MaxErrorBodySize``,
``MaxAuthTokenBodySize``); every JSON document a registry sends is parsed with the
limits of Go's ``encoding/json``: no NaN/Infinity, numbers that fit 64 bits, bounded
nesting. Each failure is a one-line :class:`towline.TowlineError`.

``HostileRegistry`` is a small threaded HTTP server on 127.0.0.1 that answers each
path as scripted and counts the body bytes it managed to send; the JSON cases go
through the fault proxy in front of the real registry.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import towline
from support.fault_proxy import FaultProxy
from support.images import Image, build_image, with_config
from support.registry import PushedImage, RegistryServer, push_named

from .conftest import store_files, unique_layers

MiB = 1 << 20
#: What an endless body sends at most, so that a client without a cap still finishes.
ENDLESS_LIMIT = 96 * MiB
#: Bytes the kernel may take on top of what the client read (socket buffers on loopback).
SOCKET_SLACK = 8 * MiB
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OPTS = towline.PullOptions(tls_verify=False, max_retries=0)
_FILLER = b"a" * (64 * 1024)


@dataclass
class Answer:
    """One scripted answer: ``endless`` bodies go on after ``body`` until the client hangs up."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    endless: bool = False


class HostileRegistry:
    """Answers ``GET <path>`` (query ignored) from ``routes``; anything else is a 404."""

    def __init__(self) -> None:
        self.routes: dict[str, Answer] = {}
        self.sent: Counter[str] = Counter()
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.hostile = self  # type: ignore[attr-defined]
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def count(self, path: str, nbytes: int) -> None:
        with self._lock:
            self.sent[path] += nbytes

    def __enter__(self) -> HostileRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        # A small send buffer: what the server counts as sent is close to what left it.
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        hostile: HostileRegistry = self.server.hostile  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        hostile.requests.append(path)
        answer = hostile.routes.get(path, Answer(404, b"404 page not found\n"))
        self.send_response_only(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.endless:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        try:
            self.wfile.write(answer.body)
            hostile.count(path, len(answer.body))
            sent = len(answer.body)
            while answer.endless and sent < ENDLESS_LIMIT:
                self.wfile.write(_FILLER)
                sent += len(_FILLER)
                hostile.count(path, len(_FILLER))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client stopped reading: what we want


@pytest.fixture
def hostile() -> Iterator[HostileRegistry]:
    with HostileRegistry() as server:
        server.routes["/v2/"] = Answer(200, b"{}", {"Content-Type": "application/json"})
        yield server


def error_json_prefix(code: str) -> bytes:
    """The start of a distribution error body whose message never ends."""
    return b'{"errors":[{"code":"' + code.encode() + b'","message":"'


def assert_stopped_near_the_cap(sent: int) -> None:
    # The write the client cut short is not counted, so up to one filler chunk less.
    assert MiB - len(_FILLER) <= sent < MiB + SOCKET_SLACK


def assert_one_line(error: BaseException) -> str:
    message = str(error)
    assert isinstance(error, towline.TowlineError), repr(error)
    assert "\n" not in message and len(message) < 500, message
    return message


# === finding 9: endless (and inflating) error bodies are read up to 1 MiB


def test_an_endless_404_body_is_read_only_up_to_the_cap(
    runtime: towline.Runtime, hostile: HostileRegistry
) -> None:
    hostile.routes["/v2/app/manifests/latest"] = Answer(
        404, error_json_prefix("MANIFEST_UNKNOWN"), {"Content-Type": "application/json"}, True
    )
    with pytest.raises(towline.ManifestUnknownError) as info:
        runtime.pull(f"{hostile.host}/app", options=OPTS)
    message = assert_one_line(info.value)
    assert message.startswith(f"reading manifest latest in {hostile.host}/app: manifest unknown")
    assert_stopped_near_the_cap(hostile.sent["/v2/app/manifests/latest"])


def test_an_endless_401_body_on_the_ping_is_not_read(
    runtime: towline.Runtime, hostile: HostileRegistry
) -> None:
    hostile.routes["/v2/"] = Answer(
        401, b"unauthorized", {"WWW-Authenticate": 'Basic realm="hostile"'}, True
    )
    with pytest.raises(towline.ManifestUnknownError):
        runtime.pull(f"{hostile.host}/app", options=OPTS)
    assert hostile.sent["/v2/"] < MiB + SOCKET_SLACK


def test_an_endless_200_body_on_the_ping_is_not_read(
    runtime: towline.Runtime, hostile: HostileRegistry
) -> None:
    hostile.routes["/v2/"] = Answer(200, b"{", {}, True)
    with pytest.raises(towline.ManifestUnknownError):
        runtime.pull(f"{hostile.host}/app", options=OPTS)
    assert hostile.sent["/v2/"] < MiB + SOCKET_SLACK


def test_endless_401_bodies_while_answering_a_bearer_challenge_are_capped(
    runtime: towline.Runtime, hostile: HostileRegistry
) -> None:
    # The first 401 is read by the auth flow before it retries with a token; the second
    # one is the answer reported. Neither may be read whole.
    realm = f"http://{hostile.host}/token"
    hostile.routes["/token"] = Answer(200, b'{"token": "t0k3n"}')
    hostile.routes["/v2/app/manifests/latest"] = Answer(
        401,
        error_json_prefix("UNAUTHORIZED"),
        {"WWW-Authenticate": f'Bearer realm="{realm}",service="hostile"'},
        True,
    )
    with pytest.raises(towline.AuthenticationError) as info:
        runtime.pull(f"{hostile.host}/app", options=OPTS)
    message = assert_one_line(info.value)
    assert f"reading manifest latest in {hostile.host}/app" in message
    assert "log in with --creds" in message
    assert hostile.requests.count("/v2/app/manifests/latest") == 2
    assert hostile.sent["/v2/app/manifests/latest"] < 2 * (MiB + SOCKET_SLACK)


def test_an_endless_token_answer_is_capped(
    runtime: towline.Runtime, hostile: HostileRegistry
) -> None:
    realm = f"http://{hostile.host}/token"
    hostile.routes["/v2/"] = Answer(401, b"", {"WWW-Authenticate": f'Bearer realm="{realm}"'})
    hostile.routes["/token"] = Answer(200, b'{"token": "', {}, True)
    with pytest.raises(towline.TransportError) as info:
        runtime.pull(f"{hostile.host}/app", options=OPTS)
    message = assert_one_line(info.value)
    assert message.startswith(f"requesting a bearer token from {realm}")
    assert "1048576" in message
    assert info.value.slug == "too_large"
    assert_stopped_near_the_cap(hostile.sent["/token"])


def test_an_endless_redirect_body_is_capped(
    runtime: towline.Runtime, hostile: HostileRegistry
) -> None:
    hostile.routes["/v2/app/manifests/latest"] = Answer(
        307, b"<html>", {"Location": "/v2/app/manifests/moved"}, True
    )
    with pytest.raises(towline.ManifestUnknownError):
        runtime.pull(f"{hostile.host}/app", options=OPTS)
    assert "/v2/app/manifests/moved" in hostile.requests
    assert hostile.sent["/v2/app/manifests/latest"] < MiB + SOCKET_SLACK


def _gzip_bomb(prefix: bytes, inflated: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(prefix)]
    zeros = bytes(MiB)
    parts.extend(packer.compress(zeros) for _ in range(inflated // MiB))
    parts.append(packer.flush())
    return b"".join(parts)


def test_a_compressed_error_body_is_not_inflated_past_the_cap(
    runtime: towline.Runtime, hostile: HostileRegistry
) -> None:
    bomb = _gzip_bomb(error_json_prefix("MANIFEST_UNKNOWN"), 128 * MiB)  # about 130 KB
    hostile.routes["/v2/app/manifests/latest"] = Answer(
        404, bomb, {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    try:
        with pytest.raises(towline.ManifestUnknownError) as info:
            runtime.pull(f"{hostile.host}/app", options=OPTS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not tracing:
            tracemalloc.stop()
    assert_one_line(info.value)
    assert peak - before < 32 * MiB  # it used to hold the whole 128 MiB, twice


def test_a_small_compressed_error_body_still_gives_its_message(
    runtime: towline.Runtime, hostile: HostileRegistry
) -> None:
    body = b'{"errors":[{"code":"NAME_UNKNOWN","message":"no such repo, try app2"}]}'
    hostile.routes["/v2/app/manifests/latest"] = Answer(
        404, gzip.compress(body), {"Content-Encoding": "gzip"}
    )
    with pytest.raises(towline.ManifestUnknownError, match="name unknown: no such repo, try app2"):
        runtime.pull(f"{hostile.host}/app", options=OPTS)


def test_a_blob_sent_with_a_content_encoding_is_taken_as_sent(
    runtime: towline.Runtime, push_unique: Any, fault_proxy: FaultProxy
) -> None:
    # Blobs are asked for with Accept-Encoding: identity and streamed raw: a
    # Content-Encoding is not undone (httpx used to inflate it, with no bound on the
    # size of what one chunk inflates to, and the digest then failed).
    pushed = push_unique()
    layer = pushed.layers[0]
    artifact = pushed.artifact
    assert isinstance(artifact, Image)
    fault_proxy.respond(
        f"/blobs/{layer.digest}$",
        200,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"},
        body=artifact.blobs[layer.digest],
    )
    [image] = runtime.pull(f"{fault_proxy.host}/{pushed.repo}", options=OPTS)
    assert [x.digest for x in image.layers] == [x.digest for x in pushed.layers]


# === finding 10: hostile JSON is an invalid_manifest (or the document's) error, never a crash

DEEP = b"[" * 200_000


def _manifest_with_size(pushed: PushedImage, size: str) -> bytes:
    artifact = pushed.artifact
    assert isinstance(artifact, Image)
    document = json.loads(artifact.manifest)
    placeholder = 1234567890123
    document["layers"][0]["size"] = placeholder
    return json.dumps(document).encode().replace(str(placeholder).encode(), size.encode())


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("deep", "nested more than"),
        ("huge-size", "does not fit in 64 bits"),
        ("size-2^70", "does not fit in 64 bits"),
        ("size-2^63", "size must be a non-negative integer below 2^63"),
        ("nan-size", "NaN"),
    ],
)
def test_a_hostile_manifest_is_an_invalid_manifest_error(
    runtime: towline.Runtime,
    push_unique: Any,
    fault_proxy: FaultProxy,
    case: str,
    reason: str,
) -> None:
    pushed = push_unique()
    body = {
        "deep": DEEP,
        "huge-size": _manifest_with_size(pushed, "1" + "0" * 5000),
        "size-2^70": _manifest_with_size(pushed, str(2**70)),
        "size-2^63": _manifest_with_size(pushed, str(2**64 - 1)),
        "nan-size": _manifest_with_size(pushed, "NaN"),
    }[case]
    fault_proxy.respond(
        "/manifests/latest$", 200, headers={"Content-Type": OCI_MANIFEST}, body=body
    )
    before = store_files(runtime.root)
    with pytest.raises(towline.TransportError) as info:
        runtime.pull(f"{fault_proxy.host}/{pushed.repo}", options=OPTS)
    message = assert_one_line(info.value)
    assert info.value.slug == "invalid_manifest"
    assert message.startswith(f"reading manifest latest in {fault_proxy.host}/{pushed.repo}: ")
    assert reason in message
    assert store_files(runtime.root) == before


@pytest.mark.parametrize(
    "body",
    [DEEP, b'{"errors":[{"code":"MANIFEST_UNKNOWN","detail":' + b"9" * 5000 + b"}]}"],
    ids=["deep", "huge-int"],
)
def test_a_hostile_error_body_still_gives_the_status_error(
    runtime: towline.Runtime, registry: RegistryServer, fault_proxy: FaultProxy, body: bytes
) -> None:
    fault_proxy.respond("/manifests/latest$", 404, body=body)
    with pytest.raises(towline.ManifestUnknownError) as info:
        runtime.pull(f"{fault_proxy.host}/nothing/here", options=OPTS)
    assert_one_line(info.value)


def test_a_hostile_tag_list_is_an_invalid_tags_error(
    runtime: towline.Runtime, push_unique: Any, fault_proxy: FaultProxy
) -> None:
    pushed = push_unique()
    fault_proxy.respond("/tags/list", 200, headers={"Content-Type": "application/json"}, body=DEEP)
    with pytest.raises(towline.TransportError) as info:
        runtime.pull(
            f"{fault_proxy.host}/{pushed.repo}",
            options=towline.PullOptions(tls_verify=False, all_tags=True),
        )
    message = assert_one_line(info.value)
    assert info.value.slug == "invalid_tags"
    assert f"listing tags of {fault_proxy.host}/{pushed.repo}" in message


@pytest.mark.parametrize(
    "body",
    [DEEP, b'{"token": "t", "expires_in": NaN}', b'{"token": "t", "expires_in": 1e999}'],
    ids=["deep", "nan", "infinite"],
)
def test_a_hostile_token_answer_is_an_authentication_error(
    runtime: towline.Runtime, hostile: HostileRegistry, body: bytes
) -> None:
    realm = f"http://{hostile.host}/token"
    hostile.routes["/v2/"] = Answer(401, b"", {"WWW-Authenticate": f'Bearer realm="{realm}"'})
    hostile.routes["/token"] = Answer(200, body, {"Content-Type": "application/json"})
    with pytest.raises(towline.AuthenticationError) as info:
        runtime.pull(f"{hostile.host}/app", options=OPTS)
    message = assert_one_line(info.value)
    assert f"token server {realm} answered with invalid JSON" in message


# === finding 12 (first half): NaN and Infinity in a config are refused, as Go's decoder does


def _image_with_config_value(label: str, literal: bytes, key: str = "towline_test") -> Image:
    """An image whose config has ``key`` set to the raw JSON ``literal``."""
    image = build_image(unique_layers(label), config_extra={key: "PLACEHOLDER"})
    return with_config(image, image.config.replace(b'"PLACEHOLDER"', literal))


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"[1e400]"])
def test_a_config_with_nan_or_infinity_is_refused(
    runtime: towline.Runtime, registry: RegistryServer, literal: bytes
) -> None:
    image = _image_with_config_value(f"nan-{literal.decode()}", literal)
    pushed = push_named(registry, f"hostile/config-{len(literal)}-{literal[0]}", image)
    before = store_files(runtime.root)
    with pytest.raises(towline.TransportError) as info:
        runtime.pull(pushed.reference, options=OPTS)
    message = assert_one_line(info.value)
    assert info.value.slug == "invalid_image_config"
    assert f"config {pushed.config_digest} of docker://{pushed.reference}" in message
    assert runtime.list_images() == []
    assert store_files(runtime.root) == before


def test_a_lone_surrogate_in_a_config_becomes_u_fffd_as_in_go(
    runtime: towline.Runtime, registry: RegistryServer
) -> None:
    # json.loads makes an unencodable str of "\ud800" (the store then failed with
    # UnicodeEncodeError); Go's decoder turns it into U+FFFD, and so does towline.
    image = _image_with_config_value("lone-surrogate", b'"\\ud800"', key="variant")
    pushed = push_named(registry, "hostile/lone-surrogate", image)
    [pulled] = runtime.pull(pushed.reference, options=OPTS)
    assert pulled.platform == "linux/amd64/\ufffd"
    assert [i.id for i in runtime.list_images()] == [pulled.id]
