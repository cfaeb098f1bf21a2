"""Layer 3: run the assistant where the operating system itself gives it no network.

Native code (the Rust HTTP client inside `ddgs`, C extensions, ctypes) and non-Python children
never pass through Python's socket module, so only the kernel can stop them. On Linux:

- **namespace** (preferred): a fresh user + network namespace, as `unshare -rn` makes, with only
  `lo` in it, brought up so a model server started inside still works. Nothing outside the
  machine, nor the host's own loopback services, can be reached.
- **seccomp** (when the kernel refuses unprivileged namespaces): a filter that makes `socket()`
  fail for every family except AF_UNIX and AF_NETLINK (loopback included), and refuses io_uring,
  which could create sockets behind the filter's back.

Both are inherited by every child and cannot be undone by the sandboxed process. Descriptors
inherited from whoever started us are closed on the way in (an open TCP connection would keep
its network access), except stdin/stdout/stderr and the ones passed on purpose.

By default (`network.sandbox: "auto"`), `hybrid-llm` enters the sandbox itself, first thing,
while it is still single-threaded (`enter_default_mode`), after starting the web broker outside
it (`broker.py`). `python -m hybrid_llm.net.sandbox -- COMMAND...` runs any command sandboxed,
and `--sandbox` re-executes a whole invocation that way. Elsewhere (macOS, Windows) there is no
sandbox: only layers 1 and 2 apply, and the toolbar and `doctor` say so.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import platform
import socket
import struct
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from hybrid_llm.errors import UserError

if TYPE_CHECKING:
    from hybrid_llm.config import Config

SANDBOX_ENV = "HYBRID_LLM_SANDBOX"  # set inside: "namespace" or "seccomp"
METHODS = ("auto", "namespace", "seccomp")
LAYERS_1_2 = "layers 1-2 (commands + in-process guard)"

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
# Per architecture: (AUDIT_ARCH value, socket syscall number, io_uring_setup syscall number).
_SYSCALLS = {"x86_64": (0xC000003E, 41, 425), "aarch64": (0xC00000B7, 198, 425)}
_X32_SYSCALL_BIT = 0x40000000


def active() -> str | None:
    """The sandbox this process runs in ("namespace" or "seccomp"), or None.

    The environment variable only names the method; the system must confirm it, so that a stray
    variable never makes `--sandbox` skip the sandbox.
    """
    method = os.environ.get(SANDBOX_ENV)
    if method == "namespace" and _only_loopback_interface():
        return method
    if method == "seccomp" and _seccomp_filtered():
        return method
    return None


def _only_loopback_interface() -> bool:
    try:
        return [name for _, name in socket.if_nameindex()] == ["lo"]
    except OSError:
        return False


def _seccomp_filtered() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return any(line.split() == ["Seccomp:", "2"] for line in status)
    except OSError:
        return False


def unavailable_reason() -> str | None:
    """Why there is no sandbox on this system, in one line; None when there is one."""
    if not sys.platform.startswith("linux"):
        system = {"darwin": "macOS", "win32": "Windows"}.get(sys.platform, sys.platform)
        return (
            f"--sandbox needs Linux (network namespaces or seccomp); on {system} only layers 1-2 "
            "apply: commands refuse while offline, and the in-process guard blocks Python code, "
            "but not native code or non-Python child processes"
        )
    return None


def launcher_command(command: Sequence[str], method: str = "auto") -> list[str]:
    """The command line that runs `command` inside the sandbox."""
    return [sys.executable, "-m", "hybrid_llm.net.sandbox", "--method", method, "--", *command]


def reexec_sandboxed(env: dict[str, str]) -> NoReturn:
    """Replace this process with the same command line, run inside the sandbox."""
    reason = unavailable_reason()
    if reason:
        raise UserError(reason)
    command = launcher_command([sys.executable, *sys.orig_argv[1:]])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)


def enter(method: str = "auto") -> str:
    """Put this (single-threaded) process in the sandbox; returns the method used."""
    reason = unavailable_reason()
    if reason:
        raise UserError(reason)
    if method in ("auto", "namespace"):
        try:
            _enter_network_namespace()
            return "namespace"
        except OSError as exc:
            if method == "namespace":
                raise UserError(f"cannot create a network namespace: {exc}") from None
    try:
        _install_seccomp_filter()
    except OSError as exc:
        raise UserError(
            f"no sandbox possible: namespaces and seccomp both refused ({exc})"
        ) from None
    return "seccomp"


def close_inherited_descriptors(keep: Sequence[int] = ()) -> None:
    """Close every descriptor above stderr except `keep`.

    A socket opened outside the sandbox keeps the network it was created in, so one inherited
    from the parent (`exec 3<>/dev/tcp/...`) would be a way out.
    """
    start = 3
    for fd in sorted({fd for fd in keep if fd >= 3}):
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, _max_descriptor() + 1)


def _max_descriptor() -> int:
    try:
        return max(int(name) for name in os.listdir("/proc/self/fd"))
    except (OSError, ValueError):
        return os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024


class DefaultMode:
    """What `enter_default_mode` achieved: the sandbox method (or why none) and the broker."""

    method: str | None = None
    unavailable: str | None = "not started through `hybrid-llm`"

    @classmethod
    def sandboxed(cls) -> bool:
        if cls.method is None:
            cls.method = active()  # `--sandbox` re-executes through the launcher instead
        return cls.method is not None

    @classmethod
    def layers(cls) -> str:
        """One line for doctor: which layers protect this session, and why not layer 3."""
        if cls.sandboxed():
            return f"layers 1-3 ({cls.method} sandbox{' + web broker' if _has_broker() else ''})"
        return f"{LAYERS_1_2} only: {cls.unavailable}"

    @classmethod
    def short(cls) -> str:
        """The same in two words, for the toolbar (redrawn twice a second: no system calls)."""
        return f"{cls.method} sandbox" if cls.method else "no OS sandbox: layers 1-2"


def _has_broker() -> bool:
    from hybrid_llm.net import broker_client

    return broker_client.current() is not None


def enter_default_mode(config: Config) -> str | None:
    """Start-up on Linux: start the web broker, then put this very process in the sandbox.

    Called by `hybrid-llm` before any thread exists (a process with threads cannot enter a user
    namespace, and a seccomp filter would bind only the calling thread). Returns the method used,
    or None when this system has no sandbox; `DefaultMode` remembers which, for the toolbar.
    """
    from hybrid_llm.net import broker_client

    wanted = config.network.sandbox
    DefaultMode.method = active()
    if DefaultMode.method:
        return DefaultMode.method
    DefaultMode.unavailable = _default_mode_obstacle(wanted)
    if DefaultMode.unavailable:
        return None
    loopback = broker_client.loopback_servers(config)
    try:
        client: broker_client.BrokerClient | None = broker_client.start_broker(config)
    except OSError as exc:  # e.g. the interpreter cannot be run again as this user
        client = None
        broker_client.start_failed(str(exc))
    try:
        method = enter("namespace" if wanted == "auto" and loopback else wanted)
    except UserError as exc:
        broker_client.stop_broker()
        DefaultMode.unavailable = str(exc)
        if loopback:
            DefaultMode.unavailable += " (seccomp would cut the loopback servers in the config)"
        return None
    close_inherited_descriptors(keep=[client.fileno()] if client else [])
    os.environ[SANDBOX_ENV] = method
    DefaultMode.method = method
    for host, port in loopback if client else []:
        broker_client.LoopbackForwarder(client, host, port)
    return method


def _default_mode_obstacle(wanted: str) -> str | None:
    if wanted == "off":
        return 'network.sandbox is "off"'
    reason = unavailable_reason()
    if reason:
        return reason.split(";")[0].replace("--sandbox needs", "the OS sandbox needs")
    if _thread_count() != 1:
        return "the process already runs threads, so it cannot enter the sandbox"
    return None


def _thread_count() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return threading.active_count()


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _enter_network_namespace() -> None:
    uid, gid = os.getuid(), os.getgid()
    _check(_libc().unshare(_CLONE_NEWUSER | _CLONE_NEWNET), "unshare")
    # Map our own ids, so files keep their owner and the command has no capabilities after exec.
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    _bring_loopback_up()


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(text)
    except FileNotFoundError:
        if not path.endswith("setgroups"):  # absent on old kernels, where it is not needed
            raise


def _bring_loopback_up() -> None:
    import fcntl  # POSIX only: imported here so that this module loads on Windows too

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _seccomp_program(arch: str) -> list[tuple[int, int, int, int]]:
    """BPF: socket() only for AF_UNIX/AF_NETLINK; no io_uring; no other ABI; all else allowed."""
    audit_arch, nr_socket, nr_io_uring_setup = _SYSCALLS[arch]
    load, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, RET|K
    deny = _SECCOMP_RET_ERRNO | errno.EACCES
    return [
        (load, 0, 0, 4),  # seccomp_data.arch
        (jeq, 1, 0, audit_arch),
        (ret, 0, 0, deny),  # another ABI (i386, x32 via arch) could reach socket() unchecked
        (load, 0, 0, 0),  # seccomp_data.nr
        (jge, 0, 1, _X32_SYSCALL_BIT),
        (ret, 0, 0, deny),
        (jeq, 0, 1, nr_io_uring_setup),
        (ret, 0, 0, deny),
        (jeq, 1, 0, nr_socket),
        (ret, 0, 0, _SECCOMP_RET_ALLOW),
        (load, 0, 0, 16),  # low 32 bits of args[0], the address family (little-endian)
        (jeq, 2, 0, socket.AF_UNIX),
        (jeq, 1, 0, getattr(socket, "AF_NETLINK", 16)),
        (ret, 0, 0, deny),
        (ret, 0, 0, _SECCOMP_RET_ALLOW),
    ]


def _install_seccomp_filter() -> None:
    arch = platform.machine()
    if arch not in _SYSCALLS:
        raise OSError(errno.ENOSYS, f"no seccomp filter for {arch}")
    program = _seccomp_program(arch)
    filters = (_SockFilter * len(program))(*[_SockFilter(*insn) for insn in program])
    fprog = _SockFprog(len(program), filters)
    libc = _libc()
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    _check(libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(prog="python -m hybrid_llm.net.sandbox")
    parser.add_argument("--method", choices=METHODS, default="auto")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    try:
        method = enter(args.method)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    close_inherited_descriptors()
    env = {**os.environ, SANDBOX_ENV: method}
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"error: cannot run {command[0]}: {exc}", file=sys.stderr)
        raise SystemExit(127) from None


if __name__ == "__main__":
    main()
