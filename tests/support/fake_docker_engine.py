"""A small Docker Engine on a unix socket: ``GET /images/{name}/get`` and nothing else.

It serves ``docker save`` streams the test registers under a name or an ID
(:meth:`FakeDockerEngine.add`), answers an unknown name with the engine's 404
JSON, records every request path, and can cut a stream short
(``truncate_after``) to act as a daemon dying mid-export. The socket lives in a
short directory under ``/tmp`` (unix socket paths are limited to 107 bytes).
"""

from __future__ import annotations

import json
import re
import shutil
import socketserver
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote

_IMAGE_GET = re.compile(r"(?:/v[0-9.]+)?/images/(?P<name>[^/?]+)/get")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    engine: FakeDockerEngine


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:  # a unix socket peer has no address
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests look at ``requests`` instead."""

    def _json(self, status: int, document: dict[str, str]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # the http.server API names it
        engine = self.server.engine
        engine.requests.append(self.path)
        match = _IMAGE_GET.fullmatch(self.path)
        if match is None:
            self._json(404, {"message": "page not found"})
            return
        name = unquote(match.group("name"))
        data = engine.images.get(name)
        if data is None:
            self._json(404, {"message": f"No such image: {name}"})
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        cut = engine.truncate_after
        self.wfile.write(data if cut is None else data[:cut])
        if cut is not None:
            self.close_connection = True


class FakeDockerEngine:
    """The engine; use as a context manager, then point ``DOCKER_HOST`` at :attr:`docker_host`."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="tl-engine-", dir="/tmp"))
        self.socket = self._dir / "docker.sock"
        self.images: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.truncate_after: int | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def docker_host(self) -> str:
        """``unix://`` and the socket's path."""
        return f"unix://{self.socket}"

    def add(self, archive: Path, *names: str) -> None:
        """Serve the ``docker save`` archive at ``archive`` under each of ``names``."""
        data = archive.read_bytes()
        for name in names:
            self.images[name] = data

    def __enter__(self) -> FakeDockerEngine:
        server = _Server(str(self.socket), _Handler)
        server.engine = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        shutil.rmtree(self._dir, ignore_errors=True)
