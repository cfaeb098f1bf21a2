"""A counting TCP/HTTP/UDP listener in a separate process: the witness for `verify-offline`.

A probe is only "blocked" when something real would have seen it otherwise: each probe gets its
own port, and the listener counts connections, HTTP requests, datagrams and bytes per port. It
answers HTTP requests (keep-alive) so that, with the guard off, every probe completes quickly.
Counts are read over a Unix socket in a temporary directory, which works from any process and
any network namespace (a filesystem socket ignores the network namespace), and is never refused
by the guard.

Some probes need more than a port to connect to, and ask for it over the same control socket
(`request`): an outside client that dials in to a server the probe runs (`dial`), a port of the
probe's choosing such as the DNS port (`listen`), and a port where a connect stays in flight
until the probe says so (`hold`, then `release`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import selectors
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_HTTP_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"CONNECT ", b"OPTIONS ", b"DELETE ")
_HTTP_REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
_SETTLE_SECONDS = 0.05


@dataclass(frozen=True)
class Hits:
    """What one port saw."""

    connections: int = 0
    requests: int = 0
    datagrams: int = 0
    payload: bytes = b""


def read_counts(control_path: str | Path) -> dict[str, Hits]:
    """Ask the listener what each port has seen so far (pending connections included)."""
    raw = json.loads(_ask(control_path, b"counts\n"))
    return {
        name: Hits(h["connections"], h["requests"], h["datagrams"], h["payload"].encode("latin-1"))
        for name, h in raw.items()
    }


def request(control_path: str | Path, command: str, name: str, port: int = 0) -> dict[str, Any]:
    """One of `dial` (connect to `port` on the listener's host and count what arrives under
    `name`), `listen` (also count connections to `port` under `name`; the answer's "host" says
    where), `hold` (a new port where connects stay in flight) or `release` (let them complete);
    the answer has "port", or "error"."""
    return json.loads(_ask(control_path, json.dumps([command, name, port]).encode()))


def _ask(control_path: str | Path, message: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
        control.settimeout(10)
        control.connect(str(control_path))
        control.sendall(message)
        control.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: control.recv(65536), b""))


class CountingListener:
    """Start with `with CountingListener(tcp=[...], udp=[...]) as listener:`; one port per name.

    `prefix` is put before the listener's command line; tests use `ip netns exec NAME` to run it
    in a network namespace of their own.
    """

    def __init__(
        self,
        tcp: Sequence[str],
        udp: Sequence[str] = (),
        host: str = "127.0.0.1",
        *,
        prefix: Sequence[str] = (),
    ) -> None:
        self.host = host
        self._tcp, self._udp, self._prefix = list(tcp), list(udp), list(prefix)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[str] | None = None
        self.ports: dict[str, int] = {}

    @property
    def control_path(self) -> Path:
        assert self._tmp is not None, "listener not started"
        return Path(self._tmp.name) / "control.sock"

    def start(self) -> CountingListener:
        self._tmp = tempfile.TemporaryDirectory(prefix="hybrid-llm-listener-")
        command = [
            *self._prefix, sys.executable, "-m", "hybrid_llm.net.listener", "--host", self.host,
            "--tcp", ",".join(self._tcp), "--udp", ",".join(self._udp),
            "--control", str(self.control_path),
        ]  # fmt: skip
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        ready = self._process.stdout.readline()
        if not ready:
            self.stop()
            raise RuntimeError("the counting listener failed to start (see stderr)")
        self.ports = json.loads(ready)
        return self

    def counts(self) -> dict[str, Hits]:
        return read_counts(self.control_path)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(5)
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> CountingListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Port:
    def __init__(self) -> None:
        self.connections = self.requests = self.datagrams = 0
        self.payload = bytearray()

    def as_json(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "requests": self.requests,
            "datagrams": self.datagrams,
            "payload": self.payload.decode("latin-1"),
        }


class _Server:
    """One selector loop: deterministic, since counts are only answered after a quiet moment."""

    def __init__(self, host: str, tcp: list[str], udp: list[str], control: str) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host, self.family = host, family
        self.held: dict[str, tuple[socket.socket, socket.socket]] = {}  # server, its filler
        self.extra_ports: dict[tuple[str, int], str] = {}  # (name, port) -> host
        self.selector = selectors.DefaultSelector()
        self.hits = {name: _Port() for name in [*tcp, *udp]}
        self.ports: dict[str, int] = {}
        self.buffers: dict[socket.socket, bytearray] = {}
        for name in tcp:
            self._listen(name, socket.socket(family, socket.SOCK_STREAM), host, self._accept)
        for name in udp:
            self._listen(name, socket.socket(family, socket.SOCK_DGRAM), host, self._datagram)
        control_socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        control_socket.bind(control)
        control_socket.listen(16)
        self.selector.register(control_socket, selectors.EVENT_READ, (self._control, ""))

    def _listen(
        self, name: str, sock: socket.socket, host: str, handler: Callable[..., None], port: int = 0
    ) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        if sock.type == socket.SOCK_STREAM:
            sock.listen(128)
        sock.setblocking(False)
        self.ports.setdefault(name, sock.getsockname()[1])
        self.selector.register(sock, selectors.EVENT_READ, (handler, name))

    def run(self) -> None:
        while True:
            self._dispatch(self.selector.select())

    def _dispatch(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, _ in events:
            if self.selector.get_map().get(key.fd) is not key:
                continue  # closed while handling an earlier event of this batch
            handler, name = key.data
            handler(key.fileobj, name)

    def _settle(self) -> None:
        while events := self.selector.select(_SETTLE_SECONDS):
            self._dispatch([e for e in events if e[0].data[0] != self._control])
            if all(e[0].data[0] == self._control for e in events):
                return

    def _accept(self, sock: socket.socket, name: str) -> None:
        with contextlib.suppress(BlockingIOError):
            conn, _ = sock.accept()
            conn.setblocking(False)
            self.hits[name].connections += 1
            self.buffers[conn] = bytearray()
            self.selector.register(conn, selectors.EVENT_READ, (self._read, name))

    def _read(self, conn: socket.socket, name: str) -> None:
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(conn)
            self.buffers.pop(conn, None)
            conn.close()
            return
        port = self.hits[name]
        port.payload += data
        buffer = self.buffers[conn]
        buffer += data
        while buffer.startswith(_HTTP_METHODS) and b"\r\n\r\n" in buffer:
            head_end = buffer.index(b"\r\n\r\n") + 4
            del buffer[:head_end]
            port.requests += 1
            with contextlib.suppress(OSError):
                conn.sendall(_HTTP_REPLY)

    def _datagram(self, sock: socket.socket, name: str) -> None:
        with contextlib.suppress(BlockingIOError):
            data, _ = sock.recvfrom(65536)
            self.hits[name].datagrams += 1
            self.hits[name].payload += data

    def _control(self, sock: socket.socket, name: str) -> None:
        conn, _ = sock.accept()
        with conn:
            conn.settimeout(10)
            request = b"".join(iter(lambda: conn.recv(1024), b""))
            if request.strip() == b"counts":
                self._settle()
                answer: dict[str, Any] = {n: port.as_json() for n, port in self.hits.items()}
            else:
                try:
                    answer = self._command(*json.loads(request))
                except (OSError, ValueError, TypeError, KeyError) as exc:
                    answer = {"error": f"{type(exc).__name__}: {exc}"}
            conn.sendall(json.dumps(answer).encode())

    def _command(self, command: str, name: str, port: int) -> dict[str, Any]:
        if name not in self.hits:
            raise KeyError(name)
        if command == "dial":  # an outside client: only what the probe's server sends counts
            client = socket.create_connection((self.host, port), timeout=5)
            client.setblocking(False)
            self.buffers[client] = bytearray()
            self.selector.register(client, selectors.EVENT_READ, (self._read, name))
            return {"port": port}
        if command == "listen":
            if (name, port) not in self.extra_ports:
                self.extra_ports[name, port] = self._listen_on_own_address(name, port)
            return {"host": self.extra_ports[name, port], "port": port}
        if command == "hold":
            return {"port": self._hold(name)}
        if command == "release":
            self._release(name)
            return {"port": port}
        raise ValueError(f"unknown command {command!r}")

    def _listen_on_own_address(self, name: str, port: int) -> str:
        """Listen on `port` (such as 53); on Linux, on an address of 127/8 of our own rather
        than 127.0.0.1, so that neither another listener nor a local resolver is in the way."""
        hosts = [self.host]
        if self.host == "127.0.0.1" and sys.platform.startswith("linux"):
            hosts = [f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.1" for _ in range(5)]
        for host in hosts[:-1]:
            with contextlib.suppress(OSError):
                return self._listen_at(name, host, port)
        return self._listen_at(name, hosts[-1], port)

    def _listen_at(self, name: str, host: str, port: int) -> str:
        server = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            self._listen(name, server, host, self._accept, port=port)
        except OSError:
            server.close()
            raise
        return host

    def _hold(self, name: str) -> int:
        """A port whose accept queue (backlog 0) is filled by the listener's own connection: a
        SYN to it is dropped, so a connect to it stays in flight until `_release`."""
        server = socket.socket(self.family, socket.SOCK_STREAM)
        server.bind((self.host, 0))
        server.listen(0)
        filler = socket.create_connection(server.getsockname()[:2], timeout=5)
        self.held[name] = (server, filler)
        return server.getsockname()[1]

    def _release(self, name: str) -> None:
        """Take the filler out of the queue, uncounted; the retransmitted SYNs then get in."""
        server, filler = self.held.pop(name)
        server.settimeout(5)
        own, _ = server.accept()
        own.close()
        filler.close()
        server.setblocking(False)
        self.selector.register(server, selectors.EVENT_READ, (self._accept, name))


def _names(text: str) -> list[str]:
    return [name for name in text.split(",") if name]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hybrid_llm.net.listener")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tcp", default="")
    parser.add_argument("--udp", default="")
    parser.add_argument("--control", required=True)
    args = parser.parse_args(argv)
    server = _Server(args.host, _names(args.tcp), _names(args.udp), args.control)
    print(json.dumps(server.ports), flush=True)
    server.run()


if __name__ == "__main__":
    main()
