"""Requests on a new codebase do not wait for embeddings: keyword search serves them while the
REPL computes the vectors between requests. Real index, embedder and Chroma on a small real
repo; the model is the fake backend from conftest (this is about retrieval, not generation)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from hybrid_llm.config import Config
from hybrid_llm.rag.index import CodeIndex
from hybrid_llm.repl.background import BackgroundEmbedder, Foreground
from hybrid_llm.repl.commands import Commands
from hybrid_llm.repl.session import Session
from hybrid_llm.repl.toolbar import toolbar_text
from tests.repl.conftest import FakeBackend, FakeProvider, ScriptedIO, offline_config

FUNCTIONS = 120


class VectorsAtRequest(FakeBackend):
    """Remembers how many chunks had vectors when each request reached the model."""

    def __init__(self, session_box: list[Session]) -> None:
        super().__init__()
        self._session_box = session_box
        self.vectors_seen: list[tuple[int, int]] = []

    def stream(self, messages, **options):
        self.vectors_seen.append(self._session_box[0].vectors)
        return super().stream(messages, **options)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    (root / "pkg").mkdir(parents=True)
    for number in range(FUNCTIONS):
        (root / "pkg" / f"report{number}.py").write_text(
            f"def report_line_{number}(rows):\n"
            f"    \"\"\"Format row {number} of the monthly report.\"\"\"\n"
            f"    return str(rows[{number}])\n"
        )
    (root / "pkg" / "pricing.py").write_text(
        "def apply_discount(price, percent):\n"
        "    \"\"\"Reduce price by percent, rounded to cents.\"\"\"\n"
        "    return round(price * (1 - percent / 100), 2)\n"
    )
    return root


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_first_request_is_served_by_keyword_search_and_vectors_follow(shop: Path, offline) -> None:
    box: list[Session] = []
    backend = VectorsAtRequest(box)
    session = Session(offline_config(rag={"enabled": True}), shop, provider=FakeProvider(backend))
    box.append(session)
    io = ScriptedIO()
    try:
        session.start_background_work()
        Commands(io, session).run("/code use apply_discount on 80.0")

        assert backend.vectors_seen == [(0, FUNCTIONS + 1)]  # answered before any vector
        assert "pkg/pricing.py:1-3" in backend.calls[-1][-1]["content"]
        assert "  pkg/pricing.py:1-3" in io.output
        assert "embedding" in toolbar_text(session)

        _wait_for(lambda: session.vectors == (FUNCTIONS + 1, FUNCTIONS + 1))
        assert not session.embedding_in_background
        Commands(io, session).run("/clear")  # else the chunk shown before is not repeated
        Commands(io, session).run("/code reduce a price by a percentage")
        assert backend.vectors_seen[-1] == (FUNCTIONS + 1, FUNCTIONS + 1)
        assert "pkg/pricing.py:1-3" in backend.calls[-1][-1]["content"]
        assert "chunks, fresh" in toolbar_text(session)
    finally:
        session.close()


def test_quitting_keeps_what_was_embedded(shop: Path) -> None:
    session = Session(offline_config(rag={"enabled": True}), shop, provider=FakeProvider())
    session.start_background_work()
    io = ScriptedIO()
    Commands(io, session).run("/index")
    assert f"{FUNCTIONS + 1} chunks are embedded in the background" in io.output[-1]
    _wait_for(lambda: session.vectors and session.vectors[0] > 0)
    session.close()  # mid-way: the round under way finishes, nothing after it starts
    with CodeIndex.open(shop, Config()) as index:
        embedded, total = index.vector_progress()
        assert 0 < embedded and total == FUNCTIONS + 1
        assert len(index._vector_store().ids()) == embedded  # no vector without its flag
        index.update()
        assert index.vector_progress() == (total, total)


def test_background_rounds_wait_while_the_foreground_is_busy() -> None:
    foreground = Foreground()
    rounds: list[float] = []
    stopped_by_foreground = threading.Event()

    def embed_rounds(should_stop) -> int:
        rounds.append(time.monotonic())
        while not should_stop():
            time.sleep(0.01)
        stopped_by_foreground.set()
        return 1

    embedder = BackgroundEmbedder(embed_rounds, foreground, idle_grace=0.2)
    with foreground.busy():
        embedder.wake()
        time.sleep(0.5)
        assert rounds == []  # nothing runs while the user waits for something
    _wait_for(lambda: rounds, timeout=5)
    with foreground.busy():  # a request starts: the running rounds stop at once
        assert stopped_by_foreground.wait(1)
    embedder.close()
