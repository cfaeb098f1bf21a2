"""The terminal REPL driven through prompt-toolkit's pipe input, as a user would type.

Output goes to a rich console on a StringIO; the model is the fake backend from conftest.
"""

from __future__ import annotations

import _thread
import io as stdio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from hybrid_llm.repl.cli import history_path, terminal_commands
from hybrid_llm.repl.loop import run_loop
from hybrid_llm.repl.session import Session
from tests.repl.conftest import FAKE_ANSWER, FakeBackend, FakeProvider, offline_config

CTRL_C, CTRL_D, ESC_ENTER, UP = "\x03", "\x04", "\x1b\r", "\x1b[A"


class Terminal:
    """A REPL on a pipe: `type` sends keys, `run` runs the loop until Ctrl-D."""

    def __init__(self, session: Session, pipe) -> None:
        self.pipe = pipe
        self.console_file = stdio.StringIO()
        console = Console(file=self.console_file, width=100, force_terminal=False)
        self.commands = terminal_commands(session, input=pipe, output=DummyOutput(), console=console)

    def run(self, keys: str) -> int:
        self.pipe.send_text(keys)
        return run_loop(self.commands.io, self.commands)

    @property
    def output(self) -> str:
        return self.console_file.getvalue()


@pytest.fixture
def terminal(session: Session) -> Iterator[Terminal]:
    with create_pipe_input() as pipe:
        yield Terminal(session, pipe)


def test_help_then_ctrl_d_quits(terminal: Terminal) -> None:
    assert terminal.run(f"/help\r{CTRL_D}") == 0
    assert "/code" in terminal.output and "/save" in terminal.output


def test_ctrl_c_at_the_prompt_clears_the_line(terminal: Terminal) -> None:
    terminal.run(f"half typed{CTRL_C}{CTRL_C}/help\r{CTRL_D}")
    assert "/code" in terminal.output
    assert terminal.commands.session.provider.backend.calls == []  # "half typed" was not sent


def test_alt_enter_makes_a_multi_line_request(terminal: Terminal) -> None:
    terminal.run(f"/code line one{ESC_ENTER}line two\r{CTRL_D}")
    assert terminal.commands.session.provider.backend.calls[-1][-1]["content"] == "line one\nline two"


def test_answer_is_rendered_and_sources_listed(terminal: Terminal) -> None:
    terminal.run(f"/code print hello\r{CTRL_D}")
    assert "print('hello')" in terminal.output


def test_history_persists_across_sessions(session: Session, repo: Path) -> None:
    with create_pipe_input() as pipe:
        Terminal(session, pipe).run(f"/code remember me\r{CTRL_D}")
    assert "/code remember me" in history_path().read_text()

    fresh = Session(offline_config(), repo, provider=FakeProvider())
    with create_pipe_input() as pipe:
        terminal = Terminal(fresh, pipe)
        terminal.run(f"{UP}\r{CTRL_D}")  # Up recalls the previous session's entry
    assert fresh.provider.backend.calls[-1][-1]["content"] == "remember me"


def _type_slowly(pipe, *keys: str) -> None:
    """Completion runs asynchronously, so give it time between keys, as a person would."""

    def feed() -> None:
        for key in keys:
            time.sleep(0.5)
            pipe.send_text(key)

    threading.Thread(target=feed, daemon=True).start()


def test_tab_completes_a_command(terminal: Terminal) -> None:
    _type_slowly(terminal.pipe, "/hel", "\t", "\r", CTRL_D)
    assert run_loop(terminal.commands.io, terminal.commands) == 0
    assert "/code" in terminal.output  # "/hel" + Tab became "/help", which ran


def test_tab_completes_a_path_relative_to_the_codebase(terminal: Terminal, repo: Path) -> None:
    terminal.commands.run("/code two blocks")
    _type_slowly(terminal.pipe, "/save 2 sr", "\t", "ut", "\t", "\r", "y\r", CTRL_D)
    run_loop(terminal.commands.io, terminal.commands)
    assert (repo / "src" / "util.py").read_text() == "x = 2\n"


def test_save_asks_and_refuses_on_no(terminal: Terminal, repo: Path) -> None:
    before = (repo / "src" / "util.py").read_text()
    terminal.run(f"/code something\r/save 1 src/util.py\rn\r{CTRL_D}")
    assert (repo / "src" / "util.py").read_text() == before
    assert "Overwrite src/util.py?" not in terminal.output  # asked on the prompt, not printed
    assert "not saved" in terminal.output and "-def greet(name):" in terminal.output


def test_save_overwrites_on_yes(terminal: Terminal, repo: Path) -> None:
    terminal.run(f"/code something\r/save 1 src/util.py\ry\r{CTRL_D}")
    assert (repo / "src" / "util.py").read_text() == "print('hello')\n"


def test_ctrl_c_during_generation_stops_it_and_keeps_the_partial_answer(repo: Path) -> None:
    """A real SIGINT-style interrupt (`_thread.interrupt_main`) arrives while the fake model is
    streaming slowly; the REPL cancels, keeps what was written, and goes on to the next command."""
    backend = FakeBackend(answer=" ".join(f"word{i}" for i in range(200)), delay=0.02)
    session = Session(offline_config(), repo, provider=FakeProvider(backend))

    def press_ctrl_c_once_streaming() -> None:
        backend.started.wait(10)
        time.sleep(0.2)
        _thread.interrupt_main()

    threading.Thread(target=press_ctrl_c_once_streaming, daemon=True).start()
    with create_pipe_input() as pipe:
        terminal = Terminal(session, pipe)
        started = time.monotonic()
        assert terminal.run(f"/code count\r/save 1 x.py\r{CTRL_D}") == 0
    answer = session.last_answer
    assert answer.cancelled
    assert 0 < len(answer.text.split()) < 150
    assert time.monotonic() - started < 3.5  # 200 words would take 4 s at this pace
    assert "stopped; the partial answer is kept" in terminal.output
    assert "the last answer has 0 code block(s)" in terminal.output  # the REPL went on


def test_fake_answer_shape_is_what_the_tests_assume() -> None:
    assert FAKE_ANSWER.count("```") == 4
