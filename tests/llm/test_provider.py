"""Background model loading: the caller gets control back at once, a request waits for the load,
a failed load reports the user's fix, and switching models replaces the backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.llm.models import ModelRegistry
from hybrid_llm.llm.prompt import SYSTEM_PROMPT
from hybrid_llm.llm.provider import BackendProvider


def test_loading_happens_in_the_background(tiny_model_dir: Path):
    provider = BackendProvider(Config.model_validate({"model": {"path": str(tiny_model_dir)}}))

    provider.start_loading()
    assert not provider.ready, "start_loading returned before the model was loaded"

    backend = provider.get(timeout=120)
    assert provider.ready
    assert backend.name.startswith("transformers:")
    assert provider.get() is backend, "loaded once"
    assert provider.model_name == str(tiny_model_dir)


def test_a_missing_model_fails_on_get_with_the_pull_command(tmp_path: Path):
    provider = BackendProvider(Config.model_validate({"model": {"path": str(tmp_path / "nope.gguf")}}))
    provider.start_loading()
    with pytest.raises(UserError, match="hybrid-llm models pull") as error:
        provider.get(timeout=30)
    assert "\n" not in str(error.value)


def test_a_corrupt_model_file_fails_with_the_pull_command(tmp_path: Path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"<html>rate limited</html>")
    ModelRegistry().register("broken", broken)
    provider = BackendProvider(Config.model_validate({"model": {"name": "broken"}}))
    with pytest.raises(UserError, match="hybrid-llm models pull"):
        provider.get(timeout=30)


def test_switch_loads_the_named_model(tiny_gguf: Path, tiny_model_dir: Path):
    ModelRegistry().register("tiny", tiny_gguf)
    provider = BackendProvider(Config.model_validate({"model": {"path": str(tiny_model_dir)}}))
    first = provider.get(timeout=120)

    provider.switch("tiny")

    assert provider.model_name == "tiny"
    second = provider.get(timeout=120)
    assert second is not first
    assert second.name == "llama.cpp:tiny-qwen2"
    assert first.model is None, "the old backend was closed"


def test_a_loaded_llama_model_already_holds_the_system_prompt(tiny_gguf: Path):
    """The loader thread warms the cache: the first request starts after the system prompt."""
    provider = BackendProvider(Config.model_validate({"model": {"path": str(tiny_gguf), "n_ctx": 512}}))

    backend = provider.get(timeout=120)

    system_tokens = backend.count_tokens(SYSTEM_PROMPT)
    assert backend._llama.n_tokens > system_tokens
    cached = backend._llama.detokenize(list(backend._llama._input_ids[: backend._llama.n_tokens]))
    assert SYSTEM_PROMPT.encode() in cached
