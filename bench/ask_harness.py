"""What the answer-quality benchmarks share: asking the real `Coder` one request at a time with
the answer cut at its first complete code block, and reading that block.

Cutting at the first closed fence keeps a 2-core run short (the explanation after the code is
never graded) and applies to every mode alike. Before each request the KV cache is put back to
the warmed system prompt, so no request reuses the previous one's context as a prefix: each
pays for its own context, as the first request of a conversation does.
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hybrid_llm.coder import Answer, Coder  # noqa: E402
from hybrid_llm.llm.prompt import SYSTEM_PROMPT  # noqa: E402

CODE_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)


def first_code_block(text: str) -> str:
    """The first fenced block's code, or the whole text when there is none (or it is open)."""
    match = CODE_FENCE.search(text)
    if match:
        return match.group(1)
    opened = text.find("```")
    return text[text.index("\n", opened) + 1:] if opened >= 0 and "\n" in text[opened:] else text


def ask_until_first_block(coder: Coder, request: str, **options) -> Answer:
    """`coder.ask`, stopped as soon as the first code block is closed (or at max_tokens)."""
    return _ask_until(coder, request, lambda text: CODE_FENCE.search(text) is not None, **options)


def ask_first_token(coder: Coder, request: str, **options) -> Answer:
    """`coder.ask`, stopped at the first token: for time-to-first-token measurements."""
    return _ask_until(coder, request, lambda text: True, **options)


def _ask_until(coder: Coder, request: str, done, **options) -> Answer:
    backend = coder.provider.get()
    llama = getattr(backend, "_llama", None)
    if llama is not None:
        llama.reset()  # forget the previous prompt: modes that share a prefix must not gain
    warm = getattr(backend, "warm", None)
    if warm is not None:
        warm(SYSTEM_PROMPT)
    pieces: list[str] = []

    def on_token(piece: str) -> None:
        pieces.append(piece)
        if done("".join(pieces)):
            coder.cancel()

    answer = coder.ask(request, on_token=on_token, **options)
    coder.clear()
    return answer


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
