"""Shared fixtures: every test gets its own HYBRID_LLM_HOME so no state leaks between tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybrid_llm.config import REPO_ROOT

DEFAULT_MODEL_FILE = REPO_ROOT / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


@pytest.fixture(autouse=True)
def hybrid_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh state directory per test, and the shipped config unless a test overrides it."""
    home = tmp_path_factory.mktemp("hybrid_home")
    monkeypatch.setenv("HYBRID_LLM_HOME", str(home))
    monkeypatch.delenv("HYBRID_LLM_CONFIG", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return home


@pytest.fixture(autouse=True)
def restore_network_guard() -> Iterator[None]:
    """Tests that call `main()` in-process install the offline guard; later tests (and the
    Python children they start, which inherit it) must not run under a leftover guard."""
    from hybrid_llm.net import guard

    was_offline = guard.is_offline()
    yield
    if not was_offline and guard.is_offline():
        guard.disable()


@pytest.fixture(scope="session")
def default_model_file() -> Path:
    """The real default GGUF model; tests that need it skip with the fix when it is absent."""
    if not DEFAULT_MODEL_FILE.exists():
        message = "default model missing: run `hybrid-llm models pull`"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs the model, so its absence there is a real failure
        pytest.skip(message)
    return DEFAULT_MODEL_FILE
