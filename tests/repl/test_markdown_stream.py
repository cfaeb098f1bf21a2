"""Streaming Markdown rendering on a (recorded) colour terminal."""

from __future__ import annotations

import io
import re

from rich.console import Console

from hybrid_llm.repl import markdown_stream
from hybrid_llm.repl.markdown_stream import MarkdownStream

ANSWER = "Use `greet`:\n\n```python\nfrom util import greet\n\nprint(greet('ada'))\n```\n\nDone.\n"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def render(tokens: list[str], width: int = 60) -> str:
    out = io.StringIO()
    stream = MarkdownStream(Console(file=out, force_terminal=True, color_system="truecolor", width=width))
    for token in tokens:
        stream.feed(token)
    stream.finish()
    return out.getvalue()


def test_code_is_highlighted_and_every_line_is_shown() -> None:
    raw = render([ANSWER[i : i + 3] for i in range(0, len(ANSWER), 3)])
    plain = ANSI.sub("", raw)
    for text in ("from util import greet", "print(greet('ada'))", "Done."):
        assert text in plain
    assert "```" not in plain  # rendered, not shown as source
    assert "\x1b[38;2;" in raw  # truecolor syntax highlighting


def test_a_long_answer_scrolls_instead_of_being_redrawn(monkeypatch) -> None:
    """Re-rendering on every token, a line is redrawn only while it is in the live window at
    the bottom; after that it is printed once, for good (a plain Live would redraw all 60)."""
    monkeypatch.setattr(markdown_stream, "MIN_REFRESH_S", 0.0)
    plain = ANSI.sub("", render([f"line {i:02d}\n\n" for i in range(60)]))
    assert all(f"line {i:02d}" in plain for i in range(60))
    assert plain.count("line 05") <= markdown_stream.LIVE_WINDOW_LINES + 1
