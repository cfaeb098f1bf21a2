"""What one REPL run works on: config, codebase, model, conversation, index and network state.

The session is the only place the REPL reaches into the other areas (`Coder`, `CodeIndex`,
`WebResearcher`, the network guard, the request log), each imported when first needed: the
prompt must appear in well under 1.5 s, and chromadb, llama.cpp or torch take seconds to import.
An area that is not installed or not written yet becomes a one-line `UserError`, never a crash.

Slow work runs off the main thread (model loading, index status) so the toolbar stays live, and
generation runs in a worker thread so Ctrl-C always lands in the main thread, which then calls
`Coder.cancel()` and waits for the partial answer instead of tearing the generation down.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.repl.background import BackgroundEmbedder, Foreground

log = logging.getLogger(__name__)

_WAIT_POLL_S = 0.1


def load_area(module: str, feature: str) -> ModuleType:
    """Import another area's module, or say in one line that `feature` is not available."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        log.warning("cannot import %s: %s", module, exc)
        raise UserError(f"{feature} is not available in this installation ({exc})") from None


class Session:
    """Everything a command needs; fakes can be injected for the model and the search client."""

    def __init__(
        self,
        config: Config,
        repo: Path,
        *,
        provider: Any | None = None,
        search_client: Any | None = None,
    ) -> None:
        self.config = config
        self.repo = repo.resolve()
        self.last_answer: Any | None = None
        self.tokens_per_second: float | None = None
        self.speculation: Any | None = None  # drafting stats of this session's last local answer
        self.index_status: Any | None = None
        self.index_checking = False
        self._provider = provider
        self._search_client = search_client
        self._coder: Any | None = None
        self._index: Any | None = None
        self._researcher: Any | None = None
        self._log: Any | None = None
        self._index_lock = threading.Lock()
        # What the user waits for (requests, type-ahead) is foreground; embedding yields to it.
        self.foreground = Foreground()
        self.vectors: tuple[int, int] | None = None  # (embedded, all) chunks, for the toolbar
        self._embed_in_background = False
        self._embedder = BackgroundEmbedder(self._embed_rounds, self.foreground)

    # -- start-up ----------------------------------------------------------------------------

    def start_background_work(self) -> None:
        """Begin loading the model and reading the index state; returns at once. From now on
        requests do not wait for embeddings: vectors are computed between them."""
        self._embed_in_background = self.config.rag.background_embedding
        try:
            self.provider.start_loading()
        except UserError as exc:  # e.g. the model area is missing; the first request says so
            log.warning("model loading not started: %s", exc)
        self.refresh_index_status_in_background()

    # -- model -------------------------------------------------------------------------------

    @property
    def provider(self) -> Any:
        if self._provider is None:
            provider_module = load_area("hybrid_llm.llm.provider", "the model")
            self._provider = provider_module.BackendProvider(self.config)
        return self._provider

    @property
    def model_name(self) -> str:
        return self._provider.model_name if self._provider is not None else self.config.model.name

    @property
    def model_ready(self) -> bool:
        return self._provider is not None and self._provider.ready

    @property
    def model_problem(self) -> str | None:
        """Why the model could not be loaded, once loading has failed (else None)."""
        if not self.model_ready:
            return None
        try:
            self._provider.get(timeout=0)
        except Exception as exc:  # noqa: BLE001 - any load failure is shown, not raised
            return str(exc) or type(exc).__name__
        return None

    def wait_for_model(self) -> None:
        """Block until the model is loaded; its loading error (e.g. file missing) is raised."""
        self.provider.get()

    def available_models(self) -> list[tuple[str, str]]:
        """(name, description) of every model `models list` shows, plus registered files."""
        models = load_area("hybrid_llm.llm.models", "the model list")
        registry = models.ModelRegistry()
        described = {name: spec.description for name, spec in models.KNOWN_MODELS.items()}
        for name in registry.registered_names():
            described.setdefault(name, "registered with `models add`")
        return [
            (name, description if models.model_file(name, registry).exists()
             else f"{description} (not downloaded: hybrid-llm models pull {name})")
            for name, description in described.items()
        ]

    def switch_model(self, name: str) -> None:
        names = [known for known, _ in self.available_models()]
        if name not in names:
            raise UserError(f"unknown model {name!r}; choose one of: {', '.join(names)}")
        self.provider.switch(name)

    # -- conversation ------------------------------------------------------------------------

    @property
    def coder(self) -> Any:
        if self._coder is None:
            coder_module = load_area("hybrid_llm.coder", "code generation")
            request_log = self._request_log()
            self._coder = coder_module.Coder(
                self.config,
                backend_provider=self.provider,
                request_log=request_log,
                retriever_factory=self._retriever,
            )
        return self._coder

    def _retriever(self, repo: Path, config: Config, progress: Callable[[Any], None] | None) -> Any:
        """The coder's retriever over the session's own index (one index object per codebase);
        the REPL brings the index up to date, with progress, before it asks."""
        retriever_module = load_area("hybrid_llm.rag.retriever", "retrieval")
        with self._index_lock:
            index = self._open_index()
        return retriever_module.HybridRetriever(index, config)

    def ask(
        self,
        request: str,
        *,
        web_passages: Sequence[Any] = (),
        on_token: Callable[[str], None],
    ) -> Any:
        """Generate an answer in a worker thread; Ctrl-C cancels it and keeps what was written."""
        coder = self.coder
        meter = _SpeedMeter(on_token)
        outcome: dict[str, Any] = {}

        finished = threading.Event()

        def generate() -> None:
            try:
                outcome["answer"] = coder.ask(
                    request,
                    repo=self.repo if self.config.rag.enabled else None,
                    use_rag=self.config.rag.enabled,
                    web_passages=list(web_passages),
                    on_token=meter,
                )
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread below
                outcome["error"] = exc
            finally:
                finished.set()

        speculative = load_area("hybrid_llm.llm.speculative", "speculative decoding")
        stats_before = speculative.last_stats()
        with self.foreground.busy():  # background embedding stays off the CPU meanwhile
            threading.Thread(target=generate, name="hybrid-llm-answer", daemon=True).start()
            _wait_cancelling_on_interrupt(finished, coder.cancel)
        if "error" in outcome:
            raise outcome["error"]
        answer = outcome["answer"]
        self.last_answer = answer
        self.tokens_per_second = _tokens_per_second(answer.timings) or meter.rate()
        # Only stats this answer produced: a server backend or another session drafts nothing here.
        stats_after = speculative.last_stats()
        self.speculation = stats_after if stats_after is not stats_before else None
        return answer

    def clear(self) -> None:
        if self._coder is not None:
            self._coder.clear()
        self.last_answer = None

    def rate(self, answer: Any, label: str) -> None:
        if not answer.request_id:
            raise UserError(
                "this answer was not logged (logging.log_requests is false), so it cannot be rated"
            )
        self._request_log().rate(answer.request_id, label)

    def _request_log(self) -> Any:
        if self._log is None:
            module = load_area("hybrid_llm.finetune.request_log", "the request log")
            self._log = module.RequestLog.from_config(self.config)
        return self._log

    # -- codebase index ----------------------------------------------------------------------

    def set_repo(self, path: Path) -> None:
        if not path.is_dir():
            raise UserError(f"{path} is not a directory")
        with self.foreground.busy(), self._index_lock:
            self._close_index()
            if self._coder is not None:  # its retrievers hold the index just closed
                self._coder.close()
            self.repo = path.resolve()
            self.index_status = None
            self.vectors = None

    def update_index(self, progress: Callable[[Any], None]) -> Any:
        """Bring the index up to date; in the background mode only the chunking pass (seconds),
        and the vectors follow between requests."""
        with self.foreground.busy(), self._index_lock:
            summary = self._open_index().update(progress=progress, embed=not self._embed_in_background)
            self.index_status = self._index.status()
            self.vectors = self._index.vector_progress()
        if self._embed_in_background and summary.chunks_pending:
            self._embedder.wake()
        return summary

    def refresh_index_status_in_background(self) -> None:
        if not self.config.rag.enabled or self.index_checking:
            return
        self.index_checking = True
        threading.Thread(target=self._refresh_index_status, name="hybrid-llm-index-status", daemon=True).start()

    def _refresh_index_status(self) -> None:
        try:
            with self._index_lock:
                self.index_status = self._open_index().status()
                self.vectors = self._index.vector_progress()
            if self._embed_in_background and self.vectors[0] < self.vectors[1]:
                self._embedder.wake()  # an earlier session stopped before embedding everything
        except Exception:  # noqa: BLE001 - the toolbar then shows the index as unknown
            log.warning("index status failed", exc_info=True)
        finally:
            self.index_checking = False

    def _embed_rounds(self, should_stop: Callable[[], bool]) -> int:
        """The background embedder's work: vectors for chunks that have none, round by round."""
        with self._index_lock:
            index = self._open_index()
            embedded, total = index.vector_progress()

            def show(event: Any) -> None:
                self.vectors = (embedded + event.done, total)

            left = index.embed_pending(should_stop=should_stop, progress=show)
            self.vectors = index.vector_progress()
            if not left:
                self.index_status = index.status()  # "fresh" again, unless files changed meanwhile
            return left

    @property
    def embedding_in_background(self) -> bool:
        """Whether chunks are waiting for vectors that the background embedder will compute."""
        return self._embed_in_background and self.vectors is not None and self.vectors[0] < self.vectors[1]

    def has_index(self, path: Path) -> bool:
        """Whether `path` was indexed before (creates nothing)."""
        index_module = load_area("hybrid_llm.rag.index", "the codebase index")
        return index_module.CodeIndex.exists(path, self.config)

    def indexable_file_count(self, path: Path) -> int:
        """How many files an index of `path` would hold (one walk, nothing read)."""
        discovery = load_area("hybrid_llm.rag.discovery", "the codebase index")
        rag = self.config.rag
        found = discovery.discover_files(
            path, max_file_bytes=rag.max_file_bytes, extensions=rag.file_extensions or None
        )
        return len(found.files)

    def _open_index(self) -> Any:
        if self._index is None:
            index_module = load_area("hybrid_llm.rag.index", "the codebase index")
            self._index = index_module.CodeIndex.open(self.repo, self.config)
        return self._index

    def _close_index(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    # -- network -----------------------------------------------------------------------------

    def is_offline(self) -> bool:
        return load_area("hybrid_llm.net.guard", "the network guard").is_offline()

    def set_offline(self, offline: bool) -> None:
        guard = load_area("hybrid_llm.net.guard", "the network guard")
        if offline:
            guard.enable(allow_loopback=self.config.network.allow_loopback)
        else:
            guard.disable()
        load_area("hybrid_llm.net.broker_client", "the web broker").announce_offline(offline)

    def web_researcher(self) -> Any:
        """The session's `WebResearcher`; callers check `is_offline()` first."""
        if self._researcher is None:
            web = load_area("hybrid_llm.net.web", "web search")
            self._researcher = web.WebResearcher(self.config, self._search_client)
        return self._researcher

    def close(self) -> None:
        self._embedder.close()  # the round under way finishes and is kept
        if self._researcher is not None:
            self._researcher.close()
        with self._index_lock:
            self._close_index()


class _SpeedMeter:
    """Passes tokens on and measures tokens per second from the first token to the last."""

    def __init__(self, on_token: Callable[[str], None]) -> None:
        self._on_token = on_token
        self._count = 0
        self._first = 0.0
        self._last = 0.0

    def __call__(self, token: str) -> None:
        now = time.monotonic()
        if not self._count:
            self._first = now
        self._count += 1
        self._last = now
        self._on_token(token)

    def rate(self) -> float | None:
        elapsed = self._last - self._first
        return (self._count - 1) / elapsed if self._count > 1 and elapsed > 0 else None


def _tokens_per_second(timings: dict) -> float | None:
    value = timings.get("decode_tok_per_s") if timings else None
    return float(value) if value else None


def _wait_cancelling_on_interrupt(finished: threading.Event, cancel: Callable[[], None]) -> None:
    """Wait for `finished`; each Ctrl-C (KeyboardInterrupt here) asks the work to stop.

    An Event, not Thread.join: on Python 3.11 a join interrupted by KeyboardInterrupt can leave
    `is_alive()` False while the thread still runs.
    """
    while not finished.is_set():
        try:
            finished.wait(_WAIT_POLL_S)
        except KeyboardInterrupt:
            cancel()
