"""The slash commands, driven through `Commands.run` with a scripted io.

Generation uses the real `Coder` with a fake model backend (see conftest); files, the request
log, the network guard and the index are real.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from hybrid_llm.errors import UserError
from hybrid_llm.repl.commands import Commands, ExitRepl
from tests.repl.conftest import FAKE_ANSWER, ScriptedIO


def test_help_lists_every_command_with_its_docstring(commands: Commands, io: ScriptedIO) -> None:
    commands.run("/help")
    expected = ["/bad", "/clear", "/code", "/exit", "/good", "/help", "/index", "/model",
                "/offline", "/save", "/search", "/web"]
    assert commands.command_names() == expected
    for name in expected:
        line = next(line for line in io.output if line.startswith(name + " "))
        assert commands.help_text(name) in line and commands.help_text(name)


def test_unambiguous_prefix_runs_the_command(commands: Commands, io: ScriptedIO) -> None:
    commands.run("/he")
    assert any(line.startswith("/help") for line in io.output)


def test_ambiguous_prefix_lists_the_matches(commands: Commands) -> None:
    with pytest.raises(UserError, match=r"ambiguous command /s: /save, /search"):
        commands.run("/s x")


def test_unknown_command_is_a_one_line_error(commands: Commands) -> None:
    with pytest.raises(UserError, match=r"^unknown command /frobnicate: type /help"):
        commands.run("/frobnicate now")


@pytest.mark.parametrize("line", ["/code", "/code   ", "/web", "/search", "/save", "/save 1", "/save x y"])
def test_missing_arguments_say_how_to_use_the_command(commands: Commands, line: str) -> None:
    with pytest.raises(UserError, match="usage: /"):
        commands.run(line)


def test_code_streams_the_answer_and_keeps_it(commands: Commands, io: ScriptedIO) -> None:
    commands.run("/code print hello")
    assert io.streamed.replace(" ", "").startswith(FAKE_ANSWER.replace(" ", ""))
    assert io.streamed.endswith("<end>\n")
    assert commands.session.last_answer.text.strip() == FAKE_ANSWER.strip()
    assert "print hello" in json.dumps(commands.session.provider.backend.calls[-1])


def test_plain_text_continues_the_conversation(commands: Commands, io: ScriptedIO) -> None:
    commands.run("/code first question")
    commands.run("and a follow-up")
    messages = json.dumps(commands.session.provider.backend.calls[-1])
    assert "first question" in messages and "and a follow-up" in messages


def test_clear_forgets_the_conversation(commands: Commands, io: ScriptedIO) -> None:
    commands.run("/code first question")
    commands.run("/clear")
    commands.run("/code second question")
    messages = json.dumps(commands.session.provider.backend.calls[-1])
    assert "second question" in messages and "first question" not in messages
    assert "conversation cleared" in io.output


def test_save_writes_the_nth_code_block(commands: Commands, io: ScriptedIO, repo: Path) -> None:
    commands.run("/code two blocks please")
    commands.run("/save 2 out/x.py")
    assert (repo / "out" / "x.py").read_text() == "x = 2\n"
    assert io.questions == []


def test_save_refuses_to_overwrite_without_confirmation(commands: Commands, io: ScriptedIO, repo: Path) -> None:
    target = repo / "src" / "util.py"
    before = target.read_text()
    commands.run("/code replace util")
    commands.run("/save 1 src/util.py")
    assert target.read_text() == before
    assert io.questions == ["Overwrite src/util.py?"]
    assert "-def greet(name):" in io.diffs[0] and "+print('hello')" in io.diffs[0]
    assert "not saved" in io.output


def test_save_overwrites_after_confirmation(commands: Commands, io: ScriptedIO, repo: Path) -> None:
    io.confirm = True
    commands.run("/code replace util")
    commands.run("/save 1 src/util.py")
    assert (repo / "src" / "util.py").read_text() == "print('hello')\n"


def test_save_without_an_answer_or_with_a_bad_number(commands: Commands) -> None:
    with pytest.raises(UserError, match="no answer yet"):
        commands.run("/save 1 a.py")
    commands.run("/code something")
    with pytest.raises(UserError, match=r"2 code block\(s\); N must be 1..2"):
        commands.run("/save 3 a.py")


def test_model_lists_and_switches(commands: Commands, io: ScriptedIO) -> None:
    commands.run("/model")
    assert any("qwen2.5-coder-1.5b-instruct-q4_k_m" in line for line in io.output)
    commands.run("/model qwen2.5-coder-3b-instruct-q4_k_m")
    assert commands.session.provider.switched_to == ["qwen2.5-coder-3b-instruct-q4_k_m"]
    io.output.clear()
    commands.run("/model")
    assert any(line.startswith("* qwen2.5-coder-3b") for line in io.output)
    with pytest.raises(UserError, match="unknown model 'nope'"):
        commands.run("/model nope")


def test_good_and_bad_rate_the_last_answer_in_the_request_log(commands: Commands, io: ScriptedIO) -> None:
    from hybrid_llm.finetune.request_log import RequestLog

    with pytest.raises(UserError, match="no answer yet"):
        commands.run("/good")
    commands.run("/code something")
    commands.run("/bad")
    entries = list(RequestLog.from_config(commands.session.config).entries())
    assert [entry.label for entry in entries] == ["bad"]
    assert "rated the last answer bad" in io.output


def test_exit_ends_the_loop(commands: Commands) -> None:
    with pytest.raises(ExitRepl):
        commands.run("/exit")


@pytest.mark.parametrize("line", ["/web how do I parse toml", "/search tomllib"])
def test_web_and_search_refuse_while_offline_without_touching_the_client(
    commands: Commands, search_client, offline, line: str
) -> None:
    with pytest.raises(UserError, match=r"offline; type /offline to go online"):
        commands.run(line)
    assert search_client.queries == []
    assert commands.session._researcher is None  # nothing network-capable was even built


def test_offline_toggles_the_real_guard(commands: Commands, io: ScriptedIO, offline) -> None:
    commands.run("/offline")
    assert not offline.is_offline()
    assert io.output[-1].startswith("ONLINE")
    commands.run("/offline")
    assert offline.is_offline()
    assert io.output[-1].startswith("OFFLINE")
    commands.run("/offline off")
    commands.run("/offline off")
    assert not offline.is_offline()
    with pytest.raises(UserError, match=r"usage: /offline \[on\|off\]"):
        commands.run("/offline maybe")


def test_search_online_sends_exactly_the_query_and_lists_results(
    commands: Commands, io: ScriptedIO, search_client, offline
) -> None:
    commands.run("/offline off")
    commands.run("/search   tomllib load example ")
    commands.run("/search second query")
    assert search_client.queries == ["tomllib load example", "second query"]
    text = io.text
    assert "1. Example page" in text and "http://127.0.0.1:9/example" in text
    assert text.count("local-test-engine") == 1  # the engine is named once per session


def test_web_online_reports_failed_pages_and_still_answers(
    commands: Commands, io: ScriptedIO, search_client, offline
) -> None:
    """The result page is on a closed loopback port, so fetching it fails: one warning line,
    then the answer is written from what there is (the local code)."""
    commands.run("/offline off")
    commands.run("/web print hello")
    assert search_client.queries == ["print hello"]
    assert len(io.warnings) == 1 and "127.0.0.1" in io.warnings[0]
    assert commands.session.last_answer.text.strip() == FAKE_ANSWER.strip()


def _answered(commands: Commands) -> None:
    commands.run("/code two blocks please")


@pytest.mark.parametrize("typed", ["../x.py", "{outside}/x.py", "~/x.py", "linked/x.py"])
def test_save_outside_the_codebase_asks_naming_the_real_target(
    commands: Commands, io: ScriptedIO, repo: Path, tmp_path: Path, monkeypatch, typed: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.setenv("HOME", str(outside))
    (repo / "linked").symlink_to(outside)
    expected = (tmp_path / "x.py") if typed == "../x.py" else outside / "x.py"
    _answered(commands)

    commands.run(f"/save 1 {typed.format(outside=outside)}")
    assert io.questions == [f"{expected} is outside the codebase {repo}; write it there?"]
    assert not expected.exists() and "not saved" in io.output

    io.confirm = True
    commands.run(f"/save 1 {typed.format(outside=outside)}")
    assert expected.read_text() == "print('hello')\n"


def test_save_never_follows_a_dangling_link(commands: Commands, io: ScriptedIO, repo: Path, tmp_path: Path) -> None:
    (repo / "dangling.py").symlink_to(tmp_path / "created-outside.py")
    io.confirm = True
    _answered(commands)
    with pytest.raises(UserError, match="does not exist; /save does not follow it"):
        commands.run("/save 1 dangling.py")
    assert not (tmp_path / "created-outside.py").exists()


def test_overwrite_question_names_the_file_behind_a_link(commands: Commands, io: ScriptedIO, repo: Path) -> None:
    (repo / "alias.py").symlink_to(repo / "src" / "util.py")
    _answered(commands)
    commands.run("/save 1 alias.py")
    assert io.questions == ["Overwrite src/util.py (through the link alias.py)?"]
    assert (repo / "alias.py").is_symlink()


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_save_refuses_fifos_and_devices_without_reading_them(
    commands: Commands, io: ScriptedIO, repo: Path, kind: str
) -> None:
    """A FIFO made the diff read hang forever and /dev/zero read without end; run in a thread
    so a regression fails the test instead of hanging the suite."""
    if kind == "fifo":
        os.mkfifo(repo / "src" / "fifo.py")
    typed, expected = ("src/fifo.py", "a FIFO") if kind == "fifo" else ("/dev/zero", "a character device")
    io.confirm = True
    _answered(commands)
    outcome: list[BaseException] = []

    def save() -> None:
        try:
            commands.run(f"/save 1 {typed}")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=save, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "/save blocked on a non-regular file"
    assert isinstance(outcome[0], UserError) and f"is {expected}; /save writes only regular files" in str(outcome[0])


def test_save_over_a_huge_file_asks_without_reading_it_all(commands: Commands, io: ScriptedIO, repo: Path) -> None:
    big = repo / "big.py"
    big.write_bytes(b"x = 1\n" * 400_000)
    _answered(commands)
    commands.run("/save 1 big.py")
    assert io.warnings == ["big.py has 2,400,000 bytes: too large to show a diff"]
    assert io.questions == ["Overwrite big.py?"] and io.diffs == []


def test_code_lists_the_retrieved_sources_it_left_out_as_not_used(
    repo: Path, provider, search_client, io: ScriptedIO
) -> None:
    from hybrid_llm.config import Config
    from hybrid_llm.repl.session import Session

    # Retrieval on (the real index and embedder), the shipped relevance gate.
    session = Session(Config.model_validate({"generation": {"max_tokens": 256}}), repo, provider=provider,
                      search_client=search_client)
    commands = Commands(io, session)
    commands.run("/code write a function that reverses a singly linked list in place")

    title = io.output.index("Not used (name a file in your request to include it):")
    assert "Sources:" not in io.output
    assert io.output[title + 1].startswith("  src/util.py:1-")
    prompt = commands.session.provider.backend.calls[-1][-1]["content"]
    assert "def greet" not in prompt

    commands.run("/code the same, in the style of util.py")

    assert "Sources:" in io.output[title + 2:]
    assert "def greet" in commands.session.provider.backend.calls[-1][-1]["content"]
    session.close()
