"""Prompt assembly: system prompt, retrieved code, web passages, conversation, request, all
fitted to the model's context.

The budget is `context_length - max_tokens - reserve`. The request and system prompt must fit
(else a UserError says by how much); earlier turns may use up to half of what is left, newest
first; code and web context fill the rest in rank order, and the first item that does not fit
ends the list, so the lowest-ranked are dropped first; leftover room then keeps older turns.
Retrieved code is also capped at `code_tokens` (config `rag.context_tokens`): on a CPU every
prompt token delays the answer, and the best-ranked few chunks carry most of the value. With
`full_chunks` set (config `rag.compact_context`), only that many best-ranked chunks are shown
whole and the rest as outlines (signatures, docstrings, enclosing class; `code_outline`), so
more of the codebase fits in the same tokens.

Which chunks go in, and which of them whole, is decided by rank; where each excerpt goes in the
message can follow a given `order` instead (the citations of a prompt prepared before), new ones
after, best first. llama.cpp re-uses the KV cache up to the first token that changed: the REPL's
type-ahead prepares the prompt while the request is typed, and when the last keys only re-rank
the same code, or add a chunk, keeping the prepared order leaves only the request and the new
chunk to process after Enter (bench/typeahead_bench.py).

The system prompt is short and says nothing about a codebase: the rules for excerpts (reuse
them, cite them) travel with the excerpts in the user message, so a request without code
context is asked exactly as the bare model would be asked (measured by
bench/humaneval_bench.py), and the system prompt stays one constant prefix for the KV cache.

Earlier turns are replayed exactly as they were sent, so the prompt of turn N is a prefix of
the prompt of turn N+1 and llama.cpp does not re-process it. A chunk already shown in a kept
turn is not repeated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hybrid_llm.errors import UserError
from hybrid_llm.llm.base import Message
from hybrid_llm.llm.code_outline import outline
from hybrid_llm.net.passage import WebPassage
from hybrid_llm.rag.chunk import RetrievedChunk

SYSTEM_PROMPT = "You are a coding assistant. Write code in fenced blocks with a language tag."

CODE_RULES = """\
Code from the user's repository follows, each excerpt under its `path:start-end` header; an \
outline shows only signatures and docstrings, `...` marks what is left out.
- Reuse this code: import it and call it. Never re-define or re-implement a function or class \
shown here, even in a simplified form; if it must change, show the edited version in its file.
- When you rely on an excerpt, cite its `path:start-end` header.
- If the excerpts do not contain what you need, say so instead of inventing APIs."""

# Chat-template tokens around each message (`<|im_start|>role\n ... <|im_end|>\n` in ChatML)
# and the assistant header that opens the answer; the reserve absorbs templates that use more.
MESSAGE_OVERHEAD_TOKENS = 6
DEFAULT_RESERVE_TOKENS = 64


@dataclass(frozen=True)
class Turn:
    """One finished exchange: the user message exactly as sent, and the answer."""

    user_message: str
    answer: str
    citations: frozenset[str] = frozenset()


@dataclass(frozen=True)
class BuiltPrompt:
    """What goes to the backend, and which context made it in."""

    messages: list[Message]
    user_message: str
    chunks: list[RetrievedChunk]
    passages: list[WebPassage]
    turns_kept: int
    tokens: int
    dropped: dict[str, int] = field(default_factory=dict)
    # Citations of the excerpts in the user message, in the order they appear there.
    excerpt_order: tuple[str, ...] = ()


class PromptBuilder:
    """Builds chat messages that never exceed `context_length - max_tokens - reserve` tokens."""

    def __init__(
        self,
        count_tokens: Callable[[str], int],
        *,
        context_length: int,
        max_tokens: int,
        reserve: int = DEFAULT_RESERVE_TOKENS,
        system_prompt: str = SYSTEM_PROMPT,
        code_tokens: int | None = None,
        full_chunks: int | None = None,
    ) -> None:
        self._count = count_tokens
        self.code_tokens = code_tokens
        self.full_chunks = full_chunks
        self.budget = context_length - max_tokens - reserve
        self.system_prompt = system_prompt
        if self.budget <= 0:
            raise UserError(
                f"generation.max_tokens ({max_tokens}) leaves no room for a prompt in a "
                f"{context_length}-token context: lower it or raise model.n_ctx"
            )

    def build(
        self,
        request: str,
        *,
        chunks: Sequence[RetrievedChunk] = (),
        passages: Sequence[WebPassage] = (),
        history: Sequence[Turn] = (),
        order: Sequence[str] = (),
    ) -> BuiltPrompt:
        """Fit everything to the budget; `chunks` and `passages` come best first. Excerpts
        whose citation is in `order` are laid out in that order, before the others."""
        fixed = self._message_tokens(self.system_prompt) + self._message_tokens(request)
        if fixed > self.budget:
            raise UserError(
                f"the request is too long: {fixed} tokens with the system prompt, "
                f"but only {self.budget} fit in the context"
            )
        turn_costs = [self._turn_tokens(turn) for turn in history]
        kept = _newest_within(turn_costs, (self.budget - fixed) // 2)
        shown = _citations(history, kept)
        fresh_chunks = [c for c in chunks if c.chunk.citation not in shown]
        room = self.budget - fixed - sum(turn_costs[len(turn_costs) - kept :])
        chosen_passages, chosen_chunks, whole, used = self._fill(list(passages), fresh_chunks, room)
        kept = _newest_within(turn_costs, self.budget - fixed - used)
        return self._assemble(
            request, history, kept, chosen_chunks, chosen_passages,
            retrieved=chunks,
            whole=whole,
            order=order,
            dropped={
                "chunks": len(fresh_chunks) - len(chosen_chunks),
                "passages": len(passages) - len(chosen_passages),
                "turns": len(history) - kept,
            },
        )

    def _fill(
        self, passages: list[WebPassage], chunks: list[RetrievedChunk], room: int
    ) -> tuple[list[WebPassage], list[RetrievedChunk], int | None, int]:
        """Web passages first (the user asked for them), then chunks; within each list the
        first item that does not fit ends it, so only the lowest-ranked are left out. The code
        rules' cost is reserved before chunks are taken, and only paid if one is. Returns the
        passages, the chunks, how many leading chunks are shown whole (None: all) and the
        tokens used."""
        chosen_passages, used = self._take(passages, lambda passage, _: format_passage(passage), room)
        code_room = room - used if self.code_tokens is None else min(room - used, self.code_tokens)
        rules = self._count(CODE_RULES) + 2
        whole = self.full_chunks
        chosen_chunks, used_by_chunks = self._take(chunks, _chunk_renderer(whole), code_room - rules)
        if whole is not None and len(chosen_chunks) < min(whole, len(chunks)):
            # A chunk meant to be shown whole does not fit: it and the rest go as outlines.
            whole = len(chosen_chunks)
            chosen_chunks, used_by_chunks = self._take(chunks, _chunk_renderer(whole), code_room - rules)
        if chosen_chunks:
            used_by_chunks += rules
        return chosen_passages, chosen_chunks, whole, used + used_by_chunks

    def _take(self, items: list, render: Callable, room: int) -> tuple[list, int]:
        """The leading items that fit in `room`; `render(item, position)` gives each one's text."""
        used = 0
        for taken, item in enumerate(items):
            cost = self._count(render(item, taken)) + 2  # the blank lines joining sections
            if used + cost > room:
                return items[:taken], used
            used += cost
        return items, used

    def _assemble(
        self,
        request: str,
        history: Sequence[Turn],
        kept: int,
        chunks: list[RetrievedChunk],
        passages: list[WebPassage],
        *,
        retrieved: Sequence[RetrievedChunk],
        whole: int | None,
        order: Sequence[str],
        dropped: dict[str, int],
    ) -> BuiltPrompt:
        while True:
            laid_out, render = lay_out(chunks, order), _chunk_renderer(whole)
            excerpts = [render(chunk, rank) for chunk, rank in laid_out]
            user_message = format_user_message(request, excerpts, passages)
            messages: list[Message] = [{"role": "system", "content": self.system_prompt}]
            for turn in history[len(history) - kept :]:
                messages.append({"role": "user", "content": turn.user_message})
                messages.append({"role": "assistant", "content": turn.answer})
            messages.append({"role": "user", "content": user_message})
            tokens = sum(self._message_tokens(m["content"]) for m in messages)
            if tokens <= self.budget:
                break
            # Section headers, and merges across joined text, can add a few tokens to the
            # estimate: give back the lowest-ranked context, then the oldest turn.
            if chunks:
                chunks, dropped["chunks"] = chunks[:-1], dropped["chunks"] + 1
            elif passages:
                passages, dropped["passages"] = passages[:-1], dropped["passages"] + 1
            else:
                kept, dropped["turns"] = kept - 1, dropped["turns"] + 1
        shown = _citations(history, kept)
        fresh = {c.chunk.citation for c in chunks}
        reused = [c for c in retrieved if c.chunk.citation in shown - fresh]
        return BuiltPrompt(
            messages=messages,
            user_message=user_message,
            chunks=[*reused, *chunks],
            passages=passages,
            turns_kept=kept,
            tokens=tokens,
            dropped=dropped,
            excerpt_order=tuple(chunk.chunk.citation for chunk, _ in laid_out),
        )

    def _message_tokens(self, content: str) -> int:
        return self._count(content) + MESSAGE_OVERHEAD_TOKENS

    def _turn_tokens(self, turn: Turn) -> int:
        return self._message_tokens(turn.user_message) + self._message_tokens(turn.answer)


def _citations(history: Sequence[Turn], kept: int) -> frozenset[str]:
    """Citations of the chunks shown in the newest `kept` turns."""
    return frozenset().union(*(turn.citations for turn in history[len(history) - kept :]))


def _newest_within(costs: Sequence[int], limit: int) -> int:
    """How many of the newest items (the end of `costs`) fit within `limit` together."""
    total = kept = 0
    for cost in reversed(costs):
        if total + cost > limit:
            break
        total += cost
        kept += 1
    return kept


def lay_out(chunks: Sequence[RetrievedChunk], order: Sequence[str]) -> list[tuple[RetrievedChunk, int]]:
    """The chunks (best first) in the order of the message, each with its rank: those whose
    citation is in `order` in that order, then the others best first."""
    place = {citation: index for index, citation in enumerate(order)}
    ranked = list(enumerate(chunks))
    ranked.sort(key=lambda item: (place.get(item[1].chunk.citation, len(place)), item[0]))
    return [(chunk, rank) for rank, chunk in ranked]


def _chunk_renderer(whole: int | None) -> Callable[[RetrievedChunk, int], str]:
    """Renders the chunk of each rank: the best `whole` whole, the rest as outlines."""
    return lambda chunk, rank: format_chunk(chunk, whole=whole is None or rank < whole)


def format_chunk(retrieved: RetrievedChunk, *, whole: bool = True) -> str:
    """The chunk under its citation: its text, or (`whole=False`) its outline."""
    chunk = retrieved.chunk
    if whole:
        return f"### {chunk.citation}\n```{chunk.language}\n{chunk.text.rstrip()}\n```"
    return f"### {chunk.citation}\n```{chunk.language}\n{outline(chunk)}\n```"


def format_passage(passage: WebPassage) -> str:
    title = f"{passage.title}\n" if passage.title else ""
    return f"### {passage.url}\n{title}{passage.text.strip()}"


def format_user_message(request: str, excerpts: Sequence[str], passages: Sequence[WebPassage]) -> str:
    """The user turn: context sections first (`excerpts` as `format_chunk` renders them), the
    request last: closest to the answer, and the only part that changes with every key typed,
    so nothing after it has to be processed again."""
    sections = []
    if excerpts:
        sections.append(CODE_RULES + "\n\n" + "\n\n".join(excerpts))
    if passages:
        sections.append("From the web:\n\n" + "\n\n".join(map(format_passage, passages)))
    if not sections:
        return request
    return "\n\n".join([*sections, f"Request: {request}"])
