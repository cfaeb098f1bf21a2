"""A piece of a fetched web page, the unit `/web` adds to a prompt next to code chunks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WebPassage:
    """Readable text from `url`, scored by relevance to the task (higher is better)."""

    url: str
    title: str
    text: str
    score: float = 0.0
