"""Streaming Markdown: re-render the growing answer with rich, keeping the screen stable.

As in Aider's `mdstream`, the whole answer is re-rendered on each refresh, but only the last
few lines stay in the `rich.live.Live` region; lines above them are printed once, for good, so
a long answer scrolls normally instead of being redrawn (and duplicated) by Live.
"""

from __future__ import annotations

import io
import time

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.text import Text

LIVE_WINDOW_LINES = 6
MIN_REFRESH_S = 0.1
CODE_THEME = "monokai"


class MarkdownStream:
    """An `AnswerStream` for the terminal: tokens in, rendered Markdown with highlighted code out."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._text = ""
        self._printed_lines = 0
        self._last_render = 0.0
        self._live = Live(Text(""), console=console, auto_refresh=False, transient=False)
        self._live.start()

    def feed(self, token: str) -> None:
        self._text += token
        now = time.monotonic()
        if now - self._last_render >= MIN_REFRESH_S:
            self._last_render = now
            self._render(final=False)

    def finish(self) -> None:
        self._render(final=True)
        self._live.stop()

    def _render(self, *, final: bool) -> None:
        lines = self._render_lines()
        stable = len(lines) if final else max(len(lines) - LIVE_WINDOW_LINES, 0)
        if stable > self._printed_lines:
            self._live.console.print(Text.from_ansi("".join(lines[self._printed_lines : stable])), end="")
            self._printed_lines = stable
        self._live.update(Text.from_ansi("".join(lines[self._printed_lines :])), refresh=True)

    def _render_lines(self) -> list[str]:
        buffer = io.StringIO()
        console = Console(
            file=buffer,
            force_terminal=True,
            color_system=self._console.color_system or "standard",
            width=self._console.width,
        )
        console.print(Markdown(self._text, code_theme=CODE_THEME))
        return buffer.getvalue().splitlines(keepends=True)
