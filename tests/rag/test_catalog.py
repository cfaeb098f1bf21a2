"""The catalog on a real SQLite file: per-file replacement, vector bookkeeping, atomicity."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from hybrid_llm.rag.catalog import Catalog, FileRecord
from hybrid_llm.rag.chunk import Chunk


def _chunk(path: str, start: int, text: str) -> Chunk:
    return Chunk(path, "python", start, start + text.count("\n"), text, symbol=None, header=path)


def _record(path: str, content_hash: str = "h1") -> FileRecord:
    return FileRecord(path, size=10, mtime_ns=1, content_hash=content_hash, language="python")


@pytest.fixture
def catalog(tmp_path):
    catalog = Catalog.open(tmp_path / "catalog.sqlite3")
    yield catalog
    catalog.close()


def test_put_file_keeps_unchanged_chunks_and_queues_removed_vectors(catalog):
    first, second = _chunk("a.py", 1, "def f(): pass"), _chunk("a.py", 3, "def g(): pass")
    with catalog.transaction():
        catalog.put_file(_record("a.py"), [first, second])
        catalog.set_embedded([first.id, second.id])
    edited = _chunk("a.py", 3, "def g(): return 1")
    with catalog.transaction():
        changes = catalog.put_file(_record("a.py", "h2"), [first, edited])

    assert [chunk.id for _, chunk in changes.added] == [edited.id]
    assert len(changes.removed) == 1
    assert catalog.chunk_ids() == {first.id, edited.id}
    assert catalog.embedded_ids() == {first.id}  # the kept chunk keeps its vector
    assert catalog.vector_deletes() == [second.id]
    assert catalog.file_records()["a.py"].content_hash == "h2"


def test_remove_file_forgets_file_and_chunks(catalog):
    chunk = _chunk("gone.py", 1, "x = 1")
    with catalog.transaction():
        catalog.put_file(_record("gone.py"), [chunk])
    with catalog.transaction():
        removed = catalog.remove_file("gone.py")

    assert len(removed) == 1
    assert catalog.file_records() == {}
    assert catalog.chunk_count() == 0
    assert catalog.vector_deletes() == [chunk.id]


def test_vector_delete_is_dropped_when_the_chunk_comes_back(catalog):
    chunk = _chunk("a.py", 1, "x = 1")
    with catalog.transaction():
        catalog.put_file(_record("a.py"), [chunk])
    with catalog.transaction():
        catalog.remove_file("a.py")
    with catalog.transaction():
        catalog.put_file(_record("a.py"), [chunk])  # e.g. an undone deletion

    assert catalog.vector_deletes() == []


def test_interrupted_transaction_leaves_previous_state(catalog):
    with catalog.transaction():
        catalog.put_file(_record("a.py"), [_chunk("a.py", 1, "old = 1")])
    with pytest.raises(KeyboardInterrupt), catalog.transaction():
        catalog.put_file(_record("a.py", "h2"), [_chunk("a.py", 1, "new = 2")])
        raise KeyboardInterrupt

    texts = [chunk.text for chunk in catalog.get_chunks(list(catalog.chunk_ids())).values()]
    assert texts == ["old = 1"]
    assert catalog.file_records()["a.py"].content_hash == "h1"


def test_get_chunks_round_trips_every_field(catalog):
    chunk = Chunk("pkg/m.py", "python", 4, 6, "def f():\n    pass\n", "C.f", "# pkg/m.py\nclass C:",
                  defines=True)
    table = Chunk("pkg/m.py", "python", 8, 9, "X = {\n}", "C", "# pkg/m.py\nclass C:")
    with catalog.transaction():
        catalog.put_file(_record("pkg/m.py"), [chunk, table])

    assert catalog.get_chunks([chunk.id, table.id, "missing"]) == {chunk.id: chunk, table.id: table}


def test_a_catalog_from_before_the_defines_column_opens_and_reads(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE chunks (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, path TEXT NOT NULL,"
        " language TEXT NOT NULL, start_line INTEGER NOT NULL, end_line INTEGER NOT NULL,"
        " symbol TEXT, header TEXT NOT NULL, text TEXT NOT NULL, content_hash TEXT NOT NULL,"
        " embedded INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO chunks (id, path, language, start_line, end_line, symbol, header, text,"
        " content_hash) VALUES ('c1', 'a.py', 'python', 1, 2, 'f', 'a.py', 'def f():', 'h');"
    )
    old.commit()
    old.close()

    catalog = Catalog.open(path)
    try:
        assert catalog.get_chunks(["c1"])["c1"] == Chunk("a.py", "python", 1, 2, "def f():", "f", "a.py")
    finally:
        catalog.close()


def test_embedding_cache_keeps_only_used_content(catalog):
    used, unused = _chunk("a.py", 1, "a = 1"), _chunk("b.py", 1, "b = 2")
    vector = np.arange(4, dtype=np.float32)
    with catalog.transaction():
        catalog.put_file(_record("a.py"), [used])
        catalog.store_embeddings({used.content_hash: vector, unused.content_hash: vector})
        catalog.drop_unused_embeddings()

    cached = catalog.cached_embeddings([used.content_hash, unused.content_hash])
    assert list(cached) == [used.content_hash]
    np.testing.assert_array_equal(cached[used.content_hash], vector)


def test_pending_chunks_lists_unembedded_with_embed_text(catalog):
    a, b = _chunk("a.py", 1, "a = 1"), _chunk("a.py", 2, "b = 2")
    with catalog.transaction():
        catalog.put_file(_record("a.py"), [a, b])
        catalog.set_embedded([a.id])

    pending = catalog.pending_chunks(10)
    assert [(p.id, p.embed_text) for p in pending] == [(b.id, "a.py\nb = 2")]
    assert catalog.pending_count() == 1
