"""`/index` and retrieval through the REPL, with the real index and embedder on a tiny repo
(the model is the fake backend from conftest)."""

from __future__ import annotations

from pathlib import Path

from hybrid_llm.repl.commands import Commands
from hybrid_llm.repl.session import Session
from tests.repl.conftest import FakeProvider, ScriptedIO, offline_config


def test_index_then_code_lists_the_retrieved_file_as_a_source(repo: Path) -> None:
    io = ScriptedIO()
    session = Session(offline_config(rag={"enabled": True}), repo, provider=FakeProvider())
    try:
        commands = Commands(io, session)
        commands.run("/index")
        assert io.output[-1].startswith(f"indexed {repo}: ")
        assert io.status_lines[0] == f"indexing {repo}…"
        assert session.index_status.files >= 1 and session.index_status.chunks >= 1
        assert not session.index_status.stale

        commands.run("/code call greet for ada")
        sources = io.output[io.output.index("Sources:") + 1 :]
        assert "  src/util.py:1-2" in sources
        prompt = session.provider.backend.calls[-1][-1]["content"]
        assert "src/util.py:1-2" in prompt and "def greet(name)" in prompt
    finally:
        session.close()


def test_index_path_switches_the_codebase(repo: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "tool.py").write_text("def shout(text):\n    return text.upper()\n")
    io = ScriptedIO()
    session = Session(offline_config(rag={"enabled": True}), repo, provider=FakeProvider())
    try:
        Commands(io, session).run(f"/index {other}")
        assert session.repo == other.resolve()
        assert session.index_status.files == 1
    finally:
        session.close()


def test_switching_codebases_and_back_keeps_answering(repo: Path) -> None:
    """The red-team repro: an answer, /index a subdirectory, /index back, then a request failed
    with "Cannot operate on a closed database" until the REPL was restarted."""
    io = ScriptedIO()
    session = Session(offline_config(rag={"enabled": True}), repo, provider=FakeProvider())
    try:
        commands = Commands(io, session)
        for line in ["/code call greet", "/index src", f"/index {repo}", "/code call greet again"]:
            commands.run(line)
        assert session.repo == repo.resolve()
        sources = io.output[len(io.output) - 1 - io.output[::-1].index("Sources:") + 1 :]
        assert "  src/util.py:1-2" in sources
    finally:
        session.close()
