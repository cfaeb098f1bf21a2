"""Work the user is not waiting for, and how it gives way to work they are waiting for.

On a 2-core laptop the model's prompt processing and the embedder both want every core, so
running them together slows the answer the user is waiting for. `Foreground` counts that work
(a request, the type-ahead preparing one); `BackgroundEmbedder` computes the vectors of a new
codebase only while nothing is in the foreground, and stops within one small round when
something starts. Every round is committed by the index, so stopping (or quitting) keeps what
was embedded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

# Background work starts only after the foreground has been idle this long, so that the gap
# between a request's index check and its generation is not filled with an embedding round.
IDLE_GRACE_S = 1.0
_RETRY_S = 1.0


class Foreground:
    """How much work the user is waiting for right now, and since when there has been none."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._idle_since = time.monotonic()

    @contextmanager
    def busy(self) -> Iterator[None]:
        with self._lock:
            self._count += 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1
                if not self._count:
                    self._idle_since = time.monotonic()

    def is_busy(self) -> bool:
        return self._count > 0

    def idle_seconds(self) -> float:
        """How long nothing has been in the foreground (0 while something is)."""
        with self._lock:
            return 0.0 if self._count else time.monotonic() - self._idle_since


EmbedRounds = Callable[[Callable[[], bool]], int]
"""Embeds in rounds until done or the given `should_stop()` is true; returns how many are left."""


class BackgroundEmbedder:
    """A daemon thread that runs `embed_rounds` whenever `wake()` said there is work and the
    foreground has been idle for `idle_grace` seconds; it yields as soon as the foreground is busy."""

    def __init__(self, embed_rounds: EmbedRounds, foreground: Foreground, *,
                 idle_grace: float = IDLE_GRACE_S) -> None:
        self._embed_rounds = embed_rounds
        self._foreground = foreground
        self._idle_grace = idle_grace
        self._work = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.running = False

    def wake(self) -> None:
        """There may be chunks without vectors: embed them when the foreground is idle."""
        if self._closed.is_set():
            return
        self._work.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hybrid-llm-embedder", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the current round (which is kept) and wait for the thread."""
        self._closed.set()
        self._work.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _should_stop(self) -> bool:
        return self._closed.is_set() or self._foreground.is_busy()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._work.wait()
            idle = self._foreground.idle_seconds()
            if idle < self._idle_grace:
                self._closed.wait(self._idle_grace - idle)
                continue
            self._work.clear()  # before the rounds, so that a wake() during them is not lost
            self.running = True
            try:
                left = self._embed_rounds(self._should_stop)
            except Exception:  # noqa: BLE001 - a failed round must not end the REPL; retried later
                log.warning("background embedding failed", exc_info=True)
                left = 1
            finally:
                self.running = False
            if left:
                self._work.set()
                if not self._foreground.is_busy():  # another process holds the index, or an error
                    self._closed.wait(_RETRY_S)
