"""The bottom toolbar's text."""

from __future__ import annotations

from types import SimpleNamespace

from hybrid_llm.repl.session import Session
from hybrid_llm.repl.toolbar import toolbar_text
from tests.repl.conftest import FakeProvider, offline_config


def test_loading_model_offline_and_unknown_index(session: Session, offline) -> None:
    session._provider.ready = False
    session.config = offline_config(rag={"enabled": True})
    assert toolbar_text(session) == "fake-model (loading…) | OFFLINE (no OS sandbox: layers 1-2) | index: unknown"


def test_ready_online_fresh_index_and_speed(session: Session, offline) -> None:
    offline.disable()
    session.config = offline_config(rag={"enabled": True})
    session.index_status = SimpleNamespace(files=12, chunks=80, stale=False)
    session.tokens_per_second = 11.26
    assert toolbar_text(session) == "fake-model | ONLINE (no OS sandbox: layers 1-2) | index: 12 files, 80 chunks, fresh | 11.3 tok/s"


def test_stale_and_empty_index(session: Session, offline) -> None:
    session.config = offline_config(rag={"enabled": True})
    session.index_status = SimpleNamespace(files=3, chunks=9, stale=True)
    assert "index: 3 files, 9 chunks, stale (/index)" in toolbar_text(session)
    session.index_status = SimpleNamespace(files=0, chunks=0, stale=True)
    assert "index: empty (/index)" in toolbar_text(session)


def test_a_model_that_failed_to_load_says_so(session: Session, offline) -> None:
    class Broken(FakeProvider):
        def get(self, timeout=None):
            raise RuntimeError("no such file")

    session._provider = Broken()
    assert toolbar_text(session).startswith("fake-model (not loaded: /model says why)")
    assert session.model_problem == "no such file"


def test_speed_comes_from_the_answer(commands, session: Session) -> None:
    commands.run("/code hello")
    assert session.tokens_per_second and session.tokens_per_second > 0
