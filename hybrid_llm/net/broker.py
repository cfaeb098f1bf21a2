"""The web broker: the one small process outside the sandbox that fetches the web for `/web`.

Privilege separation, as OpenSSH and browsers do it. The assistant (REPL, model, index, every
child) runs in the network sandbox and can never regain the network; `/search` and `/web` ask
this process instead, over a Unix socket pair inherited at start-up. It runs as
`python -I -S broker.py` from `/` with a minimal environment (broker_client.py starts it),
imports no model, index or user-code module, opens no file, and is told only:

- `search`: the query text, sent to the single engine in `web.backend`;
- `fetch`: one http(s) URL; it answers with the page's decoded text (extraction happens back in
  the sandbox, so the HTML parser that meets hostile pages has no network);
- `connect`: a TCP connection to a loopback server named in the config (a local model or Chroma
  server), handed back as a descriptor, since the sandbox's own loopback is not the host's;
- `offline`: the state `/offline` set. While offline it refuses every search and fetch.

A fetch goes only to public addresses: the name is resolved here and every address checked
(loopback, private, link-local, multicast and reserved ranges refused), then the connection is
made to the checked address, so a DNS answer that changes in between gains nothing. file://,
ftp:// and every other scheme are refused before anything is resolved.

Wire format: each request is one SOCK_SEQPACKET message on the inherited socket, a JSON object
with the far end of a fresh socket pair attached (SCM_RIGHTS); the answer comes back on that
pair as one length-prefixed JSON object, with a descriptor attached for `connect`. A request per
pair lets several pages be fetched at once.
"""

from __future__ import annotations

import argparse
import array
import ipaddress
import json
import os
import signal
import socket
import struct
import sys
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

_MAX_REQUEST_BYTES = 64 * 1024
_LENGTH = struct.Struct("!I")
_SCHEMES = ("http", "https")


class Refused(Exception):
    """A request the broker will not carry out; the message is the one line the user sees."""


def send_message(sock: socket.socket, payload: dict[str, Any], fd: int | None = None) -> None:
    """One JSON object, length-prefixed, with an optional descriptor (SCM_RIGHTS)."""
    data = json.dumps(payload).encode()
    framed = _LENGTH.pack(len(data)) + data
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))] if fd else []
    sent = sock.sendmsg([framed], ancillary)
    if sent < len(framed):
        sock.sendall(framed[sent:])


def receive_message(sock: socket.socket) -> tuple[dict[str, Any] | None, int | None]:
    """The next message and its descriptor; (None, None) when the other side has gone."""
    header, fd = _receive_exactly(sock, _LENGTH.size, with_fd=True)
    if len(header) < _LENGTH.size:
        return None, fd
    (size,) = _LENGTH.unpack(header)
    body, _ = _receive_exactly(sock, size, with_fd=False)
    if len(body) < size:
        return None, fd
    return json.loads(body), fd


def _receive_exactly(sock: socket.socket, size: int, *, with_fd: bool) -> tuple[bytes, int | None]:
    data = bytearray()
    fd = None
    while len(data) < size:
        if with_fd and fd is None:
            chunk, fds, _, _ = socket.recv_fds(sock, size - len(data), 1)
            fd = fds[0] if fds else None
        else:
            chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data.extend(chunk)
    return bytes(data), fd


def public_address_problem(address: str) -> str | None:
    """Why `address` is not a public internet address, e.g. "a loopback address" (None if it is)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    return None if ip.is_global else "not a public internet address"


def check_url(url: str) -> None:
    """Refuse anything but an http(s) URL to a public host, before any connection is made."""
    scheme, _, rest = url.partition("://")
    host = urlsplit(url).hostname if scheme.lower() in _SCHEMES and rest else None
    if not host:
        raise Refused(f"refused: {url[:200]}: only http and https pages can be fetched")
    public_addresses(host, 443)


def public_addresses(host: str, port: int) -> list[tuple[Any, ...]]:
    """Every address `host` resolves to, refused as a whole if any one is not public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host}: {exc.strerror}") from None
    for info in infos:
        address = info[4][0]
        problem = public_address_problem(address)
        if problem:
            named = host if host.strip("[]") == address else f"{host} ({address})"
            raise Refused(
                f"refused: {named} is {problem}; the web broker only fetches public sites"
            )
    return infos


def connect_public(host: str, port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to `host`, made to an address that was checked to be public."""
    last_error: OSError | None = None
    for family, kind, proto, _, address in public_addresses(host, port):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    raise last_error or OSError(f"no address for {host}")


class BrokerState:
    """What the broker knows: online or not, the web settings, and the loopback servers allowed."""

    def __init__(
        self,
        web: dict[str, Any],
        forwards: set[tuple[str, int]],
        *,
        online: bool,
        searcher: Any = None,
    ) -> None:
        self.web = web
        self.forwards = forwards
        self.online = online
        self._lock = threading.Lock()
        self._fetcher: Any = None
        self._searcher = searcher  # a SearchClient; tests pass a local one (the engine is remote)

    def handle(self, request: dict[str, Any]) -> tuple[dict[str, Any], socket.socket | None]:
        op = request.get("op")
        if op == "connect":
            return {}, self._connect(str(request.get("host")), int(request.get("port", 0)))
        if op not in ("search", "fetch"):
            raise Refused(f"the web broker does not do {str(op)[:40]!r}: only search and fetch")
        if not self.online:
            command = "/web" if op == "fetch" else "/search"
            raise Refused(
                f"{command} refused: the assistant is offline; type /offline to go online"
            )
        if op == "search":
            query, limit = str(request.get("query", "")), int(request["max_results"])
            return {"results": self._search(query, limit)}, None
        url = str(request.get("url", ""))
        check_url(url)
        page = self._page_fetcher().download(url)
        return {"url": page.url, "content_type": page.content_type, "text": page.text}, None

    def _connect(self, host: str, port: int) -> socket.socket:
        if (host, port) not in self.forwards:
            raise Refused(f"refused: {host}:{port} is not a loopback server named in the config")
        return socket.create_connection((host, port), timeout=10)

    def _search(self, query: str, max_results: int) -> list[dict[str, str]]:
        with self._lock:
            if self._searcher is None:
                _load_site_packages()
                from hybrid_llm.config import WebSettings
                from hybrid_llm.net.search import DdgsSearchClient

                self._searcher = DdgsSearchClient(WebSettings(**self.web))
        return [vars(result) for result in self._searcher.search(query, max_results)]

    def _page_fetcher(self) -> Any:
        with self._lock:
            if self._fetcher is None:
                _load_site_packages()
                self._fetcher = _public_page_fetcher(self.web)
            return self._fetcher

    def warm_up(self) -> None:
        """Import the HTTP and search code ahead of the first request, once online."""
        self._page_fetcher()


def _load_site_packages() -> None:
    """The broker starts as `python -I -S broker.py`: the standard library only, which is all it
    needs while offline. The HTTP and search packages (and hybrid_llm) come from site-packages,
    added here on the first online request."""
    import site

    if not any(path.endswith("site-packages") for path in sys.path):
        site.main()


def _public_page_fetcher(web: dict[str, Any]) -> Any:
    """fetch.py's PageFetcher, on an HTTP client that only connects to public addresses."""
    import httpcore
    import httpx

    from hybrid_llm.config import WebSettings
    from hybrid_llm.net.fetch import USER_AGENT, PageFetcher

    class PublicOnlyBackend(httpcore.SyncBackend):
        def connect_tcp(
            self, host: str, port: int, timeout: float | None = None, *_: Any, **__: Any
        ) -> httpcore.NetworkStream:
            try:
                sock = connect_public(host, port, timeout)
            except (Refused, OSError) as exc:  # redirects land here: refused like the first URL
                raise httpcore.ConnectError(str(exc)) from None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return httpcore._backends.sync.SyncStream(sock)

    transport = httpx.HTTPTransport()
    # httpx has no public hook for the network backend; the pool it built is replaced by the same
    # pool on our backend. Environment proxies are not used (trust_env=False): the broker itself
    # must see and check every destination.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(), network_backend=PublicOnlyBackend()
    )
    client = httpx.Client(transport=transport, trust_env=False, headers={"User-Agent": USER_AGENT})
    settings = WebSettings(**{**web, "cache_ttl_hours": 0})  # no cache: the broker writes nothing
    return PageFetcher(settings, client=client)


def serve(control: socket.socket, state: BrokerState) -> None:
    """Answer requests until the assistant's end of the socket closes (the assistant exited)."""
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, _MAX_REQUEST_BYTES, 1)
        except OSError:
            return
        if not message:
            return
        reply = socket.socket(fileno=fds[0]) if fds else None
        try:
            request = json.loads(message)
        except ValueError:
            request = {}
        if request.get("op") == "offline":
            state.online = not request.get("offline", True)
            if state.online:
                threading.Thread(target=state.warm_up, daemon=True).start()
        if reply is not None:
            threading.Thread(target=_answer, args=(state, request, reply), daemon=True).start()


def _answer(state: BrokerState, request: dict[str, Any], reply: socket.socket) -> None:
    passed: socket.socket | None = None
    try:
        try:
            payload, passed = state.handle(request)
        except Refused as exc:
            payload = {"error": str(exc), "refused": True}
        except Exception as exc:  # noqa: BLE001 - every failure becomes the user's one line
            payload = {"error": str(exc) or type(exc).__name__}
        send_message(reply, payload, passed.fileno() if passed else None)
    except OSError:
        pass  # the assistant gave up waiting (a timeout, or it exited)
    finally:
        reply.close()
        if passed is not None:
            passed.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hybrid_llm.net.broker")
    parser.add_argument("--fd", type=int, required=True, help="the inherited socket")
    parser.add_argument("--web", required=True, help="web settings as JSON")
    parser.add_argument("--online", action="store_true", help="start online")
    parser.add_argument("--forward", action="append", default=[], metavar="HOST:PORT")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the assistant, not for us
    os.chdir("/")
    forwards = {(host, int(port)) for host, _, port in (f.rpartition(":") for f in args.forward)}
    state = BrokerState(json.loads(args.web), forwards, online=args.online)
    serve(socket.socket(fileno=args.fd), state)
    sys.exit(0)


if __name__ == "__main__":
    main()
