"""The transformers backend on CPU with the tiny Qwen2 built locally (random weights, never
downloaded): streaming, cancellation, a LoRA adapter, and a quiet load."""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

from hybrid_llm.config import Config
from hybrid_llm.llm.base import choose_backend, create_backend
from hybrid_llm.llm.transformers_backend import TransformersBackend

GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": 0}
CHAT = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "def add(a, b):"}]


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> TransformersBackend:
    return TransformersBackend(tiny_model_dir, n_ctx=1024)


@pytest.fixture(scope="module")
def lora_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter with non-zero weights (peft's default init would be a no-op)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("lora")
    with warnings.catch_warnings():  # peft trips a transformers deprecation notice
        warnings.simplefilter("ignore", FutureWarning)
        get_peft_model(base, lora).save_pretrained(out)
    return out


def last_logits(model_backend: TransformersBackend) -> torch.Tensor:
    inputs = model_backend.encode_chat(CHAT)
    with torch.no_grad():
        return model_backend.model(**inputs).logits[0, -1]


def test_auto_picks_transformers_for_a_model_directory(tiny_model_dir: Path):
    config = Config.model_validate({"model": {"path": str(tiny_model_dir)}})
    entry, path = choose_backend(config)
    assert (entry.name, path) == ("transformers", tiny_model_dir)
    assert create_backend(config).context_length == 1024 * 2  # min(n_ctx 4096, the model's 2048)


def test_streams_what_greedy_generate_produces(backend: TransformersBackend):
    pieces = list(backend.stream(CHAT, max_tokens=12, **GREEDY))

    inputs = backend.encode_chat(CHAT)
    expected_ids = backend.model.generate(**inputs, max_new_tokens=12, do_sample=False)
    expected = backend._tokenizer.decode(expected_ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert len(pieces) > 1, "streamed in several pieces, not at the end"
    assert "".join(pieces) == expected


def test_cancel_stops_generation_and_the_backend_stays_usable(backend: TransformersBackend):
    stream = backend.stream(CHAT, max_tokens=1000, **GREEDY)
    next(stream)
    backend.cancel()
    started = time.perf_counter()
    rest = "".join(stream)
    assert time.perf_counter() - started < 0.2
    assert backend.count_tokens(rest) < 50, "stopped long before max_tokens"
    assert "".join(backend.stream(CHAT, max_tokens=5, **GREEDY))


def test_cancel_from_another_thread_while_streaming(backend: TransformersBackend):
    received: list[str] = []
    timer = threading.Timer(0.2, backend.cancel)
    timer.start()
    started = time.perf_counter()
    for piece in backend.stream(CHAT, max_tokens=5000, **GREEDY):
        received.append(piece)
    assert time.perf_counter() - started < 0.2 + 0.5
    assert received


def test_lora_adapter_changes_the_logits(tiny_model_dir: Path, lora_dir: Path, backend: TransformersBackend):
    adapted = TransformersBackend(tiny_model_dir, n_ctx=1024, adapter_dir=lora_dir)

    assert adapted.name.endswith(f"+{lora_dir.name}")
    difference = (last_logits(adapted) - last_logits(backend)).abs().max().item()
    assert difference > 1e-3


def test_loading_prints_nothing(tiny_model_dir: Path, capfd):
    TransformersBackend(tiny_model_dir, n_ctx=512)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
