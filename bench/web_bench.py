"""What `/web` costs before the model runs, as ratios against a reference from the same run.

- fetching: the top pages fetched in parallel (as `/web` does) vs one after another, from a
  loopback server that waits `--latency` seconds per page like a real web server far away;
- extraction: trafilatura plus the code-block check and readability fallback (what we run) vs
  trafilatura alone, on the test pages in tests/net/pages/;
- the disk cache: a cached page vs fetching it again;
- the web broker (Linux default sandbox): a page downloaded by the broker process vs directly.

    python bench/web_bench.py [--pages 3] [--latency 0.3] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hybrid_llm.config import WebSettings  # noqa: E402
from hybrid_llm.net.extract import _with_trafilatura, extract_page  # noqa: E402
from hybrid_llm.net.fetch import PageFetcher  # noqa: E402
from timing import median_seconds  # noqa: E402

PAGES = sorted((ROOT / "tests" / "net" / "pages").glob("*.html"))


def serve(latency: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            time.sleep(latency)
            body = PAGES[int(self.path.strip("/").split("-")[0]) % len(PAGES)].read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def report(name: str, reference: str, base: float, ours: str, measured: float) -> None:
    print(
        f"{name:<11} {reference} {base * 1000:8.1f} ms   {ours} {measured * 1000:8.1f} ms   "
        f"ratio {measured / base:6.3f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    server = serve(args.latency)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    fetcher = PageFetcher(
        WebSettings(cache_ttl_hours=0), cache_dir=Path(tempfile.mkdtemp()) / "cache"
    )
    round_number = iter(range(10**6))

    def urls() -> list[str]:  # fresh URLs each round, so nothing is reused between rounds
        n = next(round_number)
        return [f"{base}/{page}-{n}" for page in range(args.pages)]

    def sequential() -> None:
        for url in urls():
            extract_page(fetcher.fetch(url).text)

    def parallel() -> None:
        with ThreadPoolExecutor(max_workers=args.pages) as pool:
            list(pool.map(lambda url: extract_page(fetcher.fetch(url).text), urls()))

    report(
        f"fetch {args.pages}",
        "sequential",
        median_seconds(sequential, args.repeat),
        "parallel",
        median_seconds(parallel, args.repeat),
    )

    for page in PAGES:
        html = page.read_text()
        report(
            f"extract {page.stem[:3]}",
            "trafilatura",
            median_seconds(lambda: _with_trafilatura(html), args.repeat),
            "ours      ",
            median_seconds(lambda: extract_page(html), args.repeat),
        )

    cached = PageFetcher(WebSettings(), cache_dir=Path(tempfile.mkdtemp()) / "cache")
    url = f"{base}/0-cached"
    cached.fetch(url)
    report(
        "cache",
        "fetch     ",
        median_seconds(lambda: fetcher.fetch(url), args.repeat),
        "cached  ",
        median_seconds(lambda: cached.fetch(url), args.repeat),
    )
    server.shutdown()
    report_broker_hop(max(args.repeat, 20))
    return 0


def report_broker_hop(repeat: int) -> None:
    """The default sandbox's price per page: a download by the web broker process (one more
    process hop) vs the same download made here, both from a public address that exists only in a
    private network namespace (tests/net/public_web.py; the broker refuses loopback)."""
    from tests.net import public_web

    if public_web.unavailable():
        print(f"broker hop  skipped: {public_web.unavailable()}")
        return
    timings = public_web.run("hop", str(repeat))
    report("broker hop", "direct    ", timings["direct"], "broker  ", timings["broker"])
    print(f"broker hop  +{(timings['broker'] - timings['direct']) * 1000:.1f} ms per page (target <= +50 ms)")


if __name__ == "__main__":
    raise SystemExit(main())
