"""Fixtures shared by the rag tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path):
    """A real Chroma server from the chromadb package's `chroma run`, on loopback only."""
    executable = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if not Path(executable).exists():
        pytest.skip("the `chroma` CLI from the chromadb package is not installed")
    port = _free_port()
    server = subprocess.Popen(
        [executable, "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        server.kill()
        pytest.fail("chroma run did not start listening within 30 s")
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def unprivileged_user(tmp_path_factory):
    """(command prefix, scratch directory) to run a child as a user whom permissions stop.

    Tests run as root here, and root reads a chmod-000 directory anyway; `setpriv` drops to
    `nobody` without CAP_DAC_OVERRIDE (the user in the report). The scratch directory is
    outside pytest's root-only tmp tree so that user can reach it.
    """
    if os.geteuid() != 0:
        prefix: list[str] = []
    elif shutil.which("setpriv"):
        prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    else:
        pytest.skip("running as root without setpriv: cannot drop the read permission bypass")
    scratch = Path(tempfile.mkdtemp(prefix="hybrid-unprivileged-"))
    scratch.chmod(0o777)
    yield prefix, scratch
    for directory, _, _ in os.walk(scratch):
        os.chmod(directory, 0o755)
    shutil.rmtree(scratch)
