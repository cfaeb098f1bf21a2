"""BM25 keyword search over chunks, with identifiers split into the words they are made of.

SQLite FTS5 rather than bm25s, measured in bench/index_bench.py: FTS5 updates one file's rows
in place inside the catalog's transaction (bm25s rebuilds its whole matrix on any change), so the
keyword index is exactly as crash-safe as the catalog and usable as soon as a file is chunked.

FTS5's tokenizer cannot see that `parseHttpResponse` is three words, so text is tokenised here
first (`split_identifiers`) and FTS5 only applies Porter stemming on top, which lets
"Prompts the user" find `prompt_user`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable

from hybrid_llm.rag.chunk import Chunk

_TABLE = "keyword_chunks"

# Column weights for bm25(): a term in the file path or the symbol name says more about what
# a chunk is than the same term somewhere in its body.
_WEIGHTS = {"path": 2.0, "symbol": 3.0, "body": 1.0}

_WORD = re.compile(r"[^\W_]+(?:_+[^\W_]+)*", re.UNICODE)
# Case boundaries are ASCII-only; any other letter continues the current part.
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[^\W\d_A-Z]+|[A-Z]+|\d+", re.UNICODE)

# A term in at most this many chunks is one the codebase barely uses (`rare_term_share`); it
# only says so in a codebase of at least MIN_CHUNKS_FOR_RARITY chunks. Chosen with the
# relevance gate's fit (bench/relevance_bench.py): 3 separated best among 0-10.
RARE_CHUNKS = 3
MIN_CHUNKS_FOR_RARITY = 100

# Question words that carry no signal but match almost every docstring.
_QUERY_STOP_WORDS = frozenset(
    "a an and are as at be by can do does for from how i in is it me my of on or should that the"
    " this to use what when where which who why will with you your".split()
)


def split_identifiers(text: str) -> list[str]:
    """Lower-cased search terms: every identifier's parts, and the identifier itself.

    `parseHttpResponse`, `parse_http_response` and `HTTPResponse.parse` all yield `parse`,
    `http`, `response`; the joined form (`parsehttpresponse`) is kept too so an exact
    identifier in a query ranks its definition first. One-letter terms are dropped.
    """
    terms: list[str] = []
    for word in _WORD.findall(text):
        parts = [part.lower() for piece in word.split("_") for part in _PART.findall(piece)]
        terms.extend(part for part in parts if len(part) > 1)
        if len(parts) > 1:
            terms.append("".join(parts))
    return terms


def query_terms(query: str) -> list[str]:
    """The distinct terms of a user query, question words removed unless nothing else is left."""
    terms = list(dict.fromkeys(split_identifiers(query)))
    meaningful = [term for term in terms if term not in _QUERY_STOP_WORDS]
    return meaningful or terms


class KeywordStore:
    """An FTS5 table in the catalog database, keyed by the catalog's chunk rowid."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        connection.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {_TABLE} USING fts5("
            "chunk_id UNINDEXED, path, symbol, body, tokenize = 'porter ascii')"
        )

    def add(self, rows: Iterable[tuple[int, Chunk]]) -> None:
        """Index chunks under the catalog rowids they were stored with."""
        self.connection.executemany(
            f"INSERT INTO {_TABLE} (rowid, chunk_id, path, symbol, body) VALUES (?, ?, ?, ?, ?)",
            (
                (
                    rowid,
                    chunk.id,
                    " ".join(split_identifiers(chunk.path)),
                    " ".join(split_identifiers(chunk.symbol or "")),
                    " ".join(split_identifiers(f"{chunk.header}\n{chunk.text}")),
                )
                for rowid, chunk in rows
            ),
        )

    def remove(self, rowids: Iterable[int]) -> None:
        self.connection.executemany(
            f"DELETE FROM {_TABLE} WHERE rowid = ?", ((rowid,) for rowid in rowids)
        )

    def clear(self) -> None:
        self.connection.execute(f"DELETE FROM {_TABLE}")

    def count(self) -> int:
        return self.connection.execute(f"SELECT count(*) FROM {_TABLE}").fetchone()[0]

    def rare_term_share(self, query: str) -> float | None:
        """The share of the query's terms that at most `RARE_CHUNKS` chunks contain (stemmed as
        `search` matches them): words the codebase barely uses. A request about the codebase
        is written in its words; "parse a date" against an HTTP client is not. None below
        `MIN_CHUNKS_FOR_RARITY` chunks, where every word is rare."""
        terms = query_terms(query)
        if not terms or self.count() < MIN_CHUNKS_FOR_RARITY:
            return None
        counts = [
            self.connection.execute(
                f"SELECT count(*) FROM {_TABLE} WHERE {_TABLE} MATCH ?", (f'"{term}"',)
            ).fetchone()[0]
            for term in terms
        ]
        return sum(count <= RARE_CHUNKS for count in counts) / len(terms)

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """Chunk ids and BM25 scores (higher is better), best first; any term may match."""
        terms = query_terms(query)
        if not terms or k <= 0:
            return []
        # Quoted terms OR-ed: FTS5 would otherwise AND them and read `-`, `:` or `AND` as syntax.
        match = " OR ".join(f'"{term}"' for term in terms)
        weights = ", ".join(str(weight) for weight in _WEIGHTS.values())
        rows = self.connection.execute(
            f"SELECT chunk_id, bm25({_TABLE}, 0.0, {weights}) AS rank FROM {_TABLE}"
            f" WHERE {_TABLE} MATCH ? ORDER BY rank LIMIT ?",
            (match, k),
        )
        # FTS5's bm25() is negated so that ascending order is best first; flip it back.
        return [(chunk_id, -rank) for chunk_id, rank in rows]
