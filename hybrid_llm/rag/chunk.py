"""The unit every index stores and every retriever returns: a span of one source file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Chunk:
    """A contiguous range of whole lines of one file.

    `path` is relative to the codebase root with forward slashes, so ids are stable across
    machines; lines are 1-based and inclusive. `header` is what the embedder sees before the
    text (path and enclosing signatures), because a method body alone rarely says what it is.
    `defines` is true when the chunk holds at least one whole definition (function, method,
    class), false for free code (imports, constants, data tables, class attributes) and for the
    pieces of a definition too long for one chunk: retrieval ranks definitions first at equal
    evidence.
    """

    path: str
    language: str
    start_line: int
    end_line: int
    text: str
    symbol: str | None = None
    header: str = ""
    defines: bool = False

    @property
    def content_hash(self) -> str:
        """Hash of what gets embedded: unchanged text is never embedded twice."""
        return hashlib.sha256(f"{self.header}\n{self.text}".encode()).hexdigest()

    @property
    def id(self) -> str:
        """Stable id: the same file span with the same content always gets the same id."""
        key = f"{self.path}:{self.start_line}-{self.end_line}:{self.content_hash}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    @property
    def citation(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"


@dataclass(frozen=True)
class RetrievedChunk:
    """A chunk with its fused score and the searches that found it ("dense", "keyword").

    The fused score is built from ranks, so it says nothing about whether the chunk is
    relevant at all; the raw evidence does, and the relevance gate reads it: `similarity` is
    the cosine between query and chunk embeddings (None when the dense search did not run),
    `keyword_score` the BM25 score (0 when no query term matched), `named` whether the chunk
    defines an identifier the query spells out, `rare_terms` the share of the query's words
    the codebase barely uses (the same for every result of a query; None when keyword search
    did not run or the codebase is too small to tell).
    """

    chunk: Chunk
    score: float
    sources: tuple[str, ...] = field(default_factory=tuple)
    similarity: float | None = None
    keyword_score: float = 0.0
    named: bool = False
    rare_terms: float | None = None
