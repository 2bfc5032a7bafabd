"""A streaming HTTP/1.1 proxy in front of a registry that injects scripted faults.

Requests go to ``http://<proxy>/…`` and are forwarded as they are (method, path, headers
with the client's Host, body streamed both ways) to the upstream registry. Because the
Host header is kept, the registry's upload ``Location`` URLs point back at the proxy.

Faults match a regular expression searched in the request path (query included) and
fire ``times`` times (``None``: until :meth:`FaultProxy.reset`). Answering faults
(:meth:`~FaultProxy.respond`, :meth:`~FaultProxy.redirect_blobs_to`) reply without
asking the registry; stream faults (:meth:`~FaultProxy.drop_after`,
:meth:`~FaultProxy.slow`) shape a forwarded response body, and only count for
responses that have one.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, NamedTuple

_CHUNK = 64 * 1024
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",  # http.server already answered any 100-continue itself
    }
)
BLOB_PATH = r"^/v2/.+/blobs/[a-z0-9]+:[0-9a-f]+(\?|$)"

FaultKind = Literal["drop", "respond", "slow", "redirect"]


class LogEntry(NamedTuple):
    """One request seen by the proxy; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    status: int


@dataclass
class _Fault:
    kind: FaultKind
    pattern: re.Pattern[str]
    remaining: int | None
    method: str | None = None
    nbytes: int = 0
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    rate: int = 0


class FaultProxy:
    """The proxy; ``.log`` lists what it saw, ``.errors`` any unexpected handler failure."""

    def __init__(self, upstream: str, *, bind_host: str = "127.0.0.1", timeout: float = 30.0):
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self._bind_host = bind_host
        self.timeout = timeout
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._log: list[LogEntry] = []
        self.errors: list[BaseException] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.host = ""

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the proxy."""
        return f"http://{self.host}"

    @property
    def log(self) -> list[LogEntry]:
        """A copy of the requests seen since the last :meth:`reset`, in order."""
        with self._lock:
            return list(self._log)

    # === scripting faults

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def drop_after(
        self, path_re: str, nbytes: int, times: int | None = 1, *, method: str | None = None
    ) -> None:
        """Send the headers and ``nbytes`` of the body, then close the connection."""
        self._add(_Fault("drop", re.compile(path_re), times, method, nbytes=nbytes))

    def respond(
        self,
        path_re: str,
        status: int,
        times: int | None = 1,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        method: str | None = None,
    ) -> None:
        """Answer ``status`` (e.g. 429 with ``{"Retry-After": "1"}``) without asking upstream."""
        self._add(
            _Fault(
                "respond",
                re.compile(path_re),
                times,
                method,
                status=status,
                headers=dict(headers or {}),
                body=body,
            )
        )

    def slow(
        self,
        path_re: str,
        bytes_per_second: int,
        times: int | None = None,
        *,
        method: str | None = None,
    ) -> None:
        """Stream matching response bodies at about ``bytes_per_second``."""
        self._add(_Fault("slow", re.compile(path_re), times, method, rate=bytes_per_second))

    def redirect_blobs_to(self, other_host: str, times: int | None = None) -> None:
        """Answer blob GETs with ``307 Location: http://<other_host><same path>``."""
        self._add(
            _Fault(
                "redirect",
                re.compile(BLOB_PATH),
                times,
                "GET",
                status=307,
                headers={"Location": f"http://{other_host}"},
            )
        )

    def reset(self) -> None:
        """Clear every fault, the log and the recorded errors."""
        with self._lock:
            self._faults.clear()
            self._log.clear()
            self.errors.clear()

    def _take(
        self, kinds: tuple[FaultKind, ...], method: str, path: str, has_body: bool = True
    ) -> _Fault | None:
        """The first live fault of ``kinds`` matching the request, with one use consumed."""
        with self._lock:
            for fault in self._faults:
                if (
                    fault.kind in kinds
                    and fault.remaining != 0
                    and (fault.method is None or fault.method == method)
                    and (has_body or fault.kind not in ("drop", "slow"))
                    and fault.pattern.search(path)
                ):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    def _record(self, entry: LogEntry) -> None:
        with self._lock:
            self._log.append(entry)

    # === lifecycle

    def start(self) -> None:
        """Listen on a free port of ``bind_host`` (127.0.0.2 works too on Linux)."""
        self._server = _Server((self._bind_host, 0), self)
        self.host = f"{self._bind_host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name=f"fault-proxy {self.host}",
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and cut the connections still open."""
        if self._server is not None:
            self._server.shutdown()
            self._server.close_all()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        with self._open_lock:
            for sock in self._open:
                with contextlib.suppress(OSError):  # already closed by the peer
                    sock.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        # A client hanging up mid-body is what fault tests do; anything else is kept.
        if error is not None and not isinstance(error, ConnectionError | TimeoutError):
            self.proxy.errors.append(error)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection is dropped after this
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # tests read FaultProxy.log instead

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self) -> None:
        proxy = self.server.proxy
        seen = {name.lower(): value for name, value in self.headers.items()}
        fault = proxy._take(("respond", "redirect"), self.command, self.path)
        if fault is None:
            self._forward(proxy, seen)
            return
        for _ in self._request_body():
            pass  # drain it, so the connection can serve the next request
        headers = dict(fault.headers)
        if fault.kind == "redirect":
            headers["Location"] += self.path
        proxy._record(LogEntry(self.command, self.path, seen, fault.status))
        self.send_response_only(fault.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(fault.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(fault.body)

    def _request_body(self) -> Iterator[bytes]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                yield self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline().strip():
                pass  # trailers
            return
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            data = self.rfile.read(min(left, _CHUNK))
            if not data:
                raise ConnectionResetError("client closed the connection mid-body")
            left -= len(data)
            yield data

    def _forward(self, proxy: FaultProxy, seen: dict[str, str]) -> None:
        conn = http.client.HTTPConnection(*proxy._upstream, timeout=proxy.timeout)
        try:
            chunked = seen.get("transfer-encoding", "").lower() == "chunked"
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    conn.putheader(name, value)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for data in self._request_body():
                conn.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                conn.send(b"0\r\n\r\n")
            response = conn.getresponse()
        except OSError as exc:
            conn.close()
            proxy._record(LogEntry(self.command, self.path, seen, 502))
            message = f"fault proxy: upstream {proxy._upstream} failed: {exc}".encode()
            self.send_response_only(502)
            self.send_header("Content-Length", str(len(message)))
            self.end_headers()
            self.wfile.write(message)
            return
        try:
            proxy._record(LogEntry(self.command, self.path, seen, response.status))
            self._relay(proxy, response)
        finally:
            response.close()
            conn.close()

    def _relay(self, proxy: FaultProxy, response: http.client.HTTPResponse) -> None:
        has_body = self.command != "HEAD" and response.status not in (204, 304)
        has_body = has_body and response.status >= 200
        drop = proxy._take(("drop",), self.command, self.path, has_body)
        slow = proxy._take(("slow",), self.command, self.path, has_body)
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        rechunk = has_body and response.chunked
        until_eof = has_body and not rechunk and response.getheader("Content-Length") is None
        if rechunk:
            self.send_header("Transfer-Encoding", "chunked")
        if until_eof:
            self.send_header("Connection", "close")
        self.end_headers()
        if not has_body:
            return
        sent, started = 0, time.monotonic()
        while True:
            want = _CHUNK if slow is None else max(1, min(_CHUNK, slow.rate // 20))
            if drop is not None:
                want = min(want, drop.nbytes - sent)
                if want <= 0:
                    break
            data = response.read1(want)
            if not data:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if rechunk else data)
            sent += len(data)
            if slow is not None:
                time.sleep(max(0.0, sent / slow.rate - (time.monotonic() - started)))
        if drop is not None:
            # The fault: the client is promised a whole body and gets a closed connection.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if rechunk:
            self.wfile.write(b"0\r\n\r\n")
