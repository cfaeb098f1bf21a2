"""What `/search` and `/web` do: search, fetch the top pages, and keep the passages that matter.

One `WebResearcher` lives for a REPL session. Nothing touches the network unless the user typed
one of those commands while online (in the default sandbox, the web broker does the searching
and downloading; see broker.py): the guard is checked before any client object is built, and
the only text that reaches the search engine is the user's own query. A page that fails (too big,
too slow, not HTML, a redirect loop) becomes a one-line error and the rest still arrive.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.net import broker_client, guard
from hybrid_llm.net.broker_client import BrokerUnavailable
from hybrid_llm.net.extract import extract_page
from hybrid_llm.net.fetch import PageFetcher
from hybrid_llm.net.passage import WebPassage
from hybrid_llm.net.search import DdgsSearchClient, SearchClient, SearchResult
from hybrid_llm.rag.embedder import Embedder, default_embedder

PASSAGE_CHARS = 1200
MAX_PASSAGES = 6
MAX_PASSAGES_PER_PAGE = 3
_HEADING = re.compile(r"^#{1,6} ")
_FENCE = "```"


@dataclass(frozen=True)
class WebGathering:
    """What `/web` found: passages best first, and one line per page or search that failed."""

    passages: list[WebPassage] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class WebResearcher:
    """Runs `/search` and `/web`; the search client, HTTP client and embedder are injectable."""

    def __init__(
        self,
        config: Config,
        search_client: SearchClient | None = None,
        http_client: httpx.Client | None = None,
        *,
        embedder: Embedder | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self._settings = config.web
        self._search_client = search_client
        self._http_client = http_client
        self._embedder = embedder
        self._cache_dir = cache_dir
        self._fetcher: PageFetcher | None = None
        self._notice_shown = False

    def engine_notice(self) -> str | None:
        """Which engine receives queries: a line to show once per session, then None."""
        if self._notice_shown:
            return None
        self._notice_shown = True
        engine = self._search_client.engine if self._search_client else self._settings.backend
        return (
            f"web: only your query text is sent to {engine} (web.backend); "
            "result pages are then fetched directly from their sites"
        )

    def search(self, query: str) -> list[SearchResult]:
        """`/search`: the engine's results for exactly `query`; raise UserError on failure."""
        _require_online("/search")
        query = query.strip()
        if not query:
            raise UserError("usage: /search QUERY")
        return self._searcher().search(query, self._settings.max_results)

    def gather(self, task: str) -> WebGathering:
        """`/web`: the passages of the top pages most relevant to `task`.

        Only an offline guard or an empty task raise; a failed search or page is reported in
        `errors`, so the answer can still be written from whatever did arrive.
        """
        _require_online("/web")
        task = task.strip()
        if not task:
            raise UserError("usage: /web TASK")
        try:
            results = self._searcher().search(task, self._settings.max_results)
        except BrokerUnavailable:
            raise  # not a failed search: no search can work, so /web stops with this one line
        except UserError as exc:
            return WebGathering(errors=[str(exc)])
        pages = results[: self._settings.fetch_pages]
        if not pages:
            return WebGathering()
        fetcher = self._page_fetcher()
        with ThreadPoolExecutor(max_workers=len(pages), thread_name_prefix="web-fetch") as pool:
            outcomes = list(pool.map(functools.partial(_page_passages, fetcher), pages))
        candidates = [passage for found, _ in outcomes for passage in found]
        errors = [error for _, error in outcomes if error]
        return WebGathering(passages=self._most_relevant(task, candidates), errors=errors)

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()

    def _searcher(self) -> SearchClient:
        # In the sandbox (the default on Linux) searches and downloads go through the web
        # broker, the one process with network; an injected client is used as given.
        if self._search_client is None:
            broker = broker_client.for_web()
            self._search_client = (
                broker_client.BrokerSearchClient(broker, self._settings)
                if broker
                else DdgsSearchClient(self._settings)
            )
        return self._search_client

    def _page_fetcher(self) -> PageFetcher:
        if self._fetcher is None:
            broker = broker_client.for_web() if self._http_client is None else None
            self._fetcher = PageFetcher(
                self._settings,
                client=self._http_client,
                cache_dir=self._cache_dir,
                remote=broker_client.BrokerPageSource(broker, self._settings) if broker else None,
            )
        return self._fetcher

    def _most_relevant(self, task: str, candidates: list[WebPassage]) -> list[WebPassage]:
        if not candidates:
            return []
        embedder = self._embedder or default_embedder()
        query = np.asarray(embedder.embed_query(task), dtype=np.float32).reshape(-1)
        vectors = embedder.embed([f"{p.title}\n{p.text}" for p in candidates])
        scores = np.asarray(vectors, dtype=np.float32) @ query
        ranked = sorted(zip(candidates, scores.tolist()), key=lambda pair: -pair[1])
        return _cap_per_page(ranked, MAX_PASSAGES, MAX_PASSAGES_PER_PAGE)


def _page_passages(
    fetcher: PageFetcher, result: SearchResult
) -> tuple[list[WebPassage], str | None]:
    """The passages of one result's page, or the one-line reason there are none."""
    try:
        page = fetcher.fetch(result.url)
    except UserError as exc:
        return [], str(exc)
    extracted = extract_page(page.text, content_type=page.content_type)
    if not extracted.markdown:
        return [], f"{result.url}: no readable text found on the page"
    title = result.title or extracted.title or result.url
    return [
        WebPassage(url=result.url, title=title, text=text)
        for text in split_passages(extracted.markdown)
    ], None


def _require_online(command: str) -> None:
    if guard.is_offline():
        raise UserError(
            f"{command} needs the internet and you are offline; type /offline to go online"
        )


def _cap_per_page(
    ranked: list[tuple[WebPassage, float]], limit: int, per_page: int
) -> list[WebPassage]:
    """The best passages, at most `per_page` per URL, so one long page cannot crowd out others."""
    kept: list[WebPassage] = []
    taken: dict[str, int] = {}
    for passage, score in ranked:
        if taken.get(passage.url, 0) >= per_page:
            continue
        taken[passage.url] = taken.get(passage.url, 0) + 1
        kept.append(dataclasses.replace(passage, score=score))
        if len(kept) == limit:
            break
    return kept


def split_passages(markdown: str, limit: int = PASSAGE_CHARS) -> list[str]:
    """Markdown cut into passages of about `limit` characters.

    A heading starts a new passage, so each passage is about one topic; a code block is never
    cut unless it alone exceeds the limit, and then every piece is fenced again.
    """
    passages: list[str] = []
    current: list[str] = []
    for block in _blocks(markdown):
        if current and _HEADING.match(block):
            passages.append("\n\n".join(current))
            current = []
        for piece in _split_oversized(block, limit):
            if current and len("\n\n".join([*current, piece])) > limit:
                passages.append("\n\n".join(current))
                current = []
            current.append(piece)
    if current:
        passages.append("\n\n".join(current))
    return passages


def _blocks(markdown: str) -> list[str]:
    """Paragraphs, headings and whole fenced code blocks (blank lines inside code kept)."""
    blocks: list[str] = []
    lines: list[str] = []
    in_code = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(_FENCE):
            in_code = not in_code
        if not in_code and not line.strip():
            if lines:
                blocks.append("\n".join(lines))
                lines = []
            continue
        if not in_code and _HEADING.match(line) and lines:
            blocks.append("\n".join(lines))
            lines = []
        lines.append(line)
    if lines:
        blocks.append("\n".join(lines))
    return blocks


def _split_oversized(block: str, limit: int) -> list[str]:
    if len(block) <= limit:
        return [block]
    lines = block.splitlines()
    if not lines[0].lstrip().startswith(_FENCE):
        return _pack_lines(lines, limit)
    opening = lines[0]
    body = lines[1:-1] if len(lines) > 1 and lines[-1].strip() == _FENCE else lines[1:]
    return [f"{opening}\n{piece}\n{_FENCE}" for piece in _pack_lines(body, limit)]


def _pack_lines(lines: list[str], limit: int) -> list[str]:
    pieces: list[str] = []
    part: list[str] = []
    size = 0
    for line in lines:
        if part and size + len(line) + 1 > limit:
            pieces.append("\n".join(part))
            part, size = [], 0
        part.append(line)
        size += len(line) + 1
    if part:
        pieces.append("\n".join(part))
    return pieces
