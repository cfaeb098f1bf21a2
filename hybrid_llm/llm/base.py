"""The one protocol every generation engine implements, and the registry that picks one by name.

Like Simon Willison's `llm`, a backend is a small class whose `stream` yields text pieces;
prompt assembly, timing, logging and the CLI are built on that. Backends register themselves
with `@register_backend`; this module only knows the names of the modules that hold them, so
importing the core never imports llama.cpp or torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError

Message = dict[str, str]
"""A chat message: {"role": "system" | "user" | "assistant", "content": str}."""

# Modules that register a backend when imported; each keeps its heavy imports inside the
# backend's constructor, so importing them all to fill the registry costs milliseconds.
BUILTIN_BACKEND_MODULES = (
    "hybrid_llm.llm.llama_cpp_backend",
    "hybrid_llm.llm.transformers_backend",
    "hybrid_llm.llm.openai_backend",
)


class Backend(Protocol):
    """A loaded model that turns chat messages into streamed text.

    `stream` runs on one thread at a time; `cancel` may be called from any other thread and
    makes the running `stream` stop soon after (it then simply ends), leaving the backend
    usable for the next call. A backend may also offer `warm(system_prompt)`, which the
    provider calls once after loading to pre-process the prompt every request starts with.
    """

    name: str
    context_length: int

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        top_p: float,
        top_k: int,
        stop: Sequence[str] = (),
    ) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


BackendFactory = Callable[[Config, Path | None], Backend]


@dataclass(frozen=True)
class BackendEntry:
    """A registered backend.

    `claims(path)` says whether the backend runs the local model at `path`; backend "auto"
    takes the first that does. None means the backend needs no local model (a server).
    """

    name: str
    factory: BackendFactory
    claims: Callable[[Path], bool] | None = None


_registry: dict[str, BackendEntry] = {}


def register_backend(
    name: str, *, claims: Callable[[Path], bool] | None = None
) -> Callable[[BackendFactory], BackendFactory]:
    """Decorator for a factory `(config, model_path) -> Backend` that registers it as `name`."""

    def decorate(factory: BackendFactory) -> BackendFactory:
        _registry[name] = BackendEntry(name, factory, claims)
        return factory

    return decorate


def registered_backends() -> dict[str, BackendEntry]:
    """All backends by name, after importing the modules that register the built-in ones."""
    for module in BUILTIN_BACKEND_MODULES:
        importlib.import_module(module)
    return dict(_registry)


def choose_backend(config: Config) -> tuple[BackendEntry, Path | None]:
    """The backend the config asks for and the model path it will load (None for a server)."""
    backends = registered_backends()
    wanted = config.model.backend
    if wanted != "auto":
        entry = backends.get(wanted)
        if entry is None:
            raise UserError(f"unknown model.backend {wanted!r}; known: {', '.join(sorted(backends))}")
        return entry, _model_path(config) if entry.claims else None
    path = _model_path(config)
    for entry in backends.values():
        if entry.claims and entry.claims(path):
            return entry, path
    raise UserError(f"no backend can load {path}: set model.backend in config.json")


def create_backend(config: Config) -> Backend:
    """Load the model the config selects with the backend it selects (slow: seconds)."""
    entry, path = choose_backend(config)
    return entry.factory(config, path)


def configured_adapter(config: Config):
    """The installed LoRA adapter that `model.adapter` names (see hybrid_llm.finetune.adapters),
    or None when none is configured."""
    if not config.model.adapter:
        return None
    from hybrid_llm.finetune.adapters import installed_adapter

    adapter = installed_adapter(config)
    if adapter is None:
        raise UserError(f"adapter {config.model.adapter!r} is not installed under models/adapters/")
    return adapter


def _model_path(config: Config) -> Path:
    from hybrid_llm.llm.models import resolve_model_path

    return resolve_model_path(config)
