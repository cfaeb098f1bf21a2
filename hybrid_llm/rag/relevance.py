"""The relevance gate: retrieved code goes into the prompt only when it is likely to help.

Retrieval always returns its k best spans, even for a request that has nothing to do with the
codebase ("write an LRU cache class"); on a CPU those ~1,000 prompt tokens delay the first
answer token by ~20 s for nothing. Fused RRF scores are ranks and cannot tell, so the gate
reads the raw evidence the results carry (`RetrievedChunk.similarity`, `.keyword_score`,
`.named`, `.rare_terms`) and turns it into a probability that the request is about this codebase.

The decision is per request, not per chunk: the best cosine similarity and the best BM25
score per query term among the results, and the share of the request's words that the
codebase barely uses (`RetrievedChunk.rare_terms`), through a logistic model fitted by
bench/relevance_bench.py on the retrieval benchmark's queries (positives) and, as negatives,
HumanEval requests and short everyday ones ("parse a date like 2024-03-05 ...") against other
real packages. The share of rare words is what tells the short everyday requests apart: they
share "file", "list" or "parse" with any codebase, but a request about a codebase is written
in its words, and one about dates or CSV files against an HTTP client is not (with it, 90% of
the everyday negatives get no code instead of 78%, at the same hit@5). Judging each chunk
alone measured far worse: a helpful chunk often has only one strong signal, and dropping it
cost 0.09 hit@5. A request that spells out an identifier defined in the index always passes,
unless the only names it spells are Python's own dunders (`__repr__` is defined everywhere).

API: `RelevanceGate(threshold)`; `.split(request, chunks) -> (used, not_used)`, order kept;
`request_relevance(request, evidence) -> float`. A threshold of 0 (config
`rag.relevance_threshold`) lets everything through. A chunk whose file the request names
(`sessions.py`, `src/app/sessions.py`) always passes: that is how the user asks for a source
the gate listed as "not used".
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Protocol

from hybrid_llm.rag.chunk import RetrievedChunk
from hybrid_llm.rag.keyword_store import query_terms

# Logistic weights (similarity, log(1 + BM25 per query term), share of rare query terms,
# intercept), fitted by `bench/relevance_bench.py --fit` for the default (code) embedder; each
# intercept is placed so that the shipped threshold (0.25) costs at most 0.9% of hit@5. The
# keyword-only model serves requests answered before the vectors exist (background embedding);
# the dense-only one serves codebases too small for BM25: with a handful of chunks every term is
# in half of them, FTS5's IDF floors at ~0 and a perfect match scores like no match. Where the
# share of rare terms is unknown (a codebase too small to tell) it counts as 0, the lenient side:
# a small codebase costs few prompt tokens.
_HYBRID_WEIGHTS = (18.889, 2.158, -5.457, -8.972)
_KEYWORD_WEIGHTS = (0.0, 3.465, -9.038, -1.002)
_DENSE_WEIGHTS = (23.48, 0.0, 0.0, -9.002)
_DEGENERATE_BM25 = 0.01
_DUNDER = re.compile(r"(?<![\w.])__\w+__(?!\w)")


class Evidence(Protocol):
    similarity: float | None
    keyword_score: float
    named: bool
    sources: tuple[str, ...]
    rare_terms: float | None


def request_relevance(request: str, evidence: Sequence[Evidence]) -> float:
    """The probability (0-1) that results with this evidence help with `request`."""
    # Imported here: the retriever brings numpy, whose BLAS starts a thread at import, and the
    # CLI imports this module before it enters the OS sandbox, which needs a single thread.
    from hybrid_llm.rag.retriever import query_identifiers

    if not evidence:
        return 0.0
    if any(item.named for item in evidence) and query_identifiers(_DUNDER.sub(" ", request)):
        return 1.0
    terms = max(len(query_terms(request)), 1)
    best_keyword = max(item.keyword_score for item in evidence)
    keyword = math.log1p(best_keyword / terms)
    similarities = [item.similarity for item in evidence if item.similarity is not None]
    keyword_matched = any("keyword" in item.sources for item in evidence)
    if not similarities:
        weights = _KEYWORD_WEIGHTS
    elif keyword_matched and best_keyword < _DEGENERATE_BM25:
        weights = _DENSE_WEIGHTS
    else:
        weights = _HYBRID_WEIGHTS
    rare = next((item.rare_terms for item in evidence if item.rare_terms is not None), 0.0)
    logit = (weights[0] * max(similarities, default=0.0) + weights[1] * keyword + weights[2] * rare
             + weights[3])
    return 1 / (1 + math.exp(-logit))


class RelevanceGate:
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def passes(self, request: str, evidence: Sequence[Evidence]) -> bool:
        return self.threshold <= 0 or request_relevance(request, evidence) >= self.threshold

    def split(self, request: str, chunks: Sequence[RetrievedChunk]
              ) -> tuple[list[RetrievedChunk], list[RetrievedChunk]]:
        """The chunks that go into the prompt and those that do not, each in the order given."""
        if self.passes(request, chunks):
            return list(chunks), []
        used, not_used = [], []
        for chunk in chunks:
            (used if _names_file(request, chunk.chunk.path) else not_used).append(chunk)
        return used, not_used


def _names_file(request: str, path: str) -> bool:
    """Whether the request mentions the file: its path, or its name with the extension."""
    name = path.rsplit("/", 1)[-1]
    return "." in name and re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", request) is not None
