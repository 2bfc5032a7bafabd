"""certs.d → ssl.SSLContext, checked against a real TLS server on 127.0.0.1.

Certificates are made with the openssl CLI: a CA, a server certificate for
127.0.0.1, and a client certificate for mutual TLS.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.tools import require_tool
from towline.config.certs import cert_dir_for, ssl_context_for
from towline.config.paths import ConfigPaths
from towline.errors import ConfigError


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def _leaf(directory: Path, name: str, ca: Path, ca_key: Path, extensions: str) -> tuple[Path, Path]:
    key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
    ext_file = directory / f"{name}.ext"
    ext_file.write_text(extensions)
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={name}", cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-sha256", "-extfile", ext_file, cwd=directory,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    require_tool("openssl")  # makes the test certificates; a failure on CI, a skip elsewhere
    directory = tmp_path_factory.mktemp("pki")
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=towline test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory,
    )  # fmt: skip
    server_cert, server_key = _leaf(
        directory,
        "server",
        ca,
        ca_key,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n",
    )
    client_cert, client_key = _leaf(
        directory,
        "client",
        ca,
        ca_key,
        "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n",
    )
    return Pki(ca, server_cert, server_key, client_cert, client_key)


class TlsServer:
    """Accepts connections on 127.0.0.1, completes a handshake and says b"ok"."""

    def __init__(self, pki: Pki, *, require_client_cert: bool) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        if require_client_cert:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(pki.ca)
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return  # the listening socket was closed
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except OSError:
                continue  # the client refused us, or we refused it: part of the test

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone does not on Linux.
        self.socket.shutdown(socket.SHUT_RDWR)
        self.socket.close()
        self.thread.join(timeout=10)


def talk(context: ssl.SSLContext, port: int) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.recv(2)


@pytest.fixture
def server(pki: Pki) -> Iterator[TlsServer]:
    tls = TlsServer(pki, require_client_cert=False)
    yield tls
    tls.close()


@pytest.fixture
def mtls_server(pki: Pki) -> Iterator[TlsServer]:
    tls = TlsServer(pki, require_client_cert=True)
    yield tls
    tls.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def make_paths(tmp_path: Path, home: Path, **kwargs: Path) -> ConfigPaths:
    env = {"TOWLINE_CONFIG_ROOT": str(tmp_path / "root")}
    return ConfigPaths.from_env(env, home=home, uid=1000, **kwargs)


def host_dir(base: Path, port: int) -> Path:
    directory = base / f"127.0.0.1:{port}"
    directory.mkdir(parents=True)
    return directory


def test_system_cas_alone_do_not_trust_the_test_ca(
    tmp_path: Path, home: Path, server: TlsServer
) -> None:
    context = ssl_context_for(f"127.0.0.1:{server.port}", make_paths(tmp_path, home))
    with pytest.raises(ssl.SSLCertVerificationError):
        talk(context, server.port)


def test_ca_from_etc_containers_certs_d(
    tmp_path: Path, home: Path, pki: Pki, server: TlsServer
) -> None:
    directory = host_dir(tmp_path / "root/etc/containers/certs.d", server.port)
    shutil.copy(pki.ca, directory / "ca.crt")
    paths = make_paths(tmp_path, home)
    assert cert_dir_for(f"127.0.0.1:{server.port}", paths) == directory
    assert talk(ssl_context_for(f"127.0.0.1:{server.port}", paths), server.port) == b"ok"


def test_first_existing_dir_wins_and_dirs_are_not_merged(
    tmp_path: Path, home: Path, pki: Pki, server: TlsServer
) -> None:
    user_dir = host_dir(home / ".config/containers/certs.d", server.port)
    shutil.copy(pki.ca, host_dir(tmp_path / "root/etc/docker/certs.d", server.port) / "ca.crt")
    paths = make_paths(tmp_path, home)
    assert cert_dir_for(f"127.0.0.1:{server.port}", paths) == user_dir
    with pytest.raises(ssl.SSLCertVerificationError):
        talk(ssl_context_for(f"127.0.0.1:{server.port}", paths), server.port)


def test_cert_dir_option_is_used_as_is(
    tmp_path: Path, home: Path, pki: Pki, server: TlsServer
) -> None:
    certs = tmp_path / "my-certs"
    certs.mkdir()
    shutil.copy(pki.ca, certs / "ca.crt")
    by_argument = ssl_context_for("any-host", make_paths(tmp_path, home), cert_dir=certs)
    assert talk(by_argument, server.port) == b"ok"
    paths = make_paths(tmp_path, home, cert_dir=certs)
    assert talk(ssl_context_for("any-host", paths), server.port) == b"ok"


def test_verify_false_skips_verification(tmp_path: Path, home: Path, server: TlsServer) -> None:
    context = ssl_context_for(f"127.0.0.1:{server.port}", make_paths(tmp_path, home), verify=False)
    assert talk(context, server.port) == b"ok"


def test_client_certificate_pair(
    tmp_path: Path, home: Path, pki: Pki, mtls_server: TlsServer
) -> None:
    host = f"127.0.0.1:{mtls_server.port}"
    directory = host_dir(tmp_path / "root/etc/containers/certs.d", mtls_server.port)
    shutil.copy(pki.ca, directory / "ca.crt")
    paths = make_paths(tmp_path, home)
    # Without a client certificate the server ends the connection.
    try:
        reply = talk(ssl_context_for(host, paths), mtls_server.port)
    except (ssl.SSLError, ConnectionError):
        reply = b""
    assert reply != b"ok"
    shutil.copy(pki.client_cert, directory / "client.cert")
    shutil.copy(pki.client_key, directory / "client.key")
    assert talk(ssl_context_for(host, paths), mtls_server.port) == b"ok"
    # Client certificates are presented even when the server is not verified.
    assert talk(ssl_context_for(host, paths, verify=False), mtls_server.port) == b"ok"


@pytest.mark.parametrize(
    ("present", "message"),
    [
        (
            "client.cert",
            "missing key client.key for client certificate client.cert. Note that CA "
            "certificates should use the extension .crt",
        ),
        ("client.key", "missing client certificate client.cert for key client.key"),
    ],
)
def test_unpaired_client_files_are_errors(
    tmp_path: Path, home: Path, pki: Pki, present: str, message: str
) -> None:
    directory = host_dir(tmp_path / "root/etc/containers/certs.d", 443)
    source = pki.client_cert if present.endswith(".cert") else pki.client_key
    shutil.copy(source, directory / present)
    with pytest.raises(ConfigError) as info:
        ssl_context_for("127.0.0.1:443", make_paths(tmp_path, home))
    assert message in str(info.value)
    assert str(directory) in str(info.value)


def test_garbage_ca_file_is_an_error(tmp_path: Path, home: Path) -> None:
    directory = host_dir(tmp_path / "root/etc/containers/certs.d", 443)
    (directory / "bad.crt").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"CA certificate .*bad\.crt"):
        ssl_context_for("127.0.0.1:443", make_paths(tmp_path, home))


def test_mismatched_client_pair_is_an_error(tmp_path: Path, home: Path, pki: Pki) -> None:
    directory = host_dir(tmp_path / "root/etc/containers/certs.d", 443)
    shutil.copy(pki.client_cert, directory / "client.cert")
    shutil.copy(pki.server_key, directory / "client.key")
    with pytest.raises(ConfigError, match=r"client certificate .*client\.cert"):
        ssl_context_for("127.0.0.1:443", make_paths(tmp_path, home))


def test_other_files_are_ignored(tmp_path: Path, home: Path) -> None:
    directory = host_dir(tmp_path / "root/etc/containers/certs.d", 443)
    (directory / "README").write_text("hello")
    ssl_context_for("127.0.0.1:443", make_paths(tmp_path, home))


def test_no_directory_anywhere(tmp_path: Path, home: Path) -> None:
    assert cert_dir_for("nowhere:1", make_paths(tmp_path, home)) is None
