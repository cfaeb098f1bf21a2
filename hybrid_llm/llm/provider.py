"""Loading the model off the critical path.

Loading a GGUF model takes seconds (more on a cold disk cache), so the REPL starts loading in
a background thread and shows its prompt at once; the first request waits for the load. A
backend that can `warm(system_prompt)` (llama.cpp: process it into the KV cache) does so in the
same thread, so the first request starts from a cache that already holds the system prompt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.llm.base import Backend, create_backend
from hybrid_llm.llm.prompt import SYSTEM_PROMPT


class BackendProvider:
    """Owns the current backend: loads it in the background, hands it out, swaps it."""

    def __init__(self, config: Config, *, factory: Callable[[Config], Backend] = create_backend) -> None:
        self._config = config
        self._factory = factory
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._thread: threading.Thread | None = None
        self._backend: Backend | None = None
        self._error: BaseException | None = None

    @property
    def model_name(self) -> str:
        """What is (or will be) loaded: the model name, the model path, or the server model."""
        model = self._config.model
        if model.backend == "openai":
            return model.server.model
        return model.path or model.name

    @property
    def ready(self) -> bool:
        """True once loading has finished, successfully or not (`get` then returns at once)."""
        return self._loaded.is_set()

    def start_loading(self) -> None:
        """Begin loading in a daemon thread; calling it again while loading does nothing."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._load, name="model-loader", daemon=True)
            self._thread.start()

    def get(self, timeout: float | None = None) -> Backend:
        """The loaded backend, waiting for the load; re-raises the load's error."""
        self.start_loading()
        if not self._loaded.wait(timeout):
            raise TimeoutError(f"model {self.model_name} still loading after {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._backend is not None
        return self._backend

    def switch(self, name: str) -> None:
        """Use the model called `name` from now on: the old one is closed, the new one loads."""
        if not name.strip():
            raise UserError("give a model name: see `hybrid-llm models list`")
        config = self._config.model_copy(deep=True)
        config.model.name = name
        config.model.path = None
        self.close()
        with self._lock:
            self._config = config
            self._loaded = threading.Event()
            self._thread = None
            self._backend = None
            self._error = None
        self.start_loading()

    def close(self) -> None:
        """Wait for a running load to end, then free the backend."""
        thread = self._thread
        if thread is not None:
            thread.join()
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def _load(self) -> None:
        try:
            backend = self._factory(self._config)
            warm = getattr(backend, "warm", None)
            if warm is not None:
                warm(SYSTEM_PROMPT)
            self._backend = backend
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that calls get()
            self._error = exc
        finally:
            self._loaded.set()
