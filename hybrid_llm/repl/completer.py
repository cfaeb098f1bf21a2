"""Tab completion for prompt-toolkit, derived entirely from `Commands`."""

from __future__ import annotations

from collections.abc import Iterator

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from hybrid_llm.errors import UserError
from hybrid_llm.repl.commands import COMMAND_PREFIX, Commands


class CommandCompleter(Completer):
    """Completes command names, then each command's argument through `completions_<name>`."""

    def __init__(self, commands: Commands) -> None:
        self._commands = commands

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor
        if not text.startswith(COMMAND_PREFIX) or "\n" in text:
            return
        word, space, rest = text.partition(" ")
        if not space:
            for name in self._commands.matching_commands(word):
                yield Completion(name, start_position=-len(word), display_meta=self._commands.help_text(name))
            return
        try:
            command = self._commands.resolve(word)
        except UserError:
            return
        partial = rest.split(" ")[-1]
        try:
            options = self._commands.argument_completions(command, partial)
        except Exception:  # noqa: BLE001 - a completion failure must never disturb typing
            return
        for option in options:
            yield Completion(option, start_position=-len(partial))
