"""CPython's zlib on the same blob, for reference: the Python pipeline's inflate.

Prints one Markdown row like the Rust binaries. Usage: python cpython_zlib.py FILE.gz [ROUNDS]
"""

from __future__ import annotations

import statistics
import sys
import time
import zlib
from pathlib import Path

CHUNK = 1 << 20


def inflate(data: bytes) -> int:
    """Decompresses ``data`` fed in 1 MiB chunks, as the Python pipeline does."""
    d = zlib.decompressobj(wbits=31)
    total = 0
    view = memoryview(data)
    for i in range(0, len(data), CHUNK):
        total += len(d.decompress(view[i : i + CHUNK]))
    return total + len(d.flush())


def main(argv: list[str]) -> None:
    data = Path(argv[0]).read_bytes()
    rounds = int(argv[1]) if len(argv) > 1 else 5
    times = []
    size = 0
    for _ in range(rounds):
        began = time.perf_counter()
        size = inflate(data)
        times.append(time.perf_counter() - began)
    t = statistics.median(times)
    version = zlib.ZLIB_RUNTIME_VERSION
    sys.stdout.write(
        f"| CPython zlib.decompressobj ({version}) | {len(data) / t / 1e6:.0f}"
        f" | {size / t / 1e6:.0f} | {t:.3f} |\n"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
