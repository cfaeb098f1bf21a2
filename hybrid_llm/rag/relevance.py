"""The relevance gate: retrieved code goes into the prompt only when it is likely to help.

Retrieval always returns its k best spans, even for a request that has nothing to do with the
codebase ("write an LRU cache class"); on a CPU those ~1,000 prompt tokens delay the first
answer token by ~20 s for nothing. Fused RRF scores are ranks and cannot tell, so the gate
reads the raw evidence each result carries (`RetrievedChunk.similarity`, `.keyword_score`,
`.named`) and scores it with `relevance`, calibrated by bench/relevance_bench.py.

API: `RelevanceGate(threshold)`; `.split(request, chunks) -> (used, not_used)`, order kept. A
threshold of 0 (config `rag.relevance_threshold`) lets everything through. A chunk whose file
the request names (`sessions.py`, `src/app/sessions.py`) always passes: that is how the user
asks for a source the gate listed as "not used".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hybrid_llm.rag.chunk import RetrievedChunk


def relevance(similarity: float | None, keyword_score: float, named: bool) -> float:
    """How likely a result is to help, on a 0-1 scale the threshold is set on."""
    if named:
        return 1.0
    return similarity if similarity is not None else 0.0


class RelevanceGate:
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def passes(self, similarity: float | None, keyword_score: float, named: bool) -> bool:
        return self.threshold <= 0 or relevance(similarity, keyword_score, named) >= self.threshold

    def passes_signals(self, signals: dict) -> bool:
        """`passes` for a result recorded as a dict (bench/relevance_bench.py dumps)."""
        return self.passes(signals["similarity"], signals["keyword"], signals["named"])

    def split(self, request: str, chunks: Sequence[RetrievedChunk]
              ) -> tuple[list[RetrievedChunk], list[RetrievedChunk]]:
        """The chunks that clear the bar and those that do not, each in the order given."""
        used, not_used = [], []
        for chunk in chunks:
            passed = (self.passes(chunk.similarity, chunk.keyword_score, chunk.named)
                      or _names_file(request, chunk.chunk.path))
            (used if passed else not_used).append(chunk)
        return used, not_used


def _names_file(request: str, path: str) -> bool:
    """Whether the request mentions the file: its path, or its name with the extension."""
    name = path.rsplit("/", 1)[-1]
    return "." in name and re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", request) is not None
