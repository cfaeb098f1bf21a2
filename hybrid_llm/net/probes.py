"""Every egress path we know of, each tried against its own port of a counting listener.

A probe is one way code could reach the network: a library (urllib, httpx, asyncio), a raw
socket API, a reference captured before the guard, a connection already open or still
connecting, a server an outside client dials in to, a child process (and the ways a child could
shed the inherited guard), or native code (the Rust client in `ddgs`, ctypes, a non-Python
child). `verify-offline` and the
tests run them; the listener's counts, not the exceptions, decide whether a probe leaked.

Run as `python -m hybrid_llm.net.probes` to probe from a fresh process (verify-offline does,
inside and outside the sandbox) and print the results as JSON.
"""

from __future__ import annotations

import _socket
import argparse
import asyncio
import contextlib
import ctypes
import http.client
import json
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.util
import os
import select
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import sysconfig
import tempfile
import urllib.request
from pathlib import Path
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hybrid_llm.net import guard, sandbox
from hybrid_llm.net.listener import read_counts, request

TIMEOUT = 3.0
MODES = ("strict", "loopback", "off")
# Exit status of a child whose connection the (inherited) guard refused.
_CHILD_BLOCKED = 3
_CHILD_FAILED = 4
_CHILD_CODE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
except OSError as exc:
    if hasattr(exc, "layer"):  # the guard's NetworkBlockedError, not a plain EACCES
        print(exc.layer)
        sys.exit(3)
    print(exc)
    sys.exit(4)
"""
# Every way we know for a child to lower the guard it inherited; each must fail.
_UNLOCKING_CODE = """
from hybrid_llm.net import guard
for unlock in (
    "guard._GUARD.floor = guard.Level.ONLINE",
    "guard._GUARD._level = guard.Level.ONLINE",
    "guard.NetworkGuard.level = guard.Level.ONLINE",
    "guard.disable()",
):
    try:
        exec(unlock)
    except Exception:
        pass
"""
_QUIET_STDOUT = "import os; os.dup2(os.open(os.devnull, os.O_WRONLY), 1)\n"
_DNS_PORT = 53


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    control: str = ""  # the listener's control socket, for probes that ask it for more
    name: str = ""  # the probe's name: what the listener counts under

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


@dataclass(frozen=True)
class EgressProbe:
    name: str
    attempt: Callable[[Target, Any], None]
    setup: Callable[[Target], Any] | None = None  # runs while online, before the attempt
    udp: bool = False
    native: bool = False  # invisible to the in-process guard: only the sandbox (layer 3) stops it
    stopped_by: str | None = None  # the guard's action that stops it, when it raises no guard error
    available: Callable[[], bool] = lambda: True
    # False for what offline mode refuses even with loopback allowed (a server on all
    # addresses, the DNS port, a child the guard cannot follow): tried in loopback mode, the
    # looser one, whenever the guard is on.
    loopback_allowed: bool = True


@dataclass(frozen=True)
class ProbeResult:
    path: str
    reached: bool  # the listener saw something: a leak when the guard or sandbox was on
    layer: str | None  # what stopped it, when known
    detail: str
    native: bool
    applicable: bool = True  # False when its setup (a connection made while online) failed

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class ChildBlocked(guard.NetworkBlockedError):
    """The guard inside a child process refused; carries the child's layer to this process."""


def _urllib(target: Target, _: Any) -> None:
    with urllib.request.urlopen(target.url, timeout=TIMEOUT) as response:
        response.read()


def _http_client(target: Target, _: Any) -> None:
    connection = http.client.HTTPConnection(target.host, target.port, timeout=TIMEOUT)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
    finally:
        connection.close()


def _httpx_sync(target: Target, _: Any) -> None:
    import httpx

    httpx.get(target.url, timeout=TIMEOUT)


def _httpx_async(target: Target, _: Any) -> None:
    import httpx

    async def fetch() -> None:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            await client.get(target.url)

    asyncio.run(fetch())


def _create_connection(target: Target, _: Any) -> None:
    socket.create_connection((target.host, target.port), timeout=TIMEOUT).close()


def _connect_ex(target: Target, _: Any) -> None:
    with socket.socket(_family(target.host), socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        status = sock.connect_ex((target.host, target.port))
        if status:
            raise OSError(status, os.strerror(status))


def _udp_sendto(target: Target, _: Any) -> None:
    with socket.socket(_family(target.host), socket.SOCK_DGRAM) as sock:
        sock.sendto(b"udp probe", (target.host, target.port))


def _asyncio_open_connection(target: Target, _: Any) -> None:
    async def connect() -> None:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port), TIMEOUT
        )
        writer.close()

    asyncio.run(connect())


def _hostname_lookup(target: Target, _: Any) -> None:
    """`localhost` must go through name resolution; the guard answers it, or refuses it."""
    socket.create_connection(("localhost", target.port), timeout=TIMEOUT).close()


def _raw_socket_module(target: Target, _: Any) -> None:
    sock = _socket.socket(_family(target.host), socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT)
        sock.connect((target.host, target.port))
    finally:
        sock.close()


def _open_socket(target: Target) -> socket.socket:
    sock = socket.create_connection((target.host, target.port), timeout=TIMEOUT)
    sock.sendall(b"sent while online\n")
    return sock


def _send_on_open_socket(target: Target, sock: socket.socket) -> None:
    sock.sendall(b"sent while offline\n")


def _open_pooled_client(target: Target) -> Any:
    import httpx

    client = httpx.Client(timeout=TIMEOUT)  # not registered: the socket sweep must cut it
    client.get(target.url)
    return client


def _reuse_pooled_client(target: Target, client: Any) -> None:
    client.get(target.url)


def _ask_listener(target: Target, command: str, port: int = 0) -> dict[str, Any]:
    answer = request(target.control, command, target.name, port)
    if "error" in answer:
        raise OSError(f"the listener could not {command}: {answer['error']}")
    return answer


def _listener_port(target: Target, command: str, port: int = 0) -> int:
    return int(_ask_listener(target, command, port)["port"])


def _all_addresses(host: str) -> str:
    return "::" if ":" in host else "0.0.0.0"


def _serve_outside_client(target: Target, server: socket.socket) -> None:
    """The listener dials in, as a client elsewhere on the network would, and is sent data."""
    server.settimeout(TIMEOUT)
    _listener_port(target, "dial", server.getsockname()[1])
    conn, _ = server.accept()
    with conn:
        conn.sendall(b"sent while offline\n")


def _open_server(target: Target) -> socket.socket:
    server = socket.socket(_family(target.host), socket.SOCK_STREAM)
    server.bind((_all_addresses(target.host), 0))
    server.listen(1)
    return server


def _server_bound_offline(target: Target, _: Any) -> None:
    with _open_server(target) as server:
        _serve_outside_client(target, server)


def _connect_in_flight(target: Target) -> socket.socket:
    """A non-blocking connect to a port whose accept queue is full: it stays in SYN_SENT."""
    port = _listener_port(target, "hold")
    sock = socket.socket(_family(target.host), socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.connect_ex((target.host, port))
    _, done, _ = select.select([], [sock], [], 0.2)
    if done:
        sock.close()
        raise OSError("the connect did not stay in flight")
    return sock


def _complete_connect(target: Target, sock: socket.socket) -> None:
    _listener_port(target, "release")  # the next retransmitted SYN gets in
    _, done, _ = select.select([], [sock], [], TIMEOUT + 1)
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if not done or error:
        raise OSError(error, os.strerror(error) if error else "the connect never completed")
    sock.setblocking(True)
    sock.sendall(b"sent while offline\n")


def _open_dns_port_socket(target: Target) -> socket.socket:
    return _open_socket(Target(_ask_listener(target, "listen", _DNS_PORT)["host"], _DNS_PORT))


def _can_listen_on_the_dns_port() -> bool:
    """Port 53 is privileged on Linux (root, or a lowered ip_unprivileged_port_start)."""
    if not _linux() or os.geteuid() == 0:
        return True
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()) <= _DNS_PORT
    return False


def _child_argv(target: Target, *options: str, code: str = _CHILD_CODE) -> list[str]:
    return [sys.executable, *options, "-c", code, target.host, str(target.port)]


def _run_child(command: Sequence[str] | str, **popen: Any) -> None:
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=30, check=False, **popen
    )
    _raise_for_child(result.returncode, result.stdout.strip() or result.stderr.strip())


def _python_child(target: Target, _: Any) -> None:
    _run_child(_child_argv(target))


def _shell_child_with_empty_environment(target: Target, _: Any) -> None:
    _run_child(shlex.join(_child_argv(target)), shell=True, env={})


def _env_i_child(target: Target, _: Any) -> None:
    _run_child(["env", "-i", *_child_argv(target)])


def _isolated_child_after_a_valued_option(target: Target, _: Any) -> None:
    _run_child(_child_argv(target, "--check-hash-based-pycs", "default", "-I"))


def _child_with_a_sitecustomize_first(target: Target, _: Any) -> None:
    with tempfile.TemporaryDirectory() as first:
        Path(first, "sitecustomize.py").touch()
        path = os.pathsep.join([first, os.environ.get("PYTHONPATH", "")])
        _run_child(_child_argv(target), env={**os.environ, "PYTHONPATH": path})


def _copied_interpreter_with_pythonhome(target: Target, _: Any) -> None:
    """A renamed copy of this interpreter, with PYTHONHOME pointing at a copy of the standard
    library whose site.py does nothing (so no sitecustomize, no guard)."""
    stdlib = Path(sysconfig.get_path("stdlib"))
    with tempfile.TemporaryDirectory() as home:
        library = Path(home, "lib", stdlib.name)
        library.mkdir(parents=True)
        for entry in stdlib.iterdir():
            if entry.name != "site.py":
                (library / entry.name).symlink_to(entry)
        (library / "site.py").touch()
        interpreter = Path(home, "interp")
        shutil.copy2(os.path.realpath(sys.executable), interpreter)
        argv = [str(interpreter), *_child_argv(target, "-X", "frozen_modules=off")[1:]]
        _run_child(argv, env={**os.environ, "PYTHONHOME": home})


def _spawnv_passfds_child(target: Target, _: Any) -> None:
    """multiprocessing's own way to start a child: no audit event is raised for it."""
    argv = _child_argv(target, "-I", code=_QUIET_STDOUT + _CHILD_CODE)
    pid = multiprocessing.util.spawnv_passfds(os.fsencode(sys.executable), argv, ())
    _, status = os.waitpid(pid, 0)
    _raise_for_child(os.waitstatus_to_exitcode(status), "guard")


def _unlocking_child(target: Target, _: Any) -> None:
    _run_child(_child_argv(target, code=_UNLOCKING_CODE + _CHILD_CODE))


def _spawned_connect(host: str, port: int) -> None:
    """The body of the multiprocessing spawn child (module level, so spawn can import it)."""
    try:
        socket.create_connection((host, port), timeout=TIMEOUT).close()
    except guard.NetworkBlockedError:
        sys.exit(_CHILD_BLOCKED)
    except OSError:
        sys.exit(_CHILD_FAILED)


def _multiprocessing_child(target: Target, start_method: str) -> None:
    process = multiprocessing.get_context(start_method).Process(
        target=_spawned_connect, args=(target.host, target.port)
    )
    process.start()
    process.join(60)
    _raise_for_child(process.exitcode, "inherited guard")  # the exit status says no more


def _multiprocessing_spawn(target: Target, _: Any) -> None:
    _multiprocessing_child(target, "spawn")


class _RunningForkserver:
    """A forkserver started while online, stopped when the probe is done."""

    def __init__(self) -> None:
        multiprocessing.forkserver.ensure_running()

    def close(self) -> None:
        multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]


def _start_forkserver(_: Target) -> _RunningForkserver:
    return _RunningForkserver()


def _forkserver_child(target: Target, _: Any) -> None:
    _multiprocessing_child(target, "forkserver")


def _ddgs(target: Target, _: Any) -> None:
    from ddgs.http_client import HttpClient

    HttpClient(timeout=int(TIMEOUT)).get(target.url)


def _ctypes_connect(target: Target, _: Any) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "socket() refused")
    try:
        address = struct.pack("=H", socket.AF_INET) + struct.pack(
            "!H4s8x", target.port, socket.inet_aton(target.host)
        )
        if libc.connect(fd, address, len(address)) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
    finally:
        libc.close(fd)


def _non_python_child(target: Target, _: Any) -> None:
    result = subprocess.run(
        ["bash", "-c", 'exec 3<>"/dev/tcp/$0/$1"', target.host, str(target.port)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if result.returncode:
        raise OSError(result.stderr.strip() or f"bash exited with {result.returncode}")


def _raise_for_child(status: int | None, detail: str) -> None:
    if status == _CHILD_BLOCKED:
        raise ChildBlocked("a connection from a child process", f"{detail} in the child")
    if status:
        raise OSError(f"the child exited with status {status}")


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _linux() -> bool:
    return sys.platform.startswith("linux")


def _posix() -> bool:
    return os.name == "posix"


def _has_forkserver() -> bool:
    return "forkserver" in multiprocessing.get_all_start_methods()


def _has_ddgs() -> bool:
    import importlib.util

    return importlib.util.find_spec("ddgs") is not None


PROBES: tuple[EgressProbe, ...] = (
    EgressProbe("urllib", _urllib),
    EgressProbe("http.client", _http_client),
    EgressProbe("httpx (sync)", _httpx_sync),
    EgressProbe("httpx (async)", _httpx_async),
    EgressProbe("socket.create_connection", _create_connection),
    EgressProbe("socket.connect_ex", _connect_ex),
    EgressProbe("UDP sendto", _udp_sendto, udp=True),
    EgressProbe("asyncio open_connection", _asyncio_open_connection),
    EgressProbe("host name lookup (localhost)", _hostname_lookup),
    EgressProbe("_socket.socket (bypasses the patches)", _raw_socket_module),
    EgressProbe(
        "socket opened before going offline", _send_on_open_socket, _open_socket,
        stopped_by="shut down on going offline",
    ),
    EgressProbe("pooled httpx connection from before", _reuse_pooled_client, _open_pooled_client),
    EgressProbe(
        "server on all addresses (bound offline)", _server_bound_offline, loopback_allowed=False,
    ),
    EgressProbe(
        "server on all addresses (listening from before)", _serve_outside_client, _open_server,
        loopback_allowed=False,
    ),
    EgressProbe(
        "connect in flight when going offline", _complete_connect, _connect_in_flight,
        stopped_by="shut down on going offline", available=_posix,
    ),
    EgressProbe(
        "DNS-port connection from before (loopback mode)", _send_on_open_socket,
        _open_dns_port_socket, stopped_by="shut down on going offline",
        available=_can_listen_on_the_dns_port, loopback_allowed=False,
    ),
    EgressProbe("Python child process", _python_child),
    EgressProbe(
        "Python child via a shell with env={}", _shell_child_with_empty_environment,
        available=_posix, loopback_allowed=False,
    ),
    EgressProbe(
        "Python child via env -i", _env_i_child,
        available=lambda: shutil.which("env") is not None, loopback_allowed=False,
    ),
    EgressProbe(
        "Python child with -I after --check-hash-based-pycs", _isolated_child_after_a_valued_option,
        loopback_allowed=False,
    ),
    EgressProbe(
        "Python child with another sitecustomize first", _child_with_a_sitecustomize_first,
        loopback_allowed=False,
    ),
    EgressProbe(
        "copied interpreter with PYTHONHOME", _copied_interpreter_with_pythonhome,
        available=_posix, loopback_allowed=False,
    ),
    EgressProbe("child unlocking its inherited guard", _unlocking_child),
    EgressProbe("multiprocessing spawn child", _multiprocessing_spawn),
    EgressProbe(
        "multiprocessing.util.spawnv_passfds child", _spawnv_passfds_child, available=_posix,
        loopback_allowed=False,
    ),
    EgressProbe(
        "forkserver started before going offline", _forkserver_child, _start_forkserver,
        available=_has_forkserver,
    ),
    EgressProbe("ddgs (Rust HTTP client)", _ddgs, native=True, available=_has_ddgs),
    EgressProbe("ctypes connect()", _ctypes_connect, native=True, available=_linux),
    EgressProbe(
        "non-Python child (bash /dev/tcp)", _non_python_child, native=True,
        available=lambda: shutil.which("bash") is not None,
    ),
)  # fmt: skip


def probe_names(*, udp: bool) -> list[str]:
    return [probe.name for probe in PROBES if probe.udp == udp]


def blocking_layer(error: BaseException | None) -> str | None:
    """The guard layer named by a NetworkBlockedError anywhere in the exception's chain."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, guard.NetworkBlockedError):
            return current.layer
        pending += [current.__cause__, current.__context__]
        reason = getattr(current, "reason", None)  # urllib.error.URLError
        if isinstance(reason, BaseException):
            pending.append(reason)
        pending += [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
        pending += list(getattr(current, "exceptions", ()))
    return None


def run_probes(
    host: str,
    ports: dict[str, int],
    control_path: str,
    *,
    mode: str,
    names: Sequence[str] | None = None,
) -> list[ProbeResult]:
    """Run the probes in this process; `mode` is the guard's state for each attempt:
    "strict" (loopback refused too), "loopback" (loopback allowed) or "off"."""
    selected = [p for p in PROBES if p.available() and (names is None or p.name in names)]
    return [
        _run_one(probe, Target(host, ports[probe.name], control_path, probe.name), mode)
        for probe in selected
    ]


def _run_one(probe: EgressProbe, target: Target, mode: str) -> ProbeResult:
    try:
        state = probe.setup(target) if probe.setup else None
    except Exception as exc:  # noqa: BLE001 - nothing to probe without the open connection
        detail = f"not applicable: no connection while online ({exc})"
        return ProbeResult(probe.name, False, None, detail, probe.native, applicable=False)
    before = read_counts(target.control)[probe.name]
    error: BaseException | None = None
    try:
        with _guard_in(mode if probe.loopback_allowed or mode == "off" else "loopback"):
            probe.attempt(target, state)
    except Exception as exc:  # noqa: BLE001 - every failure is a result here
        error = exc
    finally:
        _release(state)
    reached = read_counts(target.control)[probe.name] != before
    layer = blocking_layer(error)
    if layer is None and not reached:
        layer = _silent_stop(probe, guarded=mode != "off")
    return ProbeResult(probe.name, reached, layer, _describe(reached, error), probe.native)


def _describe(reached: bool, error: BaseException | None) -> str:
    if reached:
        return "reached the listener"
    return f"{type(error).__name__}: {error}" if error else "no error"


def _silent_stop(probe: EgressProbe, *, guarded: bool) -> str | None:
    """What stopped a probe that did not reach the listener without a guard error."""
    if guarded and probe.stopped_by:
        return probe.stopped_by
    method = sandbox.active()
    return f"{method} sandbox" if method else None


def _guard_in(mode: str) -> contextlib.AbstractContextManager[None]:
    if mode == "off":
        return contextlib.nullcontext()
    return guard.offline_mode(allow_loopback=mode == "loopback")


def _release(state: Any) -> None:
    close = getattr(state, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hybrid_llm.net.probes")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ports", required=True, help="JSON object: probe name -> port")
    parser.add_argument("--control", required=True, help="the listener's control socket")
    parser.add_argument("--guard", choices=MODES, required=True)
    args = parser.parse_args(argv)
    results = run_probes(args.host, json.loads(args.ports), args.control, mode=args.guard)
    print(json.dumps([result.as_json() for result in results]))


if __name__ == "__main__":
    main()
