"""What the network guard costs: reported as ratios against the same work without it, same run.

- start-up: importing the heavy libraries the assistant loads (chromadb, transformers), in a fresh
  process, with the guard installed first (its audit hook sees every import and open) vs without;
- a loopback connection (a local model server) with the guard in loopback mode vs off;
- a Python child process started while offline (it re-installs the guard) vs online;
- going offline, which scans every open descriptor for connections to shut down.

    python bench/guard_bench.py [--repeat N]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hybrid_llm.net import guard  # noqa: E402
from timing import median_seconds  # noqa: E402

HEAVY_IMPORT = "import chromadb, transformers"
GUARD_FIRST = "from hybrid_llm.net import guard; guard.enable(allow_loopback=True); "


def python(code: str) -> Callable[[], object]:
    return lambda: subprocess.run([sys.executable, "-c", code], check=True)


def loopback_connect(server: socket.socket, count: int) -> Callable[[], object]:
    address = server.getsockname()

    def connect() -> None:
        for _ in range(count):
            socket.create_connection(address).close()
            server.accept()[0].close()

    return connect


def report(name: str, base: float, guarded: float) -> None:
    ratio = guarded / base
    print(f"{name:<42} without {base:9.4f}s  with {guarded:9.4f}s  ratio {ratio:5.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    report(
        f"start-up: {HEAVY_IMPORT}",
        median_seconds(python(HEAVY_IMPORT), args.repeat),
        median_seconds(python(GUARD_FIRST + HEAVY_IMPORT), args.repeat),
    )

    with socket.create_server(("127.0.0.1", 0)) as server:
        connects = loopback_connect(server, 200)
        off = median_seconds(connects, args.repeat)
        with guard.offline_mode(allow_loopback=True):
            on = median_seconds(connects, args.repeat)
        report("200 loopback connections", off, on)

    child = python("pass")
    online_child = median_seconds(child, args.repeat)
    with guard.offline_mode(allow_loopback=True):
        offline_child = median_seconds(child, args.repeat)
    report("a Python child process", online_child, offline_child)

    sockets = [socket.socket() for _ in range(500)]
    go_offline = median_seconds(
        lambda: (guard.enable(allow_loopback=False), guard.disable()), args.repeat
    )
    for sock in sockets:
        sock.close()
    print(f"{'going offline with 500 open sockets':<42} {go_offline * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
