"""The real search engine, over the real internet: skipped when the engine cannot be reached.

The reachability probe runs in a daemon thread with a hard deadline, because a DNS lookup
ignores socket timeouts and could otherwise stall CI on a machine without network.
"""

from __future__ import annotations

import socket
import threading

import pytest

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.net import guard
from hybrid_llm.net.search import DdgsSearchClient
from hybrid_llm.net.web import WebResearcher

ENGINE_HOST = "html.duckduckgo.com"
PROBE_SECONDS = 3.0

pytestmark = pytest.mark.internet


def _reachable(host: str, port: int = 443) -> bool:
    outcome: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
            outcome.append(True)
        except OSError:
            outcome.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_SECONDS)
    return bool(outcome and outcome[0])


@pytest.fixture(scope="module")
def internet() -> None:
    if guard.is_offline():
        pytest.skip("the network guard is offline")
    if not _reachable(ENGINE_HOST):
        pytest.skip(f"no internet: {ENGINE_HOST} is not reachable")


@pytest.mark.usefixtures("internet")
def test_real_search_returns_web_results() -> None:
    config = Config()
    web = WebResearcher(config, DdgsSearchClient(config.web))
    try:
        results = web.search("python httpx documentation")
    except UserError as exc:
        if "rate-limiting" in str(exc) or "no results" in str(exc):
            pytest.skip(f"the engine refused to answer now: {exc}")
        raise
    assert 0 < len(results) <= config.web.max_results
    assert all(r.url.startswith(("http://", "https://")) and r.title for r in results)
