"""Keyword search before the vectors, vectors in stoppable rounds (`update(embed=False)` and
`embed_pending`), on real files with the real chunker, embedder, Chroma and SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid_llm.config import Config
from hybrid_llm.rag.embedder import default_embedder
from hybrid_llm.rag.index import CodeIndex
from hybrid_llm.rag.retriever import HybridRetriever

FUNCTIONS = 40


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    for number in range(FUNCTIONS):
        (root / "pkg" / f"mod{number}.py").write_text(
            f"def compute_value_{number}(value):\n"
            f"    \"\"\"Scale value by {number} for report {number}.\"\"\"\n"
            f"    return value * {number}\n"
        )
    (root / "pkg" / "discount.py").write_text(
        "def apply_discount(price, percent):\n"
        "    \"\"\"Reduce price by percent, rounded to cents.\"\"\"\n"
        "    return round(price * (1 - percent / 100), 2)\n"
    )
    return root


def test_keyword_search_serves_before_any_vector_then_dense_joins(repo: Path) -> None:
    config = Config()
    with CodeIndex.open(repo, config, embedder=default_embedder()) as index:
        summary = index.update(embed=False)
        assert summary.chunks == FUNCTIONS + 1
        assert summary.chunks_pending == summary.chunks
        assert index.vector_progress() == (0, summary.chunks)

        retriever = HybridRetriever(index, config)
        found = retriever.retrieve("apply_discount to a price", k=3)
        assert found[0].chunk.path == "pkg/discount.py"
        assert found[0].sources == ("keyword",)  # no vectors yet: keyword search alone

        asked: list[bool] = []

        def stop_after_two_rounds() -> bool:  # asked before each round
            asked.append(True)
            return len(asked) > 2

        left = index.embed_pending(should_stop=stop_after_two_rounds, round_size=8)
        assert index.vector_progress()[0] == 16  # two rounds of 8, each kept when it stopped
        assert left == summary.chunks - 16

        assert index.embed_pending(should_stop=lambda: False) == 0
        assert index.vector_progress() == (summary.chunks, summary.chunks)
        assert index._vector_store().ids() == index._catalog.chunk_ids()
        assert not index.status().stale
        found = retriever.retrieve("reduce a price by a percentage", k=3)
        assert found[0].chunk.path == "pkg/discount.py" and "dense" in found[0].sources


def test_a_later_full_update_finishes_what_the_background_left(repo: Path) -> None:
    config = Config()
    with CodeIndex.open(repo, config, embedder=default_embedder()) as index:
        index.update(embed=False)
        index.embed_pending(should_stop=lambda: True)  # stopped before its first round
        assert index.vector_progress()[0] == 0
        assert index.status().stale
        index.update()
        assert index.vector_progress() == (FUNCTIONS + 1, FUNCTIONS + 1)
        assert not index.status().stale
