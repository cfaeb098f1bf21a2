"""Fenced code blocks in a Markdown answer, so `/save N PATH` can write the N-th one to disk."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

# A fence is three or more backticks or tildes; the closing fence must use the same character
# and be at least as long (CommonMark), so a ``` inside a ```` block does not end it.
_FENCE = re.compile(r"^[ ]{0,3}(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")


@dataclass(frozen=True)
class CodeBlock:
    language: str
    text: str


def extract_code_blocks(markdown: str) -> list[CodeBlock]:
    """Every fenced block in order; an unclosed last block (a cancelled answer) still counts."""
    blocks: list[CodeBlock] = []
    fence: str | None = None
    language = ""
    lines: list[str] = []
    for line in markdown.splitlines():
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence, language, lines = match["fence"], match["info"].strip().split(" ")[0], []
            continue
        if match and match["fence"][0] == fence[0] and len(match["fence"]) >= len(fence) and not match["info"].strip():
            blocks.append(CodeBlock(language, _join(lines)))
            fence = None
        else:
            lines.append(line)
    if fence is not None and lines:
        blocks.append(CodeBlock(language, _join(lines)))
    return blocks


def _join(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def unified_diff(old: str, new: str, path: str) -> str:
    """The change `/save` is about to make, as `diff -u` would show it."""
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
        )
    )
