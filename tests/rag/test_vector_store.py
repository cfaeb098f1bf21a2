"""Chroma vector store: a real PersistentClient on disk, and a real `chroma run` server."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_llm.errors import UserError
from hybrid_llm.rag.vector_store import VectorStore, collection_name


def _unit_vectors(count: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _exercise(store: VectorStore) -> None:
    vectors = _unit_vectors(5)
    ids = [f"chunk{i}" for i in range(5)]
    store.upsert(ids, vectors)
    store.upsert(ids[:1], vectors[:1])  # idempotent: a resumed update re-sends vectors

    best_id, similarity = store.query(vectors[3], 2)[0]
    assert best_id == "chunk3"
    assert similarity == pytest.approx(1.0, abs=1e-4)

    store.delete(["chunk3", "never-stored"])
    assert store.ids() == {"chunk0", "chunk1", "chunk2", "chunk4"}
    assert "chunk3" not in [chunk_id for chunk_id, _ in store.query(vectors[3], 4)]

    store.reset()
    assert store.count() == 0
    assert store.query(vectors[0], 3) == []


def test_collection_names_are_valid_for_chroma():
    assert collection_name("my repo!-1a2b3c") == "code-my-repo-1a2b3c"
    assert collection_name("..x..") == "code-x"


def test_persistent_store_round_trip(tmp_path):
    _exercise(VectorStore.persistent(tmp_path / "chroma", "code-test"))


def test_persistent_store_survives_reopening(tmp_path):
    vectors = _unit_vectors(3, seed=1)
    VectorStore.persistent(tmp_path / "chroma", "code-test").upsert(["a", "b", "c"], vectors)
    reopened = VectorStore.persistent(tmp_path / "chroma", "code-test")
    assert reopened.ids() == {"a", "b", "c"}


def test_a_query_finds_the_true_nearest_vectors(tmp_path):
    """Chroma's graph search is approximate; searched as widely as we configure it, the 10
    nearest of 4,000 vectors come back as an exact search finds them (at Chroma's default
    breadth 9 in 10 of them on these random vectors, which are harder than real embeddings)."""
    vectors = _unit_vectors(4000, seed=2)
    store = VectorStore.persistent(tmp_path / "chroma", "code-test")
    store.upsert([str(i) for i in range(len(vectors))], vectors)
    queries = vectors[:100] + _unit_vectors(100, seed=3) / 40
    found = 0
    for query in queries:
        query /= np.linalg.norm(query)
        exact = {str(i) for i in np.argsort(-(vectors @ query))[:10]}
        found += len(exact & {chunk_id for chunk_id, _ in store.query(query, 10)})
    assert found / (10 * len(queries)) >= 0.98


def test_an_index_made_with_a_narrower_search_is_searched_widely_from_its_next_opening(tmp_path):
    import chromadb

    from hybrid_llm.rag.vector_store import SEARCH_BREADTH, _settings

    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=_settings())
    client.get_or_create_collection("code-old", embedding_function=None,
                                    configuration={"hnsw": {"space": "cosine", "ef_search": 100}})
    VectorStore.persistent(tmp_path / "chroma", "code-old").upsert(["a"], _unit_vectors(1))
    hnsw = client.get_collection("code-old").configuration_json["hnsw"]
    assert hnsw["ef_search"] == SEARCH_BREADTH and hnsw["space"] == "cosine"


def test_remote_store_round_trip(chroma_server):
    _exercise(VectorStore.remote(chroma_server, "code-remote-test"))


def test_remote_store_with_bad_url_is_a_user_error():
    with pytest.raises(UserError, match="chroma_url"):
        VectorStore.remote("localhost:8000", "code-x")
