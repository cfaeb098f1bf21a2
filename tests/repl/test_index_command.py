"""`/index` and retrieval through the REPL, with the real index and embedder on a tiny repo
(the model is the fake backend from conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid_llm.errors import UserError
from hybrid_llm.rag.index import CodeIndex
from hybrid_llm.repl import commands as commands_module
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


def test_index_refuses_the_filesystem_root_and_the_home_directory(
    repo: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # repo is tmp_path/repo: `..` climbs to home
    session = Session(offline_config(rag={"enabled": True}), repo, provider=FakeProvider())
    try:
        commands = Commands(ScriptedIO(confirm=True), session)
        with pytest.raises(UserError, match="is your home directory, not a codebase"):
            commands.run("/index ..")
        with pytest.raises(UserError, match="^/ is the filesystem root, not a codebase"):
            commands.run("/index ../../../../../../../../..")
        assert session.repo == repo.resolve()
    finally:
        session.close()


def test_index_of_a_very_big_tree_asks_first_with_the_count(repo: Path, tmp_path: Path, monkeypatch) -> None:
    """The limit (20,000 files) is lowered to 3 so the test writes 5 files, not 20,001."""
    monkeypatch.setattr(commands_module, "LARGE_CODEBASE_FILES", 3)
    big = tmp_path / "big"
    for number in range(5):
        (big / f"m{number}").mkdir(parents=True)
        (big / f"m{number}" / "mod.py").write_text(f"def f{number}():\n    return {number}\n")
    io = ScriptedIO(confirm=False)
    session = Session(offline_config(rag={"enabled": True}), repo, provider=FakeProvider())
    try:
        commands = Commands(io, session)
        commands.run(f"/index {big}")
        assert io.questions == [f"{big} has 5 files to index (more than 3); index them all?"]
        assert session.repo == repo.resolve() and not CodeIndex.exists(big, session.config)
        io.confirm = True
        commands.run(f"/index {big}")
        assert session.repo == big.resolve() and session.index_status.files == 5
        commands.run(f"/index {big}")  # indexed before: no second question
        assert len(io.questions) == 2
    finally:
        session.close()
