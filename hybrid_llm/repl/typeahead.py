"""Type-ahead: the request being typed is prepared before Enter.

On 2 CPU cores the model processes ~40-110 prompt tokens a second, so ~1,000 tokens of retrieved
code delay the first answer token by 10-25 s. But the code is chosen from the request's text, and
it goes before the request in the prompt. So while the user types, a worker thread retrieves
for the text so far (a pause after a change, and as often while typing goes on, so that at
Enter the last preparation is at most a pause old) and has the model process the prompt that
`Coder.ask` would send for it into its KV cache (`backend.prefill`). At Enter, llama.cpp reuses the longest common prefix: only
what changed since, usually the end of the request, remains to be processed.

Rules that keep this invisible to the user:
- A keystroke never waits: `text_changed` runs on prompt-toolkit's thread and only records the
  text; retrieval and prefill run on the worker.
- The backend runs one thing at a time: `pause()` (at Enter, before any command runs) makes the
  worker stop between prefill slices, calls the backend's `cancel()` to interrupt the one under
  way (tens of ms), and waits for the worker to leave; nothing is prepared until `resume()`.
- A retrieval that changes the context re-prepares from the first token that differs; Ctrl-C
  at the prompt or a cleared line drops the preparation.
- Work the user waits for comes first: preparation counts as foreground, so background
  embedding yields to it.

What costs time after Enter is whatever the last keys change in the prompt, so two things keep
that to the request's own last tokens (measured by bench/typeahead_bench.py, which logs where the
prepared and the sent prompt part):
- The word being typed is completed before retrieving (`complete_last_word`), from the words of
  the code retrieved so far: retrieval for `based on RegexHigh` or `a Consol` would rank other
  code than for the finished word, and the finished word is what Enter retrieves for.
- The excerpts keep the order of the prompt prepared before (`Coder.keep_excerpt_order`), also at
  Enter: code that is only re-ranked stays where it is in the KV cache, and code that joins goes
  after it. The same code reaches the model as for a pasted request, maybe in another order.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from hybrid_llm.errors import UserError

log = logging.getLogger(__name__)

CODE_COMMAND = "/code"
_POLL_S = 0.5
_WORD = re.compile(r"\w+")
_LAST_WORD = re.compile(r"\w{2,}$")


def request_of(line: str, resolve: Callable[[str], str]) -> str | None:
    """The request a line will send to the model (plain text, or `/code TASK`), else None."""
    text = line.strip()
    if not text or text == "{":
        return None
    if not text.startswith("/"):
        return text
    word, _, rest = text.partition(" ")
    try:
        command = resolve(word)
    except UserError:
        return None
    return rest.strip() or None if command == CODE_COMMAND else None


def complete_last_word(text: str, words: Counter[str]) -> str:
    """`text` with its unfinished last word (two or more word characters at its very end)
    completed to the most frequent of `words` that starts with it, ignoring case; unchanged
    when none does or the text ends with a space or punctuation."""
    match = _LAST_WORD.search(text)
    if match is None:
        return text
    partial = match.group().lower()
    candidates = [word for word in words if word.lower().startswith(partial)]
    if not candidates:
        return text
    return text + max(candidates, key=words.__getitem__)[len(partial) :]


def words_of(texts: Iterable[str]) -> Counter[str]:
    """How often each word (identifiers whole) occurs in `texts`."""
    return Counter(word for text in texts for word in _WORD.findall(text))


class TypeAhead:
    """Prepares the request being typed (see the module docstring); `state` is for the toolbar."""

    def __init__(self, session: Any, resolve: Callable[[str], str], *, pause_s: float) -> None:
        self._session = session
        self._resolve = resolve
        self._pause_s = pause_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._paused = False
        self._closed = False
        self._text = ""
        self._unprepared_since: float | None = None
        self._retrieved_for: str | None = None
        self._messages: list[dict] | None = None
        self._sources: tuple[str, ...] | None = None
        self._words: Counter[str] = Counter()  # in the code retrieved for this request so far
        self.state = ""  # "", "preparing context…" or "context ready"
        self.prepared_tokens = 0

    @property
    def prepared_messages(self) -> list[dict] | None:
        """The messages of the last prompt prepared (or being prepared), for benchmarks."""
        return self._messages

    # -- prompt-toolkit's thread: must never wait ---------------------------------------------

    def text_changed(self, text: str) -> None:
        now = time.monotonic()
        self._text = text
        if self._unprepared_since is None:
            self._unprepared_since = now
        if not text.strip():
            self.state = ""
        self._wake.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hybrid-llm-typeahead", daemon=True)
            self._thread.start()

    # -- the REPL's main thread ----------------------------------------------------------------

    def pause(self) -> None:
        """Stop preparing (within one prefill slice) and wait until the backend is free; called
        at Enter, so that the command then owns the model."""
        with self._lock:
            self._paused = True
        backend = self._backend()
        if backend is not None and not self._idle.is_set():
            backend.cancel()
        self._idle.wait()
        self.state = ""

    def resume(self) -> None:
        """A new prompt: prepare what is typed into it (the conversation may have grown)."""
        self._forget_order()
        with self._lock:
            self._paused = False
            self._text = ""
            self._messages = None
            self._sources = None
            self._unprepared_since = None
            self._words = Counter()

    def drop(self) -> None:
        """Ctrl-C at the prompt: forget the text; nothing more is prepared for it."""
        self.text_changed("")

    def close(self) -> None:
        self._closed = True
        self.pause()
        self._wake.set()

    # -- the worker ----------------------------------------------------------------------------

    def _run(self) -> None:
        delay: float | None = None
        while not self._closed:
            self._wake.wait(delay)
            self._wake.clear()  # a keystroke from now on wakes the next round
            delay = None
            if not self._enter():
                continue
            try:
                delay = self._prepare()
            except Exception:  # noqa: BLE001 - preparing is an optimisation: never fatal
                log.warning("type-ahead preparation failed", exc_info=True)
            finally:
                self._idle.set()

    def _enter(self) -> bool:
        with self._lock:
            if self._paused or self._closed:
                return False
            self._idle.clear()
            return True

    def _prepare(self) -> float | None:
        """One round; returns how long to wait before the next unless a keystroke comes first
        (None: until then)."""
        text = self._text
        request = request_of(text, self._resolve)
        if request is None:
            self.state = ""
            self._forget_order()
            return None
        backend = self._backend()
        if backend is None or not hasattr(backend, "prefill"):
            return _POLL_S if not self._session.model_ready else None  # a model still loading
        if text != self._retrieved_for:
            wait = self._until_retrieval()
            if wait > 0:
                return wait
            with self._session.foreground.busy():
                self._retrieve(backend, text, request)
        with self._session.foreground.busy():
            cached = backend.prefill(self._messages, should_stop=self._should_stop)
        if self._should_stop():
            return 0.0
        self.prepared_tokens = cached
        self.state = "context ready"
        return None if self._text == self._retrieved_for else 0.0

    def _until_retrieval(self) -> float:
        """Seconds until the text so far is retrieved for: a pause after its first unprepared
        change, so a burst of keys costs one retrieval, and typing on never starves it."""
        since = self._unprepared_since
        return 0.0 if since is None else max(self._pause_s - (time.monotonic() - since), 0.0)

    def _retrieve(self, backend: Any, text: str, request: str) -> None:
        session = self._session
        self._unprepared_since = None
        if not text[-1:].isspace():  # its last word may be unfinished
            request = complete_last_word(request, self._words)
        chunks = []
        if session.config.rag.enabled:
            chunks = session.coder.retrieve(session.repo, request)
            self._words.update(words_of(chunk.chunk.text for chunk in chunks))
        built = session.coder.build_prompt(backend, request, chunks)
        session.coder.keep_excerpt_order(built.excerpt_order)
        sources = tuple(chunk.chunk.citation for chunk in built.chunks)
        if sources != self._sources or self.state != "context ready":
            self.state = "preparing context…"
        self._sources = sources
        self._messages = built.messages
        self._retrieved_for = text

    def _forget_order(self) -> None:
        """A line given up (cleared, Ctrl-C, or a new prompt): what comes next, typed or pasted,
        is laid out best first, not in the order of code prepared for another request."""
        if self._retrieved_for is not None:
            self._retrieved_for = None
            self._session.coder.keep_excerpt_order(())

    def _should_stop(self) -> bool:
        """Between prefill slices: stop for a request, or to retrieve again for newer text."""
        return self._paused or self._closed or (self._text != self._retrieved_for and not self._until_retrieval())

    def _backend(self) -> Any | None:
        session = self._session
        if not session.model_ready or session.model_problem:
            return None
        return session.provider.get(timeout=0)
