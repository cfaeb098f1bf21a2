"""The sandboxed side of the web broker: start it, ask it, and forward configured loopback servers.

`start_broker` runs before the sandbox is entered (the broker must stay outside it); afterwards
the assistant only holds its end of the socket pair. `/search`, `/web` and `/offline` reach the
broker through `current()`. A dead broker is one line for the user (`BrokerUnavailable`), never a
hang: the rest of the assistant (`/code`, the index) needs nothing from it.

The sandbox's loopback is its own, so a model or Chroma server the user runs on the host's
127.0.0.1 is reached through `LoopbackForwarder`: it listens on the same address and port inside
the sandbox and, per connection, asks the broker for a connection to the host's server (allowed
only for the servers named in the config when the broker started) and relays the bytes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, NoReturn, Union
from urllib.parse import urlparse

from hybrid_llm.errors import UserError
from hybrid_llm.net import broker
from hybrid_llm.net.broker import receive_message

if TYPE_CHECKING:
    from hybrid_llm.config import Config, WebSettings
    from hybrid_llm.net.fetch import FetchedPage
    from hybrid_llm.net.search import SearchResult

log = logging.getLogger(__name__)

_REPLY_MARGIN_S = 5.0  # on top of web.timeout: the broker reports its own timeouts first
_CONNECT_TIMEOUT_S = 15.0
_RELAY_CHUNK = 65536
_ENVIRONMENT_KEPT = ("PATH", "LANG", "LANGUAGE", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR")
_WEB_KEYS = ("backend", "max_results", "timeout", "region", "fetch_pages")


class BrokerUnavailable(UserError):
    """The broker process is gone: web commands stop with this one line, nothing else does."""


BrokerProcess = Union["subprocess.Popen[bytes]", "_ForkedProcess"]


class BrokerClient:
    """Requests to the broker over the inherited socket; safe to use from several threads."""

    def __init__(self, control: socket.socket, process: BrokerProcess | None = None) -> None:
        self._control = control
        self.process = process
        self._send_lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def fileno(self) -> int:
        return self._control.fileno()

    def close(self) -> None:
        """Close our end: the broker sees end of file and exits."""
        self._control.close()
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)

    def set_offline(self, offline: bool) -> None:
        """Tell the broker what `/offline` decided; refusals while offline are its own too."""
        self._send({"op": "offline", "offline": offline}, None)

    def search(self, query: str, max_results: int, timeout: float) -> list[SearchResult]:
        from hybrid_llm.net.search import SearchResult

        answer, _ = self._ask({"op": "search", "query": query, "max_results": max_results}, timeout)
        return [SearchResult(**hit) for hit in answer["results"]]

    def fetch_page(self, url: str, timeout: float) -> FetchedPage:
        from hybrid_llm.net.fetch import FetchedPage, FetchError

        try:
            answer, _ = self._ask({"op": "fetch", "url": url}, 2 * timeout)
        except BrokerUnavailable:
            raise
        except UserError as exc:
            raise FetchError(str(exc)) from None
        return FetchedPage(**answer)

    def connect(self, host: str, port: int) -> socket.socket:
        """A connection to the host's loopback server `host:port` (one named in the config)."""
        _, fd = self._ask({"op": "connect", "host": host, "port": port}, _CONNECT_TIMEOUT_S)
        if fd is None:
            raise OSError(f"the web broker sent no connection to {host}:{port}")
        connection = socket.socket(fileno=fd)
        connection.setblocking(True)  # the broker's connect timeout left it non-blocking
        return connection

    def _ask(self, request: dict[str, Any], timeout: float) -> tuple[dict[str, Any], int | None]:
        answer, fd = self.exchange(request, timeout)
        if "error" in answer:
            raise UserError(answer["error"])
        return answer, fd

    def exchange(
        self, request: dict[str, Any], timeout: float
    ) -> tuple[dict[str, Any], int | None]:
        """Send any request and return the broker's answer as is (`verify-offline` sends it
        requests it must refuse); raise BrokerUnavailable when it is gone."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with mine:
            try:
                self._send(request, theirs)
            finally:
                theirs.close()
            patience = timeout + _REPLY_MARGIN_S
            mine.settimeout(patience)
            try:
                answer, fd = receive_message(mine)
            except TimeoutError:
                raise UserError(f"the web broker did not answer within {patience:g}s") from None
            except OSError as exc:
                raise self._gone(exc) from None
        if answer is None:
            raise self._gone(None)
        return answer, fd

    def _send(self, request: dict[str, Any], reply: socket.socket | None) -> None:
        data = json.dumps(request).encode()
        try:
            with self._send_lock:
                if reply is None:
                    self._control.send(data)
                else:
                    socket.send_fds(self._control, [data], [reply.fileno()])
        except OSError as exc:
            raise self._gone(exc) from None

    def _gone(self, error: OSError | None) -> BrokerUnavailable:
        status = self.process.poll() if self.process else None
        how = f"exited with status {status}" if status is not None else f"failed ({error})"
        return BrokerUnavailable(
            f"the web broker {how}; /web and /search need it: restart hybrid-llm "
            "(the rest still works)"
        )


class BrokerSearchClient:
    """A `SearchClient` whose searches the broker makes; only the query text crosses over."""

    def __init__(self, client: BrokerClient, settings: WebSettings) -> None:
        self.engine = settings.backend
        self._client = client
        self._timeout = settings.timeout

    def search(self, query: str, max_results: int) -> list[SearchResult]:
        return self._client.search(query, max_results, self._timeout)


class BrokerPageSource:
    """A `PageSource` whose downloads the broker makes; only the URL crosses over."""

    def __init__(self, client: BrokerClient, settings: WebSettings) -> None:
        self._client = client
        self._timeout = settings.timeout

    def fetch(self, url: str) -> FetchedPage:
        return self._client.fetch_page(url, self._timeout)


_CURRENT: BrokerClient | None = None
_MISSING = "this session runs in the network sandbox without a web broker (started with --sandbox)"


def current() -> BrokerClient | None:
    """The broker of this process, when it was started with one (the default sandboxed mode)."""
    return _CURRENT


def for_web() -> BrokerClient | None:
    """The broker web code must use: None outside the sandbox (it connects itself there), and
    BrokerUnavailable in a sandbox that has none, since no connection can work from there."""
    from hybrid_llm.net import sandbox

    if _CURRENT is None and sandbox.DefaultMode.sandboxed():
        raise BrokerUnavailable(f"/web and /search cannot reach the internet: {_MISSING}")
    return _CURRENT


def start_failed(reason: str) -> None:
    """Remember why the broker could not start, for the one line `/web` then shows."""
    global _MISSING
    _MISSING = f"the web broker could not start ({reason}); the rest works offline"


def start_broker(config: Config) -> BrokerClient:
    """Start the broker (call before entering the sandbox) and make it `current()`.

    The REPL waits for no broker at start-up: a copy of this process is forked (a millisecond,
    no new interpreter), and it becomes the broker program, with `exec`, only when the first
    request arrives. The copy is taken before any file of the codebase is read, and it holds
    nothing but its socket meanwhile.
    """
    global _CURRENT
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    command = _broker_command(
        config, theirs.fileno(), loopback_servers(config), online=not config.network.offline_mode
    )
    env = _broker_environ()
    # Ctrl-C reaches the whole process group, but it is for the REPL: the copy ignores it from
    # its first instruction (and keeps ignoring it across exec).
    interrupt_handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    pid = os.fork()
    if pid == 0:
        _become_broker_on_first_request(theirs, command, env)
    signal.signal(signal.SIGINT, interrupt_handler)
    theirs.close()
    _CURRENT = BrokerClient(ours, _ForkedProcess(pid))
    return _CURRENT


def spawn_broker(config: Config, forwards: list[tuple[str, int]], *, online: bool) -> BrokerClient:
    """A broker process started now (for `verify-offline` and tests); `connect` only to
    `forwards`."""
    from hybrid_llm.net import guard

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    command = _broker_command(config, theirs.fileno(), forwards, online=online)
    with guard.allow_network("starting the web broker"), theirs:
        process = subprocess.Popen(
            command, pass_fds=[theirs.fileno()], cwd="/", env=_broker_environ(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return BrokerClient(ours, process)


def _broker_command(
    config: Config, fd: int, forwards: list[tuple[str, int]], *, online: bool
) -> list[str]:
    # -S: site-packages are added only when the broker first goes online (see broker.py).
    web = {key: getattr(config.web, key) for key in _WEB_KEYS}
    return [
        sys.executable, "-I", "-S", broker.__file__, "--fd", str(fd), "--web", json.dumps(web),
        *(f"--forward={host}:{port}" for host, port in forwards), *(["--online"] if online else []),
    ]  # fmt: skip


def _broker_environ() -> dict[str, str]:
    """Locale, PATH and TLS settings only: not even the working directory's name (PWD) or the
    guard's export (the broker is the one process meant to reach the web)."""
    return {
        name: value
        for name, value in os.environ.items()
        if name in _ENVIRONMENT_KEPT or name.startswith("LC_")
    }


def _become_broker_on_first_request(
    control: socket.socket, command: list[str], env: dict[str, str]
) -> NoReturn:
    """The forked copy: hold nothing but the socket, wait, then exec the broker program."""
    from hybrid_llm.net import guard, sandbox

    status = 0
    try:
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        sandbox.close_inherited_descriptors(keep=[control.fileno()])
        if control.recv(1, socket.MSG_PEEK):  # the request stays queued for the broker
            os.set_inheritable(control.fileno(), True)
            with guard.allow_network("starting the web broker"):
                os.execve(command[0], command, env)
    except BaseException:  # noqa: BLE001 - nothing of the parent's may run in this copy
        status = 127
    os._exit(status)


class _ForkedProcess:
    """What BrokerClient needs of a Popen (pid, poll, wait) for the forked broker."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode


def announce_offline(offline: bool) -> None:
    """Pass `/offline`'s decision to this session's broker, if it has one.

    A dead broker refuses everything already, so only going online reports that it is gone.
    """
    if _CURRENT is None:
        return
    try:
        _CURRENT.set_offline(offline)
    except BrokerUnavailable:
        if not offline:
            raise


def stop_broker() -> None:
    """Stop the broker (when no sandbox could be entered, nothing needs it)."""
    global _CURRENT
    if _CURRENT is not None:
        _CURRENT.close()
        _CURRENT = None


def loopback_servers(config: Config) -> list[tuple[str, int]]:
    """The loopback (host, port) pairs of the servers the config names: model server, Chroma."""
    if not config.network.allow_loopback:
        return []  # strict mode: no IP traffic at all, loopback included
    urls = [(config.rag.chroma_url, 8000)]
    if config.model.backend == "openai":
        urls.append((config.model.server.base_url, 80))
    servers = []
    for url, default_port in urls:
        parsed = urlparse(url or "")
        host = parsed.hostname or ""
        if _is_loopback(host) and parsed.scheme in ("http", "https"):
            port = parsed.port or (443 if parsed.scheme == "https" else default_port)
            servers.append((host, port))
    return servers


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoopbackForwarder:
    """Inside the sandbox: host:port on the sandbox's loopback, relayed to the host's server."""

    def __init__(self, client: BrokerClient, host: str, port: int) -> None:
        self._client = client
        self._host, self._port = host, port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1" if host == "localhost" else host, port))
        self._listener.listen(16)
        threading.Thread(target=self._accept_loop, name=f"forward-{port}", daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            inside, _ = self._listener.accept()
            threading.Thread(target=self._serve, args=(inside,), daemon=True).start()

    def _serve(self, inside: socket.socket) -> None:
        try:
            outside = self._client.connect(self._host, self._port)
        except (UserError, OSError) as exc:
            log.warning("cannot reach %s:%s through the broker: %s", self._host, self._port, exc)
            inside.close()
            return
        back = threading.Thread(target=_relay, args=(outside, inside), daemon=True)
        back.start()
        _relay(inside, outside)
        back.join()
        inside.close()
        outside.close()


def _relay(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes one way until end of file, then pass the end of file on."""
    try:
        while chunk := source.recv(_RELAY_CHUNK):
            target.sendall(chunk)
        target.shutdown(socket.SHUT_WR)
    except OSError:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_RDWR)
    finally:
        with contextlib.suppress(OSError):
            source.shutdown(socket.SHUT_RD)
