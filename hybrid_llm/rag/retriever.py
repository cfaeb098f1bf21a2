"""Hybrid retrieval over a code index: dense and keyword search, fused.

API:
- `HybridRetriever(index, config)`; `.retrieve(query, k=8, *, language=None, path_glob=None)
  -> list[RetrievedChunk]`, best first. `sources` says which searches found each chunk.
- `reciprocal_rank_fusion(rankings, weights, k) -> list[(id, score, sources)]`, the RRF fusion alone.

Why both: embeddings find code by meaning ("read the config file") but miss exact names
(`parse_http_response`); BM25 over split identifiers finds names but misses paraphrase.
`rag.fusion` says how their candidates are ranked: "learned" (default, `hybrid_llm.rag.fusion`:
a fitted linear score over each candidate's similarity, keyword score, name and file evidence)
or "rrf", which needs no score calibration, only ranks: score = sum of weight / (k + rank).

The query is embedded once per call and the embedder is the index's, loaded once per process.
Chunks from the same file that overlap or touch are merged into one span (a function split in
two reads as one citation), and at most `rag.max_chunks_per_file` spans per file are returned
so one large file cannot crowd out the rest of the codebase. A query that spells out an
identifier (`parseHttpResponse`, `Config.load`) puts the chunk defining it first (RRF: one extra
first-place keyword vote), and (RRF) chunks holding no whole definition (imports, data tables) score
`rag.non_definition_factor` of what they would. A weight of 0 switches a search off
(keyword-only, dense-only).

Each result also carries the raw evidence behind it (cosine similarity, BM25 score, whether it
defines a name the query spells out): fused scores are ranks and cannot say whether anything
relevant was found at all, which `hybrid_llm.rag.relevance` decides from that evidence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Protocol

import numpy as np

from hybrid_llm.config import Config
from hybrid_llm.rag import fusion
from hybrid_llm.rag.chunk import Chunk, RetrievedChunk

# Each search contributes about as many candidates as results are wanted: with RRF's flat
# k=60 curve, a long tail of weak candidates found by both searches outvotes a strong one
# found by only one (measured: top-10 pools beat top-50 pools by 2 points hit@5).
_MIN_POOL = 10
# Filters, per-file caps and merging discard candidates: then look this much deeper.
_DEEPER = 4
_MAX_POOL = 1000


class _Embedder(Protocol):
    def embed_query(self, text: str) -> np.ndarray: ...


class SearchIndex(Protocol):
    """The part of `CodeIndex` the retriever uses."""

    embedder: _Embedder

    def dense_search(self, embedding: np.ndarray, k: int) -> list[tuple[str, float]]: ...

    def keyword_search(self, query: str, k: int) -> list[tuple[str, float]]: ...

    def rare_term_share(self, query: str) -> float | None: ...

    def get_chunks(self, ids: list[str]) -> dict[str, Chunk]: ...


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[str]], weights: Mapping[str, float], k: int
) -> list[tuple[str, float, tuple[str, ...]]]:
    """Fuse best-first id lists: each id scores sum(weight / (k + rank)), rank starting at 1.

    Ties keep the order in which ids were first seen, so results are deterministic.
    """
    scores: dict[str, float] = {}
    sources: dict[str, list[str]] = {}
    for name, ranking in rankings.items():
        weight = weights.get(name, 1.0)
        for rank, item in enumerate(dict.fromkeys(ranking), start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
            sources.setdefault(item, []).append(name)
    order = sorted(scores, key=lambda item: -scores[item])
    return [(item, scores[item], tuple(sources[item])) for item in order]


@dataclass
class _Span:
    """A result being assembled: one or more touching chunks of one file."""

    chunk: Chunk
    score: float
    sources: set[str]
    evidence: _Evidence

    def touches(self, other: Chunk) -> bool:
        return (other.start_line <= self.chunk.end_line + 1
                and self.chunk.start_line <= other.end_line + 1)

    def absorb(self, other: Chunk, sources: tuple[str, ...], evidence: _Evidence) -> None:
        self.chunk = _union(self.chunk, other)
        self.sources.update(sources)
        self.evidence = self.evidence.strongest(evidence)


@dataclass(frozen=True)
class _Evidence:
    """The raw scores behind one chunk or span (see `RetrievedChunk`)."""

    similarity: float | None = None
    keyword_score: float = 0.0
    named: bool = False

    def strongest(self, other: _Evidence) -> _Evidence:
        similarities = [s for s in (self.similarity, other.similarity) if s is not None]
        return _Evidence(max(similarities, default=None), max(self.keyword_score, other.keyword_score),
                         self.named or other.named)


def _union(first: Chunk, second: Chunk) -> Chunk:
    """One chunk spanning both (they overlap or touch); the text keeps each line once."""
    if second.start_line < first.start_line:
        first, second = second, first
    lines = first.text.split("\n")
    overlap = first.end_line - second.start_line + 1
    lines += second.text.split("\n")[max(overlap, 0):]
    end_line = max(first.end_line, second.end_line)
    lines = lines[: end_line - first.start_line + 1]
    symbol = first.symbol if first.symbol == second.symbol else (first.symbol or second.symbol)
    return Chunk(first.path, first.language, first.start_line, end_line, "\n".join(lines),
                 symbol, first.header, first.defines or second.defines)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def _normalise(name: str) -> str:
    return name.replace("_", "").lower()


def query_identifiers(query: str) -> set[str]:
    """Names the query spells as code: snake_case, camelCase, dotted, or a one-word query."""
    words = _IDENTIFIER.findall(query)
    names = {
        word.rsplit(".", 1)[-1]
        for word in words
        if len(words) == 1 or "_" in word or "." in word or re.search(r"[a-z][A-Z]", word)
    }
    return {_normalise(name) for name in names if len(name) > 2}


def matches_path_glob(path: str, pattern: str) -> bool:
    """`*` crosses directories (`src/*.py` matches `src/a/b.py`); a bare name matches anywhere."""
    if fnmatchcase(path, pattern) or fnmatchcase(path, pattern.rstrip("/") + "/*"):
        return True
    return "/" not in pattern and fnmatchcase(path.rsplit("/", 1)[-1], pattern)


class HybridRetriever:
    def __init__(self, index: SearchIndex, config: Config):
        self.index = index
        self.settings = config.rag
        self._keyword_worker: ThreadPoolExecutor | None = None

    def retrieve(
        self, query: str, k: int = 8, *, language: str | None = None,
        path_glob: str | None = None,
    ) -> list[RetrievedChunk]:
        """The `k` best spans for `query`, optionally only of one language / matching a glob."""
        if not query.strip() or k < 1:
            return []
        weights = {"dense": self.settings.dense_weight, "keyword": self.settings.keyword_weight}
        learned = self.settings.fusion == "learned" and all(weights.values())
        embedding = None
        pool = max(k, fusion.POOL if learned else _MIN_POOL) * (_DEEPER if language or path_glob else 1)
        while True:
            found, embedding = self._search(query, pool, weights, embedding)
            rankings = {name: [item for item, _ in hits] for name, hits in found.items()}
            chunks = self.index.get_chunks(list(dict.fromkeys(
                item for ranking in rankings.values() for item in ranking)))
            named = self._named(query, chunks)
            if learned:
                fused = _named_first(fusion.learned_fusion(query, found, chunks), named)
            else:
                fused = self._rank_fusion(rankings, weights, chunks, named)
            evidence = _evidence(found, named)
            spans = self._spans(fused, chunks, k, language, path_glob, evidence)
            exhausted = all(len(ranking) < pool for ranking in rankings.values())
            if len(spans) == k or exhausted or pool >= _MAX_POOL:
                break
            pool *= _DEEPER
        rare_terms = self.index.rare_term_share(query) if weights["keyword"] > 0 else None
        return [
            RetrievedChunk(span.chunk, span.score,
                           tuple(name for name in rankings if name in span.sources),
                           span.evidence.similarity, span.evidence.keyword_score,
                           span.evidence.named, rare_terms)
            for span in spans
        ]

    def _search(self, query: str, pool: int, weights: dict[str, float], embedding: np.ndarray | None
                ) -> tuple[dict[str, list[tuple[str, float]]], np.ndarray | None]:
        """Best-first (id, score) from each search whose weight is not 0 (0 switches one off),
        and the query's embedding (computed on the first call only, so it is embedded once).

        The keyword search runs on a worker thread while this one embeds the query and
        searches the vectors: SQLite, ONNX Runtime and hnswlib all release the GIL, so a query
        costs about the slower search instead of the sum of both.
        """
        keyword = None
        if weights["keyword"] > 0:
            keyword = self._worker().submit(self.index.keyword_search, query, pool)
        found = {}
        if weights["dense"] > 0:
            if embedding is None:
                embedding = self.index.embedder.embed_query(query)
            found["dense"] = self.index.dense_search(embedding, pool)
        if keyword is not None:
            found["keyword"] = keyword.result()
        return found, embedding

    def _worker(self) -> ThreadPoolExecutor:
        if self._keyword_worker is None:
            self._keyword_worker = ThreadPoolExecutor(1, thread_name_prefix="keyword-search")
        return self._keyword_worker

    @staticmethod
    def _named(query: str, chunks: dict[str, Chunk]) -> set[str]:
        """Ids of the candidates defining an identifier the query spells out."""
        names = query_identifiers(query)
        return {
            item for item, chunk in chunks.items()
            if names and chunk.symbol and _normalise(chunk.symbol.rsplit(".", 1)[-1]) in names
        }

    def _rank_fusion(self, rankings: dict[str, list[str]], weights: dict[str, float],
                     chunks: dict[str, Chunk], named: set[str]) -> list[tuple[str, float, tuple[str, ...]]]:
        """`rag.fusion: rrf` (and one search alone): RRF, named definitions promoted, chunks
        without a definition discounted, best first."""
        fused = reciprocal_rank_fusion(rankings, weights, self.settings.rrf_k)
        fused = self._prefer_definitions(self._promote_named(fused, named), chunks)
        fused.sort(key=lambda entry: -entry[1])
        return fused

    def _promote_named(self, fused: list[tuple[str, float, tuple[str, ...]]],
                       named: set[str]) -> list[tuple[str, float, tuple[str, ...]]]:
        """A chunk defining an identifier the query spells out (`parseHttpResponse`,
        `Config.load`) gets one more first-place keyword vote: someone who types a name
        wants its definition, not the places that merely use it. Order is left to the caller."""
        if not named or self.settings.keyword_weight == 0:
            return fused
        bonus = self.settings.keyword_weight / (self.settings.rrf_k + 1)
        promoted = []
        for item, score, sources in fused:
            if item in named:
                score += bonus
                sources = tuple(dict.fromkeys((*sources, "keyword")))
            promoted.append((item, score, sources))
        return promoted

    def _prefer_definitions(self, fused: list[tuple[str, float, tuple[str, ...]]],
                            chunks: dict[str, Chunk]) -> list[tuple[str, float, tuple[str, ...]]]:
        """Scores of chunks holding no whole definition are multiplied by
        `rag.non_definition_factor`.

        Requests ask for behaviour, and behaviour lives in functions and classes; a lexer's
        token table or a block of imports shares many words with a request but is rarely what
        it wants. Measured on bench/retrieval_bench.py: 0.8 raised hybrid hit@5 by 2-3 points
        (pygments, where token tables are most of the code: 4-5). Order is left to the caller.
        """
        factor = self.settings.non_definition_factor
        if factor == 1:
            return fused
        return [
            (item, score if chunks.get(item) is None or chunks[item].defines else score * factor,
             sources)
            for item, score, sources in fused
        ]

    def _spans(self, fused: list[tuple[str, float, tuple[str, ...]]], chunks: dict[str, Chunk],
               k: int, language: str | None, path_glob: str | None,
               evidence: Callable[[str], _Evidence]) -> list[_Span]:
        """Walk the fused ranking until `k` spans: only chunks ranked above the k-th span
        are merged into earlier ones, so a span grows by relevant neighbours only."""
        spans: list[_Span] = []
        per_file: dict[str, list[_Span]] = {}
        for item, score, sources in fused:
            if len(spans) == k:
                break
            chunk = chunks.get(item)
            if chunk is None:  # removed from the index since the search ran
                continue
            if language and chunk.language != language:
                continue
            if path_glob and not matches_path_glob(chunk.path, path_glob):
                continue
            same_file = per_file.setdefault(chunk.path, [])
            touching = next((span for span in same_file if span.touches(chunk)), None)
            if touching is not None:
                touching.absorb(chunk, sources, evidence(item))
            elif len(same_file) < self.settings.max_chunks_per_file:
                span = _Span(chunk, score, set(sources), evidence(item))
                same_file.append(span)
                spans.append(span)
        return spans


def _named_first(fused: list[tuple[str, float, tuple[str, ...]]], named: set[str]
                 ) -> list[tuple[str, float, tuple[str, ...]]]:
    """Candidates defining a name the query spells out, ahead of the rest (someone who types
    `parseHttpResponse` wants its definition, not its callers), each order kept. Their scores are
    raised by one amount so that scores still fall along the list."""
    first = [entry for entry in fused if entry[0] in named]
    rest = [entry for entry in fused if entry[0] not in named]
    if not first or not rest:
        return fused
    raise_by = max(0.0, rest[0][1] - first[-1][1])
    return [(item, score + raise_by, sources) for item, score, sources in first] + rest


def _evidence(found: dict[str, list[tuple[str, float]]], named: set[str]) -> Callable[[str], _Evidence]:
    """Each candidate's raw scores. A candidate outside the dense pool gets the pool's lowest
    similarity, an upper bound (it ranked below all of them), so the gate never under-rates it."""
    similarity = dict(found.get("dense", []))
    keyword = dict(found.get("keyword", []))
    floor = min(similarity.values(), default=None)

    def of(item: str) -> _Evidence:
        return _Evidence(similarity.get(item, floor), keyword.get(item, 0.0), item in named)

    return of
