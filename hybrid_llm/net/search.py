"""Web search: one protocol, the ddgs implementation, and the numbered listing `/search` prints.

Like an httpx transport, the search client is handed to the code that needs it, so tests pass a
local client and nothing here is patched. Privacy hinges on this module: a client receives the
user's query text and nothing else, and it talks to exactly one engine, named in the config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hybrid_llm.config import WebSettings
from hybrid_llm.errors import UserError

SEARCH_CATEGORY = "text"
_MAX_DETAIL_CHARS = 160


@dataclass(frozen=True)
class SearchResult:
    """One hit: what the engine says the page is called, where it is, and its summary line."""

    title: str
    url: str
    snippet: str


class SearchClient(Protocol):
    """Anything that turns a query into results; `engine` names who receives the query."""

    engine: str

    def search(self, query: str, max_results: int) -> list[SearchResult]:
        """Results for `query`, best first; raise UserError with a one-line reason on failure."""
        ...


def known_engines() -> list[str]:
    """The text-search engines the installed ddgs can use (its registry skips disabled ones)."""
    from ddgs.engines import ENGINES

    return sorted(ENGINES.get(SEARCH_CATEGORY, {}))


class DdgsSearchClient:
    """Search through exactly one engine of `ddgs`, chosen by `web.backend`.

    ddgs treats an unknown backend name as "auto" and then queries every engine it knows, which
    would send the query to several third parties; so the name is checked here, up front.
    Building this object touches no network. `ddgs_factory` (default `ddgs.DDGS`) lets tests
    stand in for the engine.
    """

    def __init__(
        self, settings: WebSettings, *, ddgs_factory: Callable[..., Any] | None = None
    ) -> None:
        engines = known_engines()
        if settings.backend not in engines:
            raise UserError(
                f"web.backend {settings.backend!r} is not a search engine ddgs knows; "
                f"choose one of: {', '.join(engines)}"
            )
        self.engine = settings.backend
        self._settings = settings
        self._ddgs_factory = ddgs_factory

    def search(self, query: str, max_results: int) -> list[SearchResult]:
        from ddgs import DDGS
        from ddgs.exceptions import DDGSException

        factory = self._ddgs_factory or DDGS
        try:
            hits = factory(timeout=self._settings.timeout).text(
                query,
                region=self._settings.region,
                max_results=max_results,
                backend=self.engine,
            )
        except DDGSException as exc:
            reason = describe_search_failure(exc, self.engine, self._settings.timeout)
            raise UserError(reason) from None
        return [
            SearchResult(title=hit.get("title", ""), url=hit["href"], snippet=hit.get("body", ""))
            for hit in hits
            if str(hit.get("href", "")).startswith(("http://", "https://"))
        ][:max_results]


def describe_search_failure(exc: Exception, engine: str, timeout: float) -> str:
    """One line for a ddgs failure.

    ddgs raises the same DDGSException for rate limits, DNS failures and "no results", with the
    underlying error only in its text, so the kinds are told apart by type and by that text.
    """
    from ddgs.exceptions import RatelimitException, TimeoutException

    detail = " ".join(str(exc).split())
    lowered = detail.lower()
    if isinstance(exc, RatelimitException) or "ratelimit" in lowered or "429" in detail:
        return f"{engine} is rate-limiting searches; wait a minute and try again"
    if isinstance(exc, TimeoutException) or "timeout" in lowered or "timed out" in lowered:
        return f"{engine} did not answer within {timeout:g}s (web.timeout); try again later"
    if "dnserror" in lowered:
        return f"cannot resolve {engine}'s address: no internet connection or DNS failure"
    if "connecterror" in lowered:
        return f"cannot connect to {engine}: check your internet connection or proxy"
    if "no results found" in lowered:
        return (
            f"{engine} found no results; try other words "
            "(if every search comes back empty, the engine may be rate-limiting you)"
        )
    return f"search with {engine} failed: {detail[:_MAX_DETAIL_CHARS]}"


def format_search_results(results: list[SearchResult]) -> str:
    """The numbered listing `/search` shows: title, URL and snippet of each result."""
    if not results:
        return "no results"
    blocks = []
    for number, result in enumerate(results, start=1):
        lines = [f"{number}. {result.title or result.url}", f"   {result.url}"]
        if result.snippet:
            lines.append(f"   {result.snippet}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
