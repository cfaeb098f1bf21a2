"""One coding request end to end: retrieve, assemble the prompt, stream the answer, log it.

The REPL's `/code` and `/web` and the `hybrid-llm ask` command all go through `Coder.ask`, so
timings, sources and the conversation behave the same everywhere. Data flows one way:
coder -> (retriever, relevance gate, web passages) -> prompt builder -> backend -> `on_token`.

Retrieved code that the relevance gate (`rag.relevance_threshold`) or the token cap keeps out
of the prompt is not hidden: `Answer.unused_sources` lists it, and the REPL and `ask` print it
as "not used", so the user can name a file in the next request to bring it in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hybrid_llm.config import Config
from hybrid_llm.llm.base import Backend
from hybrid_llm.llm.prompt import BuiltPrompt, PromptBuilder, Turn
from hybrid_llm.llm.provider import BackendProvider
from hybrid_llm.net.passage import WebPassage
from hybrid_llm.rag.chunk import RetrievedChunk
from hybrid_llm.rag.relevance import RelevanceGate

log = logging.getLogger(__name__)


# How the REPL and `ask` title the retrieved sources that stayed out of the prompt.
NOT_USED_TITLE = "Not used (name a file in your request to include it):"


@dataclass(frozen=True)
class Source:
    """A span of the user's codebase that was in the prompt."""

    path: str
    start_line: int
    end_line: int

    @property
    def citation(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"


@dataclass
class Answer:
    """The model's answer and what it was based on.

    `timings` holds retrieval_ms, prompt_tokens, ttft_ms (from the request, retrieval and any
    wait for the model included), completion_tokens, decode_tok_per_s and total_ms, plus
    index_ms, load_wait_ms and prefill_ms for the curious.
    """

    text: str
    sources: list[Source] = field(default_factory=list)
    unused_sources: list[Source] = field(default_factory=list)
    web_sources: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cancelled: bool = False
    request_id: str | None = None


class Retriever(Protocol):
    """What the coder retrieves with; it may also offer `refresh()`, called before every
    retrieval to bring its index up to date, and `close()` (IndexedRepo has both)."""

    def retrieve(self, query: str, k: int = 8) -> list[RetrievedChunk]: ...


class IndexedRepo:
    """The hybrid retriever over one repository's index, which `refresh` brings up to date
    incrementally (only files whose mtime or content changed are re-chunked and re-embedded)."""

    def __init__(self, repo: Path, config: Config, progress: Callable[[Any], None] | None = None) -> None:
        from hybrid_llm.rag.index import CodeIndex
        from hybrid_llm.rag.retriever import HybridRetriever

        self.index = CodeIndex.open(repo, config)
        self._retriever = HybridRetriever(self.index, config)
        self._progress = progress

    def refresh(self) -> None:
        self.index.update(progress=self._progress)

    def retrieve(self, query: str, k: int = 8) -> list[RetrievedChunk]:
        return self._retriever.retrieve(query, k)

    def close(self) -> None:
        self.index.close()


RetrieverFactory = Callable[[Path, Config, Callable[[Any], None] | None], Retriever]


class Coder:
    """A conversation with the model about one codebase (or none)."""

    def __init__(
        self,
        config: Config,
        *,
        backend_provider: BackendProvider | None = None,
        request_log: Any | None = None,
        retriever_factory: RetrieverFactory = IndexedRepo,
        index_progress: Callable[[Any], None] | None = None,
    ) -> None:
        self.config = config
        self.provider = backend_provider or BackendProvider(config)
        self.request_log = request_log
        self._retriever_factory = retriever_factory
        self._index_progress = index_progress
        self._history: list[Turn] = []
        self._repos: dict[Path, Retriever] = {}
        self._cancelled = threading.Event()
        self._excerpt_order: tuple[str, ...] = ()

    @property
    def history(self) -> Sequence[Turn]:
        return tuple(self._history)

    def ask(
        self,
        request: str,
        *,
        repo: Path | None,
        use_rag: bool = True,
        web_passages: Sequence[WebPassage] = (),
        on_token: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer `request`, streaming pieces to `on_token`; `cancel()` keeps the partial text."""
        self._cancelled.clear()
        start = time.perf_counter()
        self.provider.start_loading()  # overlaps with retrieval when not loaded yet
        timings: dict[str, float] = {"index_ms": 0.0, "retrieval_ms": 0.0}
        retrieved: list[RetrievedChunk] = []
        if use_rag and repo is not None and self.config.rag.enabled:
            retrieved = self.retrieve(repo, request, timings)
        waited = time.perf_counter()
        backend = self.provider.get()
        timings["load_wait_ms"] = _ms(time.perf_counter() - waited)
        if self._cancelled.is_set():
            return Answer("", timings=timings, cancelled=True)
        built = self.build_prompt(backend, request, retrieved, web_passages)
        self._excerpt_order = ()
        text, first_token_at, stream_start = self._generate(backend, built, on_token)
        end = time.perf_counter()
        cancelled = self._cancelled.is_set()
        completion_tokens = backend.count_tokens(text) if text else 0
        timings.update(
            prompt_tokens=built.tokens,
            ttft_ms=_ms((first_token_at or end) - start),
            prefill_ms=_ms((first_token_at or end) - stream_start),
            completion_tokens=completion_tokens,
            decode_tok_per_s=_rate(completion_tokens - 1, end - (first_token_at or end)),
            total_ms=_ms(end - start),
        )
        self._history.append(
            Turn(built.user_message, text, frozenset(c.chunk.citation for c in built.chunks))
        )
        shown = {c.chunk.citation for c in built.chunks}
        answer = Answer(
            text=text,
            sources=[_source(c) for c in built.chunks],
            unused_sources=[_source(c) for c in retrieved if c.chunk.citation not in shown],
            web_sources=[passage.url for passage in built.passages],
            timings=timings,
            cancelled=cancelled,
        )
        answer.request_id = self._log(request, built, answer, backend.name)
        return answer

    def build_prompt(
        self,
        backend: Backend,
        request: str,
        retrieved: Sequence[RetrievedChunk],
        web_passages: Sequence[WebPassage] = (),
    ) -> BuiltPrompt:
        """The prompt `ask` sends for `request` given what retrieval found: the relevance gate,
        the context budget and the conversation so far. The REPL's type-ahead builds the same
        prompt while the request is still being typed, so that the model's KV cache already
        holds it at Enter; anything `ask` adds to the prompt belongs here for that reason."""
        chunks, _ = RelevanceGate(self.config.rag.relevance_threshold).split(request, retrieved)
        generation = self.config.generation
        rag = self.config.rag
        return PromptBuilder(
            backend.count_tokens,
            context_length=backend.context_length,
            max_tokens=generation.max_tokens,
            code_tokens=rag.compact_tokens if rag.compact_context else rag.context_tokens,
            full_chunks=rag.full_chunks if rag.compact_context else None,
        ).build(request, chunks=chunks, passages=web_passages, history=self._history, order=self._excerpt_order)

    def keep_excerpt_order(self, citations: Sequence[str]) -> None:
        """Lay out the excerpts of the next prompts in this order wherever they are retrieved
        again (the others after them, best first), until `ask` has used it. The REPL's
        type-ahead gives the order of the prompt it prepared in the model's KV cache, so that
        keys typed last that only re-rank the same code cost nothing after Enter."""
        self._excerpt_order = tuple(citations)

    def cancel(self) -> None:
        """Stop the running request from another thread; `ask` returns what it has so far."""
        self._cancelled.set()
        if self.provider.ready:
            try:
                self.provider.get(timeout=0).cancel()
            except Exception:  # noqa: BLE001 - a failed load has nothing to cancel
                pass

    def clear(self) -> None:
        """Forget the conversation (the next request starts a fresh prompt)."""
        self._history.clear()

    def close(self) -> None:
        """Close the indexes this coder opened (the backend belongs to its provider)."""
        for retriever in self._repos.values():
            if hasattr(retriever, "close"):
                retriever.close()
        self._repos.clear()

    def retrieve(
        self, repo: Path, request: str, timings: dict[str, float] | None = None
    ) -> list[RetrievedChunk]:
        """The code retrieved for `request` in `repo` (its index refreshed first when the
        retriever can refresh), best first; `timings` receives index_ms and retrieval_ms."""
        timings = {} if timings is None else timings
        started = time.perf_counter()
        retriever = self._repos.get(repo)
        if retriever is None:
            retriever = self._repos[repo] = self._retriever_factory(repo, self.config, self._index_progress)
        if hasattr(retriever, "refresh"):
            retriever.refresh()
        indexed = time.perf_counter()
        chunks = retriever.retrieve(request, k=self.config.rag.max_results)
        timings["index_ms"] = _ms(indexed - started)
        timings["retrieval_ms"] = _ms(time.perf_counter() - indexed)
        return chunks

    def _generate(
        self, backend: Backend, built: BuiltPrompt, on_token: Callable[[str], None] | None
    ) -> tuple[str, float | None, float]:
        generation = self.config.generation
        pieces: list[str] = []
        first_token_at = None
        stream_start = time.perf_counter()
        stream = backend.stream(
            built.messages,
            max_tokens=generation.max_tokens,
            temperature=generation.temperature,
            top_p=generation.top_p,
            top_k=generation.top_k,
        )
        try:
            for piece in stream:
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                pieces.append(piece)
                if on_token is not None:
                    on_token(piece)
                if self._cancelled.is_set():
                    break
        finally:
            stream.close()
        return "".join(pieces), first_token_at, stream_start

    def _log(self, request: str, built: BuiltPrompt, answer: Answer, model: str) -> str | None:
        if self.request_log is None:
            return None
        try:
            return self.request_log.record(
                prompt=request,
                messages=[*built.messages, {"role": "assistant", "content": answer.text}],
                sources=[source.citation for source in answer.sources],
                answer=answer.text,
                model=model,
                timings=answer.timings,
            )
        except OSError as exc:  # the answer matters more than its log entry
            log.warning("could not log the request: %s", exc)
            return None


def _source(retrieved: RetrievedChunk) -> Source:
    return Source(retrieved.chunk.path, retrieved.chunk.start_line, retrieved.chunk.end_line)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _rate(tokens: int, seconds: float) -> float:
    return round(tokens / seconds, 2) if tokens > 0 and seconds > 0 else 0.0
