"""Host Unix sockets seen from the sandbox (issue 15 item 15), exactly as the README states it:
abstract sockets belong to a network namespace, so the host's are out of reach in namespace
mode; pathname sockets stay reachable in both modes (a seccomp filter cannot read connect()'s
path, and refusing AF_UNIX outright would break local IPC), which the README tells users.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybrid_llm.net import sandbox
from tests.net.test_sandbox import METHODS, in_sandbox

pytestmark = pytest.mark.skipif(
    bool(sandbox.unavailable_reason()), reason=str(sandbox.unavailable_reason())
)

CONNECT = """
import socket, sys
try:
    socket.socket(socket.AF_UNIX).connect(sys.argv[1].replace("@", "\\0", 1))
    print("connected")
except OSError as exc:
    print("refused", exc.errno)
"""


@pytest.fixture
def host_sockets(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An abstract and a pathname Unix socket listening on the host, outside any sandbox."""
    abstract = f"@hybrid-llm-test-{os.getpid()}-{tmp_path.name}"
    pathname = str(tmp_path / "host.sock")
    servers = []
    for address in (abstract.replace("@", "\0", 1), pathname):
        server = socket.socket(socket.AF_UNIX)
        server.bind(address)
        server.listen()
        threading.Thread(target=lambda s=server: _accept_forever(s), daemon=True).start()
        servers.append(server)
    yield abstract, pathname
    for server in servers:
        server.close()


def _accept_forever(server: socket.socket) -> None:
    while True:
        try:
            server.accept()[0].close()
        except OSError:
            return


def _outcome(method: str, address: str) -> str:
    code = CONNECT.replace("sys.argv[1]", repr(address))
    run = in_sandbox(method, code)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()[0]


@pytest.mark.parametrize("method", METHODS)
def test_host_unix_sockets_from_the_sandbox(host_sockets: tuple[str, str], method: str) -> None:
    abstract, pathname = host_sockets
    assert _outcome(method, abstract) == ("refused" if method == "namespace" else "connected")
    assert _outcome(method, pathname) == "connected", "the README says pathname sockets stay reachable"
