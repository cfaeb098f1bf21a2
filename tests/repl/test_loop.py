"""The read-eval loop: multi-line blocks, one-line errors, and surviving any input at all."""

from __future__ import annotations

import io as stdio
import logging
import random

import pytest

from hybrid_llm.repl.commands import Commands
from hybrid_llm.repl.io import PlainIO
from hybrid_llm.repl.loop import log_path, read_entry, run_loop, setup_logging
from hybrid_llm.repl.session import Session
from tests.repl.conftest import ScriptedIO


@pytest.fixture
def file_logging():
    """The loop's log file, removed from the root logger afterwards so tests do not leak it."""
    before = list(logging.getLogger().handlers)
    path = setup_logging()
    yield path
    for handler in logging.getLogger().handlers:
        if handler not in before:
            logging.getLogger().removeHandler(handler)
            handler.close()
    logging.captureWarnings(False)


def test_a_brace_block_is_one_entry() -> None:
    io = ScriptedIO(["{", "/code write", "  two lines", "}", "/help"])
    assert read_entry(io) == "/code write\n  two lines"
    assert read_entry(io) == "/help"


def test_an_unclosed_block_ends_at_end_of_input() -> None:
    assert read_entry(ScriptedIO(["{", "a", "b"])) == "a\nb"


def test_a_multi_line_code_request_reaches_the_model(commands: Commands, io: ScriptedIO) -> None:
    io.lines = ["{", "/code first line", "second line", "}"]
    assert run_loop(io, commands) == 0
    assert commands.session.provider.backend.calls[-1][-1]["content"] == "first line\nsecond line"


def test_errors_are_one_line_and_the_loop_goes_on(commands: Commands, io: ScriptedIO) -> None:
    io.lines = ["/nope", "/save 9 x.py", "/help"]
    assert run_loop(io, commands) == 0
    assert io.errors[0] == "unknown command /nope: type /help for the list"
    assert "no answer yet" in io.errors[1]
    assert any(line.startswith("/help") for line in io.output)


def test_an_unexpected_failure_goes_to_the_log_not_the_screen(
    commands: Commands, io: ScriptedIO, session: Session, file_logging, monkeypatch
) -> None:
    def broken() -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(session, "clear", broken)
    io.lines = ["/clear", "/help"]
    assert run_loop(io, commands) == 0
    assert io.errors == [f"RuntimeError: disk on fire second line (details in {log_path()})"]
    logged = file_logging.read_text()
    assert "Traceback" in logged and "disk on fire" in logged
    assert any(line.startswith("/help") for line in io.output)


def test_exit_and_end_of_input_both_end_with_status_zero(commands: Commands) -> None:
    assert run_loop(ScriptedIO(["/exit", "/help"]), commands) == 0
    assert run_loop(ScriptedIO([]), commands) == 0


def _fuzz_lines(rng: random.Random, count: int) -> list[bytes]:
    commands = ["/code", "/web", "/search", "/offline maybe", "/index", "/model", "/clear", "/save",
                "/good", "/bad", "/save 1", "/save x y", "/save 99 a.py", "/model nope", "/he", "/s",
                "/", "//", "/code\t", "/exi", "{", "}", "/index /nonexistent/path"]
    lines = []
    for _ in range(count):
        kind = rng.randrange(6)
        if kind == 0:
            line = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
        elif kind == 1:
            line = ("/" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_-é") for _ in range(rng.randrange(1, 12)))).encode()
        elif kind == 2:
            line = rng.choice(commands).encode()
        elif kind == 3:
            line = (rng.choice(["/code ", "", "/save 1 "]) + "x" * rng.choice([10_000, 100_000])).encode()
        elif kind == 4:
            line = rng.choice(commands).encode() + b" " + bytes(rng.randrange(32, 127) for _ in range(rng.randrange(0, 40)))
        else:
            line = b""
        lines.append(line.replace(b"\n", b" ").replace(b"/exit", b"/exi") + b"\n")
    return [line for line in lines if not line.strip().startswith((b"/exi", b"/e\n"))]


def test_fuzz_hundreds_of_random_lines_then_help_still_answers(
    session: Session, file_logging, offline
) -> None:
    """Random bytes, unknown commands, huge inputs and empty arguments through the same plain-text
    path a pipe uses; afterwards the REPL must still answer /help."""
    rng = random.Random(20261121)
    script = b"".join(_fuzz_lines(rng, 400)) + b"/help\n"
    out, err = stdio.StringIO(), stdio.StringIO()
    io = PlainIO(stdio.BytesIO(script), out, err)
    assert run_loop(io, Commands(io, session)) == 0
    assert out.getvalue().rstrip().endswith("Ctrl-D quits.")
    # Every error stayed on one line, and nothing unexpected happened.
    errors = [line for line in err.getvalue().splitlines() if line.startswith("error:")]
    assert errors and not [line for line in errors if "details in" in line]


def test_the_log_is_owner_only_and_redacts_keys_in_failing_commands(
    commands: Commands, io: ScriptedIO, session: Session, file_logging, monkeypatch
) -> None:
    token = "ghp_" + "x1Y2z3" * 6

    def broken() -> None:
        raise RuntimeError(f"cannot clear with token {token}")  # the traceback shows this line

    monkeypatch.setattr(session, "clear", broken)
    io.lines = ["/clear AKIAIOSFODNN7EXAMPLE"]
    run_loop(io, commands)
    logged = file_logging.read_text()
    assert "command failed" in logged and "[REDACTED:aws-access-key]" in logged
    assert "AKIAIOSFODNN7EXAMPLE" not in logged and token not in logged
    assert file_logging.stat().st_mode & 0o777 == 0o600
    assert file_logging.parent.stat().st_mode & 0o777 == 0o700
