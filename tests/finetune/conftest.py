"""Fixtures for the fine-tuning tests: the tiny Qwen2 (built once per session) and adapter zips."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from hybrid_llm.finetune.tiny_model import TINY_BASE_MODEL, build_tiny_qwen2, export_gguf


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Qwen2 with a locally trained tokenizer, in a dir named like its base model."""
    return build_tiny_qwen2(tmp_path_factory.mktemp("base") / "tiny-qwen2")


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model_dir: Path) -> Path:
    return export_gguf(tiny_model_dir, tiny_model_dir.parent / "tiny-qwen2.gguf")


def _make_adapter_zip(
    base_dir: Path,
    out: Path,
    *,
    base_model: str = TINY_BASE_MODEL,
    name: str = "tiny-adapter",
    seed: int = 1,
) -> Path:
    """A LoRA adapter zip shaped like the notebook's, with random (non-zero) A and B matrices.

    `init_lora_weights=False` makes B random instead of zero, so the adapter changes the output
    without training; the notebook test covers a trained one.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    )
    adapter_dir = out.parent / f"{out.stem}-files"
    peft_model.save_pretrained(adapter_dir)
    files = {
        name: hashlib.sha256((adapter_dir / name).read_bytes()).hexdigest()
        for name in ("adapter_config.json", "adapter_model.safetensors")
    }
    manifest = {
        "format": "hybrid-llm-adapter",
        "version": 1,
        "name": name,
        "base_model": base_model,
        "base_config": {
            "model_type": "qwen2",
            "hidden_size": model.config.hidden_size,
            "num_hidden_layers": model.config.num_hidden_layers,
            "vocab_size": model.config.vocab_size,
        },
        "lora": {"r": 4, "alpha": 8},
        "files": files,
    }
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        for file_name in files:
            archive.write(adapter_dir / file_name, file_name)
    return out


@pytest.fixture
def make_adapter_zip():
    """`make_adapter_zip(base_dir, out_zip, *, base_model=..., name=..., seed=...) -> Path`."""
    return _make_adapter_zip
