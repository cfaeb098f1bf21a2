"""`/search` and `/web` end to end: real pages over real HTTP on 127.0.0.1, real extraction, the
real MiniLM embedder and the real network guard. Only the search engine is a stand-in
(LocalSearchClient in tests/net/local_web.py), because it is the internet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hybrid_llm.coder import Coder
from hybrid_llm.config import Config, WebSettings
from hybrid_llm.errors import UserError
from hybrid_llm.net import guard
from hybrid_llm.net.web import PASSAGE_CHARS, WebResearcher, split_passages
from tests.net.local_web import LocalSearchClient, LocalSite, site  # noqa: F401 (fixture)
from tests.llm.conftest import tiny_model_dir  # noqa: F401 (fixture)
from tests.net.test_extract import BOILERPLATE, STREAMING_CODE

STREAMING_TASK = "count the bytes of a large download with httpx without loading it into memory"


@pytest.fixture
def online() -> Iterator[None]:
    """The user has typed /offline: the guard lets traffic through."""
    was_offline = guard.is_offline()
    guard.disable()
    yield
    if was_offline:
        guard.enable()


def researcher(search: LocalSearchClient | None, **web: object) -> WebResearcher:
    settings = WebSettings(**{"timeout": 3.0, "max_results": 6, "fetch_pages": 6, **web})
    return WebResearcher(Config(web=settings), search)


@pytest.mark.usefixtures("online")
def test_web_gathers_relevant_passages_and_reports_each_bad_page(site: LocalSite) -> None:
    good = [site.url("streaming.html"), site.url("timeouts.html")]
    bad = {
        site.url("huge.html"): "page too large",
        site.url("manual.pdf"): "not a web page",
        site.url("slow.html"): "no answer within 3s",
        site.url("loop-a"): "redirect loop",
    }
    search = LocalSearchClient([good[0], *bad, good[1]])

    gathering = researcher(search).gather(STREAMING_TASK)

    assert search.queries == [STREAMING_TASK]
    assert {p.url for p in gathering.passages} == set(good)
    assert gathering.passages[0].url == good[0]
    assert any(STREAMING_CODE in p.text for p in gathering.passages)
    scores = [p.score for p in gathering.passages]
    assert scores == sorted(scores, reverse=True)
    assert not [junk for p in gathering.passages for junk in BOILERPLATE if junk in p.text]
    assert len(gathering.errors) == len(bad)
    for url, reason in bad.items():
        matching = [e for e in gathering.errors if e.startswith(url) and reason in e]
        assert matching, (url, gathering.errors)
    assert all("\n" not in error for error in gathering.errors)


@pytest.mark.usefixtures("online")
def test_ranking_follows_the_task(site: LocalSite) -> None:
    search = LocalSearchClient([site.url("streaming.html"), site.url("timeouts.html")])

    gathering = researcher(search).gather("set a connect timeout and a read timeout on the client")

    assert gathering.passages[0].url == site.url("timeouts.html")
    assert "httpx.Timeout(10.0, connect=60.0)" in gathering.passages[0].text


@pytest.mark.usefixtures("online")
def test_search_hands_over_exactly_the_query(site: LocalSite) -> None:
    search = LocalSearchClient([site.url("streaming.html")])
    query = 'httpx "stream" iter_bytes?  2024 & more'

    results = researcher(search, max_results=3).search(query)

    assert search.queries == [query]
    assert [r.url for r in results] == [site.url("streaming.html")]
    assert site.hits == {}  # /search lists results; it fetches nothing


def test_offline_refuses_before_calling_the_search_client(site: LocalSite) -> None:
    search = LocalSearchClient([site.url("streaming.html")])
    with guard.offline_mode():
        for run in (researcher(search).search, researcher(search).gather):
            with pytest.raises(UserError, match="type /offline to go online"):
                run("httpx streaming")
    assert search.queries == []
    assert site.hits == {}


def test_offline_refuses_before_building_any_client() -> None:
    """The config's backend is invalid, so building the ddgs client would fail differently."""
    web = WebResearcher(Config(web=WebSettings(backend="no-such-engine")))
    with guard.offline_mode():
        with pytest.raises(UserError, match="/web needs the internet and you are offline"):
            web.gather("httpx streaming")


@pytest.mark.usefixtures("online")
def test_failed_search_still_returns_a_gathering() -> None:
    class RateLimited(LocalSearchClient):
        def search(self, query: str, max_results: int) -> list:
            raise UserError("local-test-engine is rate-limiting searches; wait a minute")

    gathering = researcher(RateLimited([])).gather("httpx streaming")

    assert gathering.passages == []
    assert gathering.errors == ["local-test-engine is rate-limiting searches; wait a minute"]


@pytest.mark.usefixtures("online")
def test_all_pages_failing_leaves_only_errors(site: LocalSite) -> None:
    search = LocalSearchClient([site.url("manual.pdf"), site.url("nowhere.html")])

    gathering = researcher(search).gather("httpx streaming")

    assert gathering.passages == []
    assert len(gathering.errors) == 2


@pytest.mark.usefixtures("online")
def test_only_the_top_pages_are_fetched(site: LocalSite) -> None:
    search = LocalSearchClient([site.url("streaming.html"), site.url("timeouts.html")])

    researcher(search, fetch_pages=1).gather("httpx streaming")

    assert dict(site.hits) == {"/streaming.html": 1}


@pytest.mark.usefixtures("online")
@pytest.mark.parametrize("run", ["search", "gather"])
def test_empty_query_is_a_usage_error(run: str) -> None:
    search = LocalSearchClient([])
    with pytest.raises(UserError, match="usage: /"):
        getattr(researcher(search), run)("   ")
    assert search.queries == []


def test_engine_notice_names_the_engine_once() -> None:
    web = researcher(LocalSearchClient([]))

    assert "only your query text is sent to local-test-engine" in (web.engine_notice() or "")
    assert web.engine_notice() is None


def test_engine_notice_without_a_client_names_the_configured_backend() -> None:
    notice = WebResearcher(Config(web=WebSettings(backend="mojeek"))).engine_notice()
    assert notice is not None and "sent to mojeek" in notice


def test_headings_start_passages_and_code_is_not_cut() -> None:
    code = "```python\ndef f():\n\n    return 1\n```"
    markdown = f"# One\n\nfirst topic text\n\n{code}\n\n## Two\n\nsecond topic text"

    assert split_passages(markdown) == [
        f"# One\n\nfirst topic text\n\n{code}",
        "## Two\n\nsecond topic text",
    ]


def test_small_paragraphs_are_packed_up_to_the_limit() -> None:
    paragraphs = [f"paragraph {n} " + "x" * 300 for n in range(10)]

    passages = split_passages("\n\n".join(paragraphs))

    assert all(len(p) <= PASSAGE_CHARS for p in passages)
    assert 2 < len(passages) < 10
    assert "\n\n".join(passages) == "\n\n".join(paragraphs)


def test_oversized_code_block_is_split_into_fenced_pieces() -> None:
    body = "\n".join(f"line_{n} = {n}" for n in range(400))
    passages = split_passages(f"```python\n{body}\n```", limit=500)

    assert len(passages) > 1
    assert all(p.startswith("```python\n") and p.endswith("\n```") for p in passages)
    assert "\n".join(p.removeprefix("```python\n").removesuffix("\n```") for p in passages) == body


@pytest.mark.usefixtures("online")
def test_web_answer_cites_the_page_urls(site: LocalSite, tiny_model_dir: Path) -> None:
    """/web's data flow: gather, then `Coder.ask` with the passages (the tiny local Qwen2 as
    model, so the text is gibberish but the prompt and its citations are real)."""
    good = [site.url("streaming.html"), site.url("timeouts.html")]
    search = LocalSearchClient([good[0], site.url("manual.pdf"), good[1]])
    gathering = researcher(search).gather(STREAMING_TASK)
    config = Config.model_validate(
        {"model": {"path": str(tiny_model_dir), "n_ctx": 2048}, "generation": {"max_tokens": 8}}
    )

    answer = Coder(config).ask(STREAMING_TASK, repo=None, web_passages=gathering.passages)

    assert set(answer.web_sources) == set(good)
    assert answer.text
    assert len(gathering.errors) == 1 and "not a web page" in gathering.errors[0]
