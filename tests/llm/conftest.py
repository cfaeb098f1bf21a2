"""Fixtures for the LLM area: a tiny Qwen2 built locally (never downloaded), as a Hugging Face
directory and as a GGUF file, so both engines run real code paths in about a second."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hybrid_llm.finetune.tiny_model import build_tiny_qwen2

    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hybrid_llm.finetune.tiny_model import export_gguf

    return export_gguf(tiny_model_dir, tmp_path_factory.mktemp("tiny-gguf") / "tiny-qwen2.gguf")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
