"""The system prompt's KV state saved to disk: used by the next process, rejected and rebuilt
when the model, adapter or n_ctx differ (or the file is damaged). Real llama.cpp on the tiny
GGUF built locally; one slow test checks on the default model that a restored state answers
exactly like a processed one."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from hybrid_llm.config import Config
from hybrid_llm.llm.base import create_backend
from hybrid_llm.llm.llama_cpp_backend import LlamaCppBackend
from hybrid_llm.llm.prompt import SYSTEM_PROMPT
from hybrid_llm.llm.prompt_state import PromptStateCache

WARM_UP = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": ""}]
REQUEST = [{"role": "system", "content": SYSTEM_PROMPT},
           {"role": "user", "content": "Write a Python function that reverses a string."}]


@pytest.fixture
def model(tiny_gguf: Path, tmp_path: Path) -> Path:
    """A private copy, so a test may touch it like a replaced model file."""
    return Path(shutil.copy(tiny_gguf, tmp_path / "model.gguf"))


def _warmed(model: Path, cache: PromptStateCache | None, n_ctx: int = 512) -> LlamaCppBackend:
    backend = LlamaCppBackend(model, n_ctx=n_ctx, threads=1, prompt_state=cache)
    backend.warm(SYSTEM_PROMPT)
    return backend


def _restores(model: Path, cache: PromptStateCache, n_ctx: int = 512) -> bool:
    """Whether a fresh model accepts the saved state, and then holds the system prompt."""
    backend = LlamaCppBackend(model, n_ctx=n_ctx, threads=1)
    try:
        prompt = backend._chat.tokens(WARM_UP)
        restored = cache.restore(backend._llama, prompt)
        assert list(backend._llama._input_ids) == (prompt if restored else [])
        return restored
    finally:
        backend.close()


def test_saved_once_owner_only_and_used_by_the_next_process(model: Path, tmp_path: Path) -> None:
    cache = PromptStateCache(model, adapter_path=None, n_ctx=512, directory=tmp_path / "states")
    _warmed(model, cache).close()
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.path.parent.stat().st_mode) == 0o700
    saved = cache.path.stat().st_mtime_ns
    assert _restores(model, cache)

    answers = []
    for state in (cache, None):  # restored (the file is not written again), then processed
        backend = _warmed(model, state)
        answers.append("".join(backend.stream(REQUEST, max_tokens=8, temperature=0, top_p=1, top_k=1)))
        backend.close()
    assert cache.path.stat().st_mtime_ns == saved
    assert answers[0] == answers[1]


def test_rejected_and_rebuilt_when_n_ctx_differs(model: Path, tmp_path: Path) -> None:
    directory = tmp_path / "states"
    _warmed(model, PromptStateCache(model, adapter_path=None, n_ctx=512, directory=directory)).close()
    bigger = PromptStateCache(model, adapter_path=None, n_ctx=1024, directory=directory)
    assert not _restores(model, bigger, n_ctx=1024)
    _warmed(model, bigger, n_ctx=1024).close()  # rebuilt for the new size ...
    assert _restores(model, bigger, n_ctx=1024)
    assert not _restores(model, PromptStateCache(model, adapter_path=None, n_ctx=512, directory=directory))


def test_rejected_and_rebuilt_when_the_model_file_changes(model: Path, tmp_path: Path) -> None:
    directory = tmp_path / "states"
    _warmed(model, PromptStateCache(model, adapter_path=None, n_ctx=512, directory=directory)).close()
    os.utime(model, ns=(1, 1))  # replaced by another download, say
    replaced = PromptStateCache(model, adapter_path=None, n_ctx=512, directory=directory)
    assert not _restores(model, replaced)
    _warmed(model, replaced).close()
    assert _restores(model, replaced)


def test_rejected_when_the_adapter_differs(model: Path, tmp_path: Path) -> None:
    directory = tmp_path / "states"
    adapter = tmp_path / "adapter.gguf"
    adapter.write_bytes(b"adapter weights, version 1")
    with_adapter = PromptStateCache(model, adapter_path=adapter, n_ctx=512, directory=directory)
    _warmed(model, with_adapter).close()
    assert not _restores(model, PromptStateCache(model, adapter_path=None, n_ctx=512, directory=directory))
    assert _restores(model, with_adapter)
    adapter.write_bytes(b"adapter weights, version 2 (retrained)")
    retrained = PromptStateCache(model, adapter_path=adapter, n_ctx=512, directory=directory)
    assert retrained.path == with_adapter.path and not _restores(model, retrained)


def test_a_damaged_file_is_rejected_and_rebuilt(model: Path, tmp_path: Path) -> None:
    cache = PromptStateCache(model, adapter_path=None, n_ctx=512, directory=tmp_path / "states")
    _warmed(model, cache).close()
    data = bytearray(cache.path.read_bytes())
    data[-10] ^= 0xFF
    cache.path.write_bytes(bytes(data))
    assert not _restores(model, cache)
    _warmed(model, cache).close()
    assert _restores(model, cache)


def test_the_config_key_turns_it_off(model: Path, hybrid_home: Path) -> None:
    config = Config.model_validate({"model": {"path": str(model), "n_ctx": 512, "threads": 1}})
    create_backend(config).warm(SYSTEM_PROMPT)
    assert list((hybrid_home / "prompt-states").glob("*.state"))
    shutil.rmtree(hybrid_home / "prompt-states")
    config.model.prompt_state_cache = False
    create_backend(config).warm(SYSTEM_PROMPT)
    assert not (hybrid_home / "prompt-states").exists()


@pytest.mark.slow
def test_a_restored_state_answers_like_a_processed_prompt(default_model_file: Path, tmp_path: Path) -> None:
    cache = PromptStateCache(default_model_file, adapter_path=None, n_ctx=2048, directory=tmp_path)
    answers = []
    for _ in range(2):  # the first process saves the state, the second loads it
        backend = LlamaCppBackend(default_model_file, n_ctx=2048, prompt_state=cache)
        backend.warm(SYSTEM_PROMPT)
        answers.append("".join(backend.stream(REQUEST, max_tokens=24, temperature=0, top_p=1, top_k=1)))
        backend.close()
    assert _restores(default_model_file, cache, n_ctx=2048)
    assert answers[0] == answers[1] and answers[0]
