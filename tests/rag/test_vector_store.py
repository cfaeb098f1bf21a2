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


def test_remote_store_round_trip(chroma_server):
    _exercise(VectorStore.remote(chroma_server, "code-remote-test"))


def test_remote_store_with_bad_url_is_a_user_error():
    with pytest.raises(UserError, match="chroma_url"):
        VectorStore.remote("localhost:8000", "code-x")
