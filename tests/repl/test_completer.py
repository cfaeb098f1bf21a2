"""Tab completion, derived from the `Commands` methods."""

from __future__ import annotations

from pathlib import Path

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from hybrid_llm.repl.commands import Commands
from hybrid_llm.repl.completer import CommandCompleter


def complete(commands: Commands, text: str) -> list[str]:
    found = CommandCompleter(commands).get_completions(Document(text), CompleteEvent(completion_requested=True))
    return [completion.text for completion in found]


def test_command_names_complete_from_a_prefix(commands: Commands) -> None:
    assert complete(commands, "/s") == ["/save", "/search"]
    assert complete(commands, "/") == commands.command_names()
    assert complete(commands, "/zz") == []


def test_completion_shows_the_help_text(commands: Commands) -> None:
    found = list(CommandCompleter(commands).get_completions(Document("/cl"), CompleteEvent()))
    assert found[0].display_meta_text == commands.help_text("/clear")


def test_plain_text_gets_no_completion(commands: Commands) -> None:
    assert complete(commands, "write a parser") == []


def test_model_names_complete(commands: Commands) -> None:
    assert complete(commands, "/model qwen2.5-coder-3") == ["qwen2.5-coder-3b-instruct-q4_k_m"]
    assert complete(commands, "/mo qwen2.5-coder-7") == ["qwen2.5-coder-7b-instruct-q4_k_m"]  # prefix too


def test_offline_arguments_complete(commands: Commands) -> None:
    assert complete(commands, "/offline o") == ["on", "off"]


def test_paths_complete_relative_to_the_codebase(commands: Commands, repo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # not the codebase: completion must not depend on the cwd
    (repo / ".git").mkdir()
    assert complete(commands, "/index s") == ["src/"]
    assert complete(commands, "/index ") == ["src/"]  # directories only, hidden ones left out
    assert complete(commands, "/index .") == [".git/"]  # unless a dot is typed
    assert complete(commands, "/save 1 src/u") == ["src/util.py"]
    assert complete(commands, "/save 1 R") == ["README.md"]
    assert complete(commands, "/save 1 nowhere/x") == []


def test_save_offers_code_block_numbers_of_the_last_answer(commands: Commands) -> None:
    commands.run("/code two blocks")
    assert complete(commands, "/save ")[:2] == ["1", "2"]
