"""How commands talk to the user: the `ReplIO` protocol, and its plain-text implementation.

Commands never print. They call `tool_output`, `tool_error`, `confirm_ask` and friends on an io
object (as in Aider), so the terminal is one implementation (`terminal.TerminalIO`), scripts
get `PlainIO`, and tests pass their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import BinaryIO, Protocol, TextIO


class AnswerStream(Protocol):
    """Shows an answer while it is generated; `finish` is called once, even after an error."""

    def feed(self, token: str) -> None: ...

    def finish(self) -> None: ...


class StatusLine(Protocol):
    """A transient line saying what is going on (loading, indexing); `update` replaces it."""

    def update(self, message: str) -> None: ...


class ReplIO(Protocol):
    def read_line(self, prompt: str) -> str:
        """One line (or a multi-line entry) of input; EOFError at end, KeyboardInterrupt on Ctrl-C."""
        ...

    def tool_output(self, *messages: str) -> None: ...

    def tool_warning(self, message: str) -> None: ...

    def tool_error(self, message: str) -> None: ...

    def confirm_ask(self, question: str, default: bool = False) -> bool: ...

    def show_diff(self, diff: str) -> None: ...

    def answer_stream(self) -> AnswerStream: ...

    def status(self, message: str) -> AbstractContextManager[StatusLine]: ...


def is_yes(reply: str, default: bool) -> bool:
    reply = reply.strip().lower()
    if not reply:
        return default
    return reply in ("y", "yes")


class _PlainAnswerStream:
    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._ended_with_newline = True

    def feed(self, token: str) -> None:
        if token:
            self._out.write(token)
            self._out.flush()
            self._ended_with_newline = token.endswith("\n")

    def finish(self) -> None:
        if not self._ended_with_newline:
            self._out.write("\n")
        self._out.flush()


class _PlainStatusLine:
    """Progress for logs: at most one line a second on stderr, so CI output stays readable."""

    def __init__(self, err: TextIO, message: str) -> None:
        self._err = err
        self._last = 0.0
        self.update(message)

    def update(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last >= 1.0:
            self._err.write(f"{message}\n")
            self._err.flush()
            self._last = now


class PlainIO:
    """For stdin that is not a terminal: read lines, print plain text, no colours, no prompt.

    Input is read as bytes and decoded leniently, because scripts pipe in whatever they have
    and an invalid byte must not end the session. Answers and results go to stdout; errors,
    warnings and progress to stderr, so `hybrid-llm < script > answers.md` keeps only answers.
    A question (`confirm_ask`) is printed and answered by the next input line.
    """

    def __init__(self, stdin: BinaryIO, stdout: TextIO, stderr: TextIO) -> None:
        self._stdin = stdin
        self._out = stdout
        self._err = stderr

    def read_line(self, prompt: str) -> str:
        raw = self._stdin.readline()
        if not raw:
            raise EOFError
        return raw.decode("utf-8", errors="replace").rstrip("\r\n")

    def tool_output(self, *messages: str) -> None:
        for message in messages:
            self._out.write(f"{message}\n")
        self._out.flush()

    def tool_warning(self, message: str) -> None:
        self._err.write(f"warning: {message}\n")
        self._err.flush()

    def tool_error(self, message: str) -> None:
        self._err.write(f"error: {message}\n")
        self._err.flush()

    def confirm_ask(self, question: str, default: bool = False) -> bool:
        hint = "(Y/n)" if default else "(y/N)"
        self._out.write(f"{question} {hint} ")
        self._out.flush()
        try:
            reply = self.read_line("")
        except EOFError:
            reply = ""
        self._out.write("\n")
        return is_yes(reply, default)

    def show_diff(self, diff: str) -> None:
        self._out.write(diff if diff.endswith("\n") else diff + "\n")
        self._out.flush()

    def answer_stream(self) -> AnswerStream:
        return _PlainAnswerStream(self._out)

    @contextmanager
    def status(self, message: str) -> Iterator[StatusLine]:
        yield _PlainStatusLine(self._err, message)
