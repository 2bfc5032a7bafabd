"""Writes examples/hello.oci.tar: a tiny OCI image archive to try towline with no network.

    python examples/make_hello.py [OUTPUT]

The image is built from files this script writes, byte for byte the same on every
run (fixed times, owners and gzip headers), so the archive in the repository can be
checked against it. Two layers, the second deleting a file of the first with a
whiteout, for two platforms (linux/amd64 and linux/arm64) behind one index:

    towline pull oci-archive:examples/hello.oci.tar      # -> localhost/hello:latest
    towline unpack localhost/hello:latest ./hello-rootfs
    cat ./hello-rootfs/hello.txt
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

MTIME = 1_700_000_000  # 2023-11-14: any fixed time keeps the output reproducible
NAME = "localhost/hello:latest"


def _tar(members: list[tuple[str, bytes | None, int]]) -> bytes:
    """An uncompressed tar of (path, content or None for a directory, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data, mode in members:
            info = tarfile.TarInfo(path)
            info.mtime, info.mode, info.uid, info.gid = MTIME, mode, 0, 0
            info.uname = info.gname = ""
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build() -> bytes:
    """The archive's bytes."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> str:
        digest = _digest(data)
        blobs[digest] = data
        return digest

    base = _tar(
        [
            ("etc/", None, 0o755),
            ("etc/motd", b"This line is deleted by the second layer.\n", 0o644),
            ("hello.txt", b"Hello from an offline towline pull!\n", 0o644),
        ]
    )
    top = _tar(
        [
            ("etc/", None, 0o755),
            ("etc/.wh.motd", b"", 0o644),
            ("greeting.txt", b"Layers are applied in order; whiteouts delete.\n", 0o644),
        ]
    )
    layers = []
    for tar in (base, top):
        compressed = gzip.compress(tar, compresslevel=9, mtime=0)
        layers.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": blob(compressed),
                "size": len(compressed),
            }
        )
    diff_ids = [_digest(base), _digest(top)]

    instances = []
    for arch in ("amd64", "arm64"):
        config = _json(
            {
                "architecture": arch,
                "os": "linux",
                "created": "2023-11-14T22:13:20Z",
                "config": {
                    "Cmd": ["/hello.txt"],
                    "Labels": {"org.opencontainers.image.title": "towline hello example"},
                },
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created_by": "examples/make_hello.py"}] * 2,
            }
        )
        manifest = _json(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": blob(config),
                    "size": len(config),
                },
                "layers": layers,
            }
        )
        instances.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": blob(manifest),
                "size": len(manifest),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = _json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": instances,
        }
    )
    top_index = _json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "digest": blob(index),
                    "size": len(index),
                    "annotations": {
                        "io.containerd.image.name": NAME,
                        "org.opencontainers.image.ref.name": "latest",
                    },
                }
            ],
        }
    )
    members: list[tuple[str, bytes | None, int]] = [
        ("blobs/", None, 0o755),
        ("blobs/sha256/", None, 0o755),
    ]
    members += [
        (f"blobs/sha256/{d.partition(':')[2]}", data, 0o644) for d, data in sorted(blobs.items())
    ]
    members += [
        ("index.json", top_index, 0o644),
        ("oci-layout", _json({"imageLayoutVersion": "1.0.0"}), 0o644),
    ]
    return _tar(members)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("hello.oci.tar")
    out.write_bytes(build())
    sys.stdout.write(f"wrote {out} ({out.stat().st_size} bytes)\n")


if __name__ == "__main__":
    main()
