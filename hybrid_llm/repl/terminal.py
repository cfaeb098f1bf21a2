"""The terminal implementation of `ReplIO`: prompt-toolkit for input, rich for output.

Input habits: persistent history, tab completion, Alt-Enter / Esc-Enter for a new line, a
bottom toolbar refreshed twice a second, Ctrl-C clears the line and Ctrl-D quits (prompt-toolkit
raises KeyboardInterrupt / EOFError for those, and the loop acts on them).

Each keystroke is handed to the type-ahead (`typeahead.TypeAhead`), which prepares the request
on its own thread; it is paused from Enter until the next prompt, so commands own the model.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.completion import Completer
from prompt_toolkit.history import FileHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.output import Output
from rich.console import Console
from rich.markup import escape

from hybrid_llm.repl.io import AnswerStream, StatusLine, is_yes
from hybrid_llm.repl.typeahead import TypeAhead

TOOLBAR_REFRESH_S = 0.5


def _key_bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    return bindings


class TerminalIO:
    """`ReplIO` on a terminal. `input`/`output`/`console` are injectable for tests."""

    def __init__(
        self,
        history_path: Path,
        *,
        input: Input | None = None,
        output: Output | None = None,
        console: Console | None = None,
    ) -> None:
        self.console = console or Console()
        self.completer: Completer | None = None
        self.toolbar: Callable[[], str] | None = None
        self.on_first_prompt: Callable[[], None] | None = None
        self.typeahead: TypeAhead | None = None
        history_path.parent.mkdir(parents=True, exist_ok=True)
        self._prompt = PromptSession(
            history=FileHistory(str(history_path)),
            key_bindings=_key_bindings(),
            input=input,
            output=output,
            complete_while_typing=False,
            refresh_interval=TOOLBAR_REFRESH_S,
        )
        self._question = PromptSession(input=input, output=output)
        self._prompt.app.after_render += self._after_render
        self._prompt.default_buffer.on_text_changed += self._text_changed

    def _text_changed(self, buffer: Buffer) -> None:
        if self.typeahead is not None:
            self.typeahead.text_changed(buffer.text)

    def _after_render(self, app: object) -> None:
        # Slow start-up work (model, index) waits until the prompt is on screen, so it cannot
        # delay it by competing for the interpreter while prompt-toolkit draws.
        callback, self.on_first_prompt = self.on_first_prompt, None
        if callback is not None:
            callback()

    def read_line(self, prompt: str) -> str:
        typeahead = self.typeahead
        if typeahead is not None:
            typeahead.resume()
        try:
            return self._prompt.prompt(
                prompt,
                completer=self.completer,
                bottom_toolbar=self.toolbar,
                prompt_continuation=lambda width, line_number, soft_wrap: ". ".rjust(width),
            )
        except KeyboardInterrupt:
            if typeahead is not None:
                typeahead.drop()
            raise
        finally:
            if typeahead is not None:
                typeahead.pause()  # the entry's command owns the model from here

    def tool_output(self, *messages: str) -> None:
        for message in messages:
            self.console.print(escape(message), highlight=False, soft_wrap=True)

    def tool_warning(self, message: str) -> None:
        self.console.print(f"[yellow]{escape(message)}[/]", highlight=False)

    def tool_error(self, message: str) -> None:
        self.console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)

    def confirm_ask(self, question: str, default: bool = False) -> bool:
        hint = "(Y/n)" if default else "(y/N)"
        try:
            reply = self._question.prompt(f"{question} {hint} ")
        except (EOFError, KeyboardInterrupt):
            return False
        return is_yes(reply, default)

    def show_diff(self, diff: str) -> None:
        from rich.syntax import Syntax

        self.console.print(Syntax(diff, "diff", theme="monokai", background_color="default"))

    def answer_stream(self) -> AnswerStream:
        from hybrid_llm.repl.markdown_stream import MarkdownStream  # rich.markdown is slow to import

        return MarkdownStream(self.console)

    def status(self, message: str) -> AbstractContextManager[StatusLine]:
        return _RichStatus(self.console, message)


class _RichStatus:
    """A spinner line; `update` replaces its text (rich's Status names the argument `status`)."""

    def __init__(self, console: Console, message: str) -> None:
        self._status = console.status(escape(message))

    def __enter__(self) -> _RichStatus:
        self._status.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._status.stop()

    def update(self, message: str) -> None:
        self._status.update(escape(message))
