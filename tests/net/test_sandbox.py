"""Layer 3 (hybrid_llm/net/sandbox.py): every egress path, native code included, stopped by the
operating system alone, with the in-process guard off.

The probes run in a sandboxed child; the counting listener stays outside on the host's
loopback, standing in for the internet. Skipped where the machine allows no sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hybrid_llm.errors import UserError
from hybrid_llm.net import probes, sandbox
from hybrid_llm.net.listener import CountingListener


def _sandbox_works(method: str) -> str | None:
    if sandbox.unavailable_reason():
        return sandbox.unavailable_reason()
    run = subprocess.run(
        sandbox.launcher_command(["true"], method), capture_output=True, text=True, check=False
    )
    return None if run.returncode == 0 else f"{method} refused here: {run.stderr.strip()}"


METHODS = [
    pytest.param(
        method,
        marks=pytest.mark.skipif(bool(_sandbox_works(method)), reason=str(_sandbox_works(method))),
    )
    for method in ("namespace", "seccomp")
]


def in_sandbox(method: str, code: str) -> subprocess.CompletedProcess[str]:
    command = sandbox.launcher_command([sys.executable, "-c", code], method)
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("method", METHODS)
def test_sandbox_alone_blocks_every_path_including_native_code(
    listener: CountingListener, method: str
) -> None:
    before = listener.counts()
    command = [
        sys.executable, "-m", "hybrid_llm.net.probes", "--ports", json.dumps(listener.ports),
        "--control", str(listener.control_path), "--guard", "off",
    ]  # fmt: skip
    run = subprocess.run(
        sandbox.launcher_command(command, method),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    results = {r["path"]: r for r in json.loads(run.stdout)}
    assert listener.counts() == before, "something left the sandbox"
    native = {p.name for p in probes.PROBES if p.native and p.available()}
    assert native <= set(results)
    for path, result in results.items():
        assert not result["reached"], path
        if result["applicable"]:
            assert result["layer"] == f"{method} sandbox", (path, result)


@pytest.mark.parametrize("method", METHODS)
def test_children_stay_in_the_sandbox(listener: CountingListener, method: str) -> None:
    port = listener.ports["non-Python child (bash /dev/tcp)"]
    bash = f"exec 3<>/dev/tcp/127.0.0.1/{port}"
    code = f"import subprocess; raise SystemExit(subprocess.call(['bash', '-c', {bash!r}]))"
    before = listener.counts()
    assert in_sandbox(method, code).returncode != 0
    assert listener.counts() == before


@pytest.mark.skipif(bool(_sandbox_works("namespace")), reason=str(_sandbox_works("namespace")))
def test_namespace_keeps_loopback_for_a_local_server_and_the_user_id() -> None:
    code = (
        "import os, socket\n"
        "server = socket.create_server(('127.0.0.1', 0))\n"
        "client = socket.create_connection(server.getsockname())\n"
        "client.sendall(b'local'); conn, _ = server.accept()\n"
        "print(conn.recv(5).decode(), os.getuid(), os.environ['HYBRID_LLM_SANDBOX'])\n"
    )
    run = in_sandbox("namespace", code)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["local", str(os.getuid()), "namespace"]


@pytest.mark.skipif(bool(_sandbox_works("seccomp")), reason=str(_sandbox_works("seccomp")))
def test_seccomp_refuses_ip_sockets_but_keeps_unix_sockets() -> None:
    code = (
        "import socket\n"
        "a, b = socket.socketpair(); a.sendall(b'unix'); print(b.recv(4).decode())\n"
        "for family in (socket.AF_INET, socket.AF_INET6):\n"
        "    try:\n        socket.socket(family)\n        print('created')\n"
        "    except PermissionError:\n        print('refused')\n"
    )
    run = in_sandbox("seccomp", code)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["unix", "refused", "refused"]


def test_other_platforms_are_told_that_only_layers_1_and_2_apply(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hybrid_llm.cli import main

    monkeypatch.setattr(sys, "platform", "darwin")
    reason = sandbox.unavailable_reason()
    assert reason is not None and "macOS" in reason and "layers 1-2" in reason
    with pytest.raises(UserError, match="macOS"):
        sandbox.enter()
    with pytest.raises(SystemExit) as exited:
        main(["--sandbox", "verify-offline"])
    assert exited.value.code == 2
    assert "only layers 1-2 apply" in capsys.readouterr().err


def test_sandbox_flag_outside_a_command_line_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """main() called from Python (not the process's own command line) cannot be re-executed."""
    from hybrid_llm.cli import main

    if sandbox.unavailable_reason():
        pytest.skip(sandbox.unavailable_reason())
    with pytest.raises(SystemExit):
        main(["--sandbox", "verify-offline"])
    assert "command line" in capsys.readouterr().err


def test_a_stray_sandbox_variable_does_not_pass_for_a_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for method in ("namespace", "seccomp"):
        monkeypatch.setenv(sandbox.SANDBOX_ENV, method)
        assert sandbox.active() is None


def test_the_command_line_is_single_threaded_when_it_enters_the_sandbox() -> None:
    """The CLI builds its parser (importing every command's module) before it enters the
    sandbox, which a process with a second thread cannot do: a module that imports numpy at the
    top (its BLAS starts a thread) silently left every REPL with layers 1-2 only."""
    code = ("import os, hybrid_llm.cli as cli; cli.build_parser(); "
            "print(len(os.listdir('/proc/self/task')))")
    threads = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert threads.stdout.strip() == "1"
