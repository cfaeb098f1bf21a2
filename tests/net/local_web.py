"""A stand-in for the internet: real HTML pages and misbehaving servers on 127.0.0.1.

Web tests cannot use the real internet, so this serves, over real HTTP on the loopback
interface, the pages in tests/net/pages/ (with navigation, ads, comments and code blocks) plus
routes that are too big, not HTML, slow, trickling, or redirecting in a loop. `LocalSearchClient`
plays the search engine: it returns chosen URLs and records every query it was handed.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hybrid_llm.net.search import SearchResult

PAGES = Path(__file__).parent / "pages"
OVERSIZE_BYTES = 3 * 1024 * 1024
SLOW_SECONDS = 8.0
TRICKLE_SECONDS = 4.0


class _Handler(BaseHTTPRequestHandler):
    server: _Site

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.hits[self.path] += 1
        first_segment = self.path.strip("/").split("/")[0]
        route = getattr(self, "_route_" + re.sub(r"[-.]", "_", first_segment), None)
        page = PAGES / first_segment
        if route is not None:
            route()
        elif first_segment and page.is_file():
            self._send(200, "text/html; charset=utf-8", page.read_bytes())
        else:
            self._send(404, "text/html", b"<html><body>not found</body></html>")

    def log_message(self, *args: object) -> None:
        """Keep test output clean."""

    def _send(self, status: int, content_type: str, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _route_huge_html(self) -> None:
        """Honest about its size: Content-Length says 3 MB."""
        self._send(200, "text/html", b"<html><body><p>" + b"a" * OVERSIZE_BYTES + b"</p></body>")

    def _route_huge_chunked_html(self) -> None:
        """Hides its size: no Content-Length, so only counting while streaming catches it."""
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        piece = b"<p>" + b"b" * 65536 + b"</p>"
        try:
            for _ in range(OVERSIZE_BYTES // len(piece) + 2):
                self.wfile.write(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up at the cap, as it should
        self.close_connection = True

    def _route_manual_pdf(self) -> None:
        self._send(200, "application/pdf", b"%PDF-1.4 not a web page")

    def _route_slow_html(self) -> None:
        time.sleep(SLOW_SECONDS)
        self._send(200, "text/html", (PAGES / "timeouts.html").read_bytes())

    def _route_trickle_html(self) -> None:
        """Each byte arrives within the read timeout, but the whole page takes far too long."""
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        try:
            for _ in range(int(TRICKLE_SECONDS / 0.1)):
                self.wfile.write(b"<p>drip</p>")
                self.wfile.flush()
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def _route_loop_a(self) -> None:
        self._redirect("/loop-b")

    def _route_loop_b(self) -> None:
        self._redirect("/loop-a")

    def _route_chain(self) -> None:
        """/chain/N redirects to /chain/N+1 forever, never visiting a URL twice."""
        step = int(self.path.rsplit("/", 1)[-1])
        self._redirect(f"/chain/{step + 1}")

    def _route_moved(self) -> None:
        self._redirect("/streaming.html")

    def _route_latin1_html(self) -> None:
        body = (
            '<html><head><meta charset="iso-8859-1"><title>Café</title></head>'
            "<body><p>Ça marche</p></body></html>"
        )
        self._send(200, "text/html", body.encode("iso-8859-1"))


class _Site(ThreadingHTTPServer):
    daemon_threads = True
    hits: Counter[str]

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hanging up on oversize or slow pages is the expected outcome, not an error."""


@dataclass
class LocalSite:
    """The running server: `url(path)` builds an address, `hits` counts requests per path."""

    base: str
    hits: Counter[str]

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"


@pytest.fixture
def site() -> Iterator[LocalSite]:
    server = _Site(("127.0.0.1", 0), _Handler)
    server.hits = Counter()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield LocalSite(base=f"http://127.0.0.1:{server.server_address[1]}", hits=server.hits)
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class LocalSearchClient:
    """A search engine that answers every query with `urls` and remembers what it was asked."""

    urls: list[str]
    engine: str = "local-test-engine"
    queries: list[str] = field(default_factory=list)

    def search(self, query: str, max_results: int) -> list[SearchResult]:
        self.queries.append(query)
        return [
            SearchResult(title=f"Result {n}", url=url, snippet=f"snippet {n}")
            for n, url in enumerate(self.urls[:max_results], start=1)
        ]
