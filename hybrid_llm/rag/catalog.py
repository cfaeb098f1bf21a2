"""The SQLite catalog: which files are indexed, as which chunks, and which chunks have vectors.

The catalog is the single source of truth for an index. Every file's change is applied in one
SQLite transaction (its file row, its chunk rows, its keyword rows and the vector ids it makes
obsolete), so a process killed at any moment leaves either the old or the new state of each
file, never a mix. The vector store is reconciled against it afterwards: chunks carry an
`embedded` flag set only after their vector was written, and ids whose vectors must go are
queued in `vector_deletes` in the same transaction that removes the chunk.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybrid_llm.rag.chunk import Chunk

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    language TEXT
);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    language TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    symbol TEXT,
    header TEXT NOT NULL,
    defines INTEGER NOT NULL DEFAULT 0,
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    embedded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks (path);
CREATE INDEX IF NOT EXISTS chunks_unembedded ON chunks (embedded) WHERE embedded = 0;
CREATE TABLE IF NOT EXISTS embeddings (content_hash TEXT PRIMARY KEY, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS vector_deletes (id TEXT PRIMARY KEY);
"""

# SQLite limits the number of bound parameters per statement; stay well below it.
_BATCH = 500


@dataclass(frozen=True)
class FileRecord:
    """What the catalog remembers about a file to decide, without reading it, if it changed."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str
    language: str | None = None


@dataclass(frozen=True)
class ChunkChanges:
    """The rows one file update removed and added; the keyword store mirrors them by rowid."""

    removed: list[int]
    added: list[tuple[int, Chunk]]


@dataclass(frozen=True)
class PendingChunk:
    """A chunk whose vector is not in the vector store yet."""

    id: str
    content_hash: str
    embed_text: str


def embed_text(header: str, text: str) -> str:
    """What the embedder sees for a chunk: the same string `Chunk.content_hash` covers."""
    return f"{header}\n{text}"


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    """Give a catalog written by an older version the columns added since, so it can be read
    at once; the index notices the old schema version and rebuilds its rows on the next update."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(chunks)")}
    if "defines" not in columns:
        connection.execute("ALTER TABLE chunks ADD COLUMN defines INTEGER NOT NULL DEFAULT 0")


def _batches(items: list, size: int = _BATCH) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Catalog:
    """One SQLite database holding the catalog tables; the keyword store shares its connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    @classmethod
    def open(cls, path: Path) -> Catalog:
        """Open or create the catalog; WAL keeps readers unblocked while an update writes."""
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against a killed process (the WAL survives); only a power cut can
        # lose the last commits, and even then each file stays either old or new.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA busy_timeout=30000")
        connection.executescript(_SCHEMA)
        _add_missing_columns(connection)
        return cls(connection)

    def close(self) -> None:
        self.connection.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing: an exception (KeyboardInterrupt included) rolls the block back."""
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    # -- metadata ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self.connection.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self.connection.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
            )

    # -- files ---------------------------------------------------------------------------------

    def file_records(self) -> dict[str, FileRecord]:
        rows = self.connection.execute(
            "SELECT path, size, mtime_ns, content_hash, language FROM files"
        )
        return {row[0]: FileRecord(*row) for row in rows}

    def update_file_stat(self, record: FileRecord) -> None:
        """A touched file whose content is unchanged: remember its new size and mtime only."""
        self.connection.execute(
            "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?",
            (record.size, record.mtime_ns, record.path),
        )

    def put_file(self, record: FileRecord, chunks: list[Chunk]) -> ChunkChanges:
        """Replace a file's chunks; chunks whose id is unchanged keep their row and vector."""
        old = dict(
            self.connection.execute("SELECT id, rowid FROM chunks WHERE path = ?", (record.path,))
        )
        new = {chunk.id: chunk for chunk in chunks}
        removed_ids = [chunk_id for chunk_id in old if chunk_id not in new]
        removed = self._delete_chunks(removed_ids, old)
        added = [(self._insert_chunk(chunk), chunk) for cid, chunk in new.items() if cid not in old]
        self.connection.execute(
            "INSERT OR REPLACE INTO files (path, size, mtime_ns, content_hash, language)"
            " VALUES (?, ?, ?, ?, ?)",
            (record.path, record.size, record.mtime_ns, record.content_hash, record.language),
        )
        return ChunkChanges(removed=removed, added=added)

    def remove_file(self, path: str) -> list[int]:
        """Forget a deleted file; returns the rowids of its chunks for the keyword store."""
        old = dict(self.connection.execute("SELECT id, rowid FROM chunks WHERE path = ?", (path,)))
        removed = self._delete_chunks(list(old), old)
        self.connection.execute("DELETE FROM files WHERE path = ?", (path,))
        return removed

    def _delete_chunks(self, ids: list[str], rowids: dict[str, int]) -> list[int]:
        self.connection.executemany("DELETE FROM chunks WHERE id = ?", ((i,) for i in ids))
        # Queued even when never embedded: a crash between a vector write and its flag would
        # otherwise leave a vector nobody knows about.
        self.connection.executemany(
            "INSERT OR IGNORE INTO vector_deletes (id) VALUES (?)", ((i,) for i in ids)
        )
        return [rowids[i] for i in ids]

    def _insert_chunk(self, chunk: Chunk) -> int:
        cursor = self.connection.execute(
            "INSERT INTO chunks (id, path, language, start_line, end_line, symbol, header,"
            " defines, text, content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                chunk.id,
                chunk.path,
                chunk.language,
                chunk.start_line,
                chunk.end_line,
                chunk.symbol,
                chunk.header,
                chunk.defines,
                chunk.text,
                chunk.content_hash,
            ),
        )
        return int(cursor.lastrowid)

    # -- chunks --------------------------------------------------------------------------------

    def get_chunks(self, ids: list[str]) -> dict[str, Chunk]:
        found: dict[str, Chunk] = {}
        for batch in _batches(list(dict.fromkeys(ids))):
            marks = ",".join("?" * len(batch))
            rows = self.connection.execute(
                "SELECT id, path, language, start_line, end_line, text, symbol, header, defines"
                f" FROM chunks WHERE id IN ({marks})",
                batch,
            )
            for chunk_id, *fields, defines in rows:
                found[chunk_id] = Chunk(*fields, defines=bool(defines))
        return found

    def chunk_ids(self) -> set[str]:
        return {row[0] for row in self.connection.execute("SELECT id FROM chunks")}

    def embedded_ids(self) -> set[str]:
        return {row[0] for row in self.connection.execute("SELECT id FROM chunks WHERE embedded")}

    def pending_chunks(self, limit: int) -> list[PendingChunk]:
        rows = self.connection.execute(
            "SELECT id, content_hash, header, text FROM chunks WHERE embedded = 0"
            " ORDER BY rowid LIMIT ?",
            (limit,),
        )
        return [PendingChunk(cid, chash, embed_text(head, text)) for cid, chash, head, text in rows]

    def pending_count(self) -> int:
        query = "SELECT count(*) FROM chunks WHERE embedded = 0"
        return self.connection.execute(query).fetchone()[0]

    def set_embedded(self, ids: Iterable[str], embedded: bool = True) -> None:
        self.connection.executemany(
            "UPDATE chunks SET embedded = ? WHERE id = ?", ((int(embedded), i) for i in ids)
        )

    def reset_embedded(self) -> None:
        """Every chunk needs its vector written again (the vector store was lost or replaced)."""
        self.connection.execute("UPDATE chunks SET embedded = 0")

    # -- vectors to delete ---------------------------------------------------------------------

    def vector_deletes(self) -> list[str]:
        """Queued ids that no current chunk uses (an id can come back, e.g. an undone edit)."""
        rows = self.connection.execute(
            "SELECT d.id FROM vector_deletes d LEFT JOIN chunks c ON c.id = d.id"
            " WHERE c.id IS NULL"
        )
        return [row[0] for row in rows]

    def clear_vector_deletes(self) -> None:
        self.connection.execute("DELETE FROM vector_deletes")

    # -- embedding cache -----------------------------------------------------------------------

    def cached_embeddings(self, content_hashes: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for batch in _batches(list(dict.fromkeys(content_hashes))):
            marks = ",".join("?" * len(batch))
            rows = self.connection.execute(
                f"SELECT content_hash, vector FROM embeddings WHERE content_hash IN ({marks})",
                batch,
            )
            for content_hash, blob in rows:
                found[content_hash] = np.frombuffer(blob, dtype=np.float32)
        return found

    def store_embeddings(self, vectors: dict[str, np.ndarray]) -> None:
        self.connection.executemany(
            "INSERT OR REPLACE INTO embeddings (content_hash, vector) VALUES (?, ?)",
            ((h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in vectors.items()),
        )

    def drop_unused_embeddings(self) -> None:
        """Forget vectors of content no chunk has any more, so the cache tracks the codebase."""
        self.connection.execute(
            "DELETE FROM embeddings WHERE content_hash NOT IN (SELECT content_hash FROM chunks)"
        )

    def clear_embeddings(self) -> None:
        self.connection.execute("DELETE FROM embeddings")

    # -- counts --------------------------------------------------------------------------------

    def chunk_count(self) -> int:
        return self.connection.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def languages(self) -> Counter[str]:
        """Indexed files per language; files no chunker recognised are not counted."""
        rows = self.connection.execute(
            "SELECT language, count(*) FROM files WHERE language IS NOT NULL GROUP BY language"
        )
        return Counter(dict(rows.fetchall()))

    def clear(self, *, keep_embeddings: bool = False) -> None:
        """Forget everything (a rebuild). With `keep_embeddings` the vectors stay cached by
        content, so a rebuild after an upgrade does not embed unchanged code again."""
        tables = ["files", "chunks", "vector_deletes", "meta"]
        if not keep_embeddings:
            tables.append("embeddings")
        for table in tables:
            self.connection.execute(f"DELETE FROM {table}")
