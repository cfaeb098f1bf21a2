"""The ddgs search client. The engine itself is the internet, so it is replaced by a recording
stand-in passed through `ddgs_factory`; the failures fed to it are ddgs's own exception types
with the texts ddgs produces (the DNS one captured from a real run without network)."""

from __future__ import annotations

from typing import Any

import pytest
from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

from hybrid_llm.config import WebSettings
from hybrid_llm.errors import UserError
from hybrid_llm.net.search import (
    DdgsSearchClient,
    SearchResult,
    describe_search_failure,
    format_search_results,
    known_engines,
)

REAL_DNS_FAILURE = DDGSException(
    "DNSError: DNSError('error sending request for url (https://html.duckduckgo.com/html/) > "
    "error resolving DNS > DNS error: no records found for Query { name: "
    'Name("html.duckduckgo.com."), query_type: A, query_class: IN }\')'
)


class RecordingDdgs:
    """Stands in for `ddgs.DDGS`: remembers how it was built and called, answers or raises."""

    calls: list[dict[str, Any]] = []

    def __init__(self, hits: list[dict[str, str]] | Exception) -> None:
        self.hits = hits

    def __call__(self, **options: Any) -> RecordingDdgs:
        self.calls.append({"init": options})
        return self

    def text(self, query: str, **options: Any) -> list[dict[str, str]]:
        self.calls.append({"query": query, **options})
        if isinstance(self.hits, Exception):
            raise self.hits
        return self.hits


def test_known_engines_come_from_ddgs() -> None:
    assert "duckduckgo" in known_engines()
    assert "auto" not in known_engines()


@pytest.mark.parametrize("backend", ["duckgo", "auto", "all", "duckduckgo,brave"])
def test_unknown_or_fan_out_backend_is_refused(backend: str) -> None:
    """ddgs would quietly send the query to every engine for these; we refuse instead."""
    with pytest.raises(UserError, match=rf"web.backend '{backend}' is not .*: brave, duckduckgo"):
        DdgsSearchClient(WebSettings(backend=backend))


def test_query_settings_and_engine_are_passed_exactly() -> None:
    hit = {"title": "httpx", "href": "https://www.python-httpx.org/", "body": "A client"}
    ddgs = RecordingDdgs([hit])
    ddgs.calls = []
    client = DdgsSearchClient(
        WebSettings(backend="mojeek", region="de-de", timeout=7), ddgs_factory=ddgs
    )

    results = client.search("httpx stream  download", 4)

    assert results == [SearchResult("httpx", "https://www.python-httpx.org/", "A client")]
    assert ddgs.calls == [
        {"init": {"timeout": 7}},
        {
            "query": "httpx stream  download",
            "region": "de-de",
            "max_results": 4,
            "backend": "mojeek",
        },
    ]
    assert client.engine == "mojeek"


def test_results_without_a_web_address_are_dropped() -> None:
    ddgs = RecordingDdgs(
        [
            {"title": "ok", "href": "https://a.example/", "body": ""},
            {"title": "no link", "body": "x"},
            {"title": "script", "href": "javascript:alert(1)", "body": ""},
        ]
    )
    results = DdgsSearchClient(WebSettings(), ddgs_factory=ddgs).search("q", 5)

    assert [r.url for r in results] == ["https://a.example/"]


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (DDGSException("No results found."), "duckduckgo found no results; try other words"),
        (TimeoutException("timed out"), "duckduckgo did not answer within 10s (web.timeout)"),
        (RatelimitException("202 Ratelimit"), "duckduckgo is rate-limiting searches; wait"),
        (REAL_DNS_FAILURE, "cannot resolve duckduckgo's address: no internet connection or DNS"),
        (DDGSException("ConnectError: ConnectError('tcp')"), "cannot connect to duckduckgo"),
        (
            DDGSException("StatusError: 500\nserver\nexploded"),
            "search with duckduckgo failed: StatusError: 500 server exploded",
        ),
    ],
)
def test_each_ddgs_failure_becomes_one_clear_line(error: Exception, message: str) -> None:
    client = DdgsSearchClient(WebSettings(), ddgs_factory=RecordingDdgs(error))

    with pytest.raises(UserError) as caught:
        client.search("q", 5)

    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_long_failure_detail_is_cut() -> None:
    line = describe_search_failure(DDGSException("x" * 5000), "duckduckgo", 10)
    assert len(line) < 250


def test_results_are_numbered_with_title_url_and_snippet() -> None:
    listing = format_search_results(
        [
            SearchResult("httpx", "https://www.python-httpx.org/", "A next-generation client."),
            SearchResult("", "https://example.org/x", ""),
        ]
    )
    assert listing == (
        "1. httpx\n   https://www.python-httpx.org/\n   A next-generation client.\n\n"
        "2. https://example.org/x\n   https://example.org/x"
    )
    assert format_search_results([]) == "no results"
