"""A stand-in for the public internet that the web broker will talk to: a private network namespace.

The broker only connects to public addresses, so local_web.py's pages on 127.0.0.1 are refused
by design. `python -m tests.net.public_web` re-runs itself under `unshare -rn` (a user + network
namespace; no root needed), puts PUBLIC_ADDRESS on that namespace's own loopback interface,
serves the test pages there, starts a real broker process inside the same namespace, and runs
one scenario, printing its result as JSON. No packet can leave the namespace: it has no other
interface. Used by tests/net/test_broker.py and bench/web_bench.py.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from hybrid_llm.config import Config

PUBLIC_ADDRESS = "93.184.216.34"  # a global unicast address; here it exists only in the namespace
_INSIDE = "HYBRID_LLM_TEST_PUBLIC_WEB"


def unavailable() -> str | None:
    """Why the namespace cannot be made here (None when it can)."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs Linux with unshare and ip"
    trial = subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False)
    return None if trial.returncode == 0 else f"unshare -rn refused: {trial.stderr.decode().strip()}"


def run(scenario: str, *args: str, timeout: float = 300) -> dict:
    """Run `scenario` inside a fresh namespace and return what it printed."""
    completed = subprocess.run(
        ["unshare", "-rn", sys.executable, "-m", "tests.net.public_web", scenario, *args],
        capture_output=True, text=True, timeout=timeout, check=False,
        cwd=Path(__file__).resolve().parents[2], env={**os.environ, _INSIDE: "1"},
    )  # fmt: skip
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-3000:])
    return json.loads(completed.stdout.splitlines()[-1])


def _serve_pages() -> str:
    from tests.net.local_web import _Handler, _Site

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "address", "add", f"{PUBLIC_ADDRESS}/32", "dev", "lo"], check=True)
    server = _Site((PUBLIC_ADDRESS, 0), _Handler)
    server.hits = Counter()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return f"http://{PUBLIC_ADDRESS}:{server.server_address[1]}"


def _online_config() -> Config:
    return Config.model_validate({"network": {"offline_mode": False}, "web": {"cache_ttl_hours": 0}})


def _web(base: str) -> dict:
    """/web as the REPL runs it in the sandbox: pages downloaded by the broker process."""
    from hybrid_llm.net import broker_client
    from hybrid_llm.net.web import WebResearcher
    from tests.net.local_web import LocalSearchClient

    config = _online_config()
    client = broker_client.start_broker(config)  # as the REPL does, minus entering a sandbox
    urls = [f"{base}/streaming.html", f"{base}/timeouts.html", f"{base}/manual.pdf"]
    gathering = WebResearcher(config, LocalSearchClient(urls)).gather("stream a download with httpx")
    client.close()
    return {
        "passages": [p.url for p in gathering.passages],
        "texts": [p.text for p in gathering.passages],
        "errors": gathering.errors,
    }


def _hop(base: str, repeat: int) -> dict:
    """Median seconds to download one page directly and through the broker process."""
    from hybrid_llm.net import broker_client
    from hybrid_llm.net.fetch import PageFetcher

    config = _online_config()
    settings = config.web
    client = broker_client.spawn_broker(config, [], online=True)
    via_broker = broker_client.BrokerPageSource(client, settings)
    direct = PageFetcher(settings)
    url = f"{base}/streaming.html"
    via_broker.fetch(url)  # the broker imports its HTTP code on the first request
    direct.download(url)
    timings = {"direct": [], "broker": []}
    for _ in range(repeat):
        for name, fetch in (("direct", direct.download), ("broker", via_broker.fetch)):
            started = time.perf_counter()
            fetch(url)
            timings[name].append(time.perf_counter() - started)
    client.close()
    return {name: statistics.median(values) for name, values in timings.items()}


def main() -> None:
    if os.environ.get(_INSIDE) != "1":
        raise SystemExit("run through tests.net.public_web.run(): it needs its own namespace")
    base = _serve_pages()
    scenario = sys.argv[1]
    result = _web(base) if scenario == "web" else _hop(base, int(sys.argv[2]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
