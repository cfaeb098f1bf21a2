"""The tiny Qwen2: built offline, deterministic, and the same model in transformers and llama.cpp."""

from __future__ import annotations

import numpy as np

from hybrid_llm.finetune.tiny_model import build_tiny_qwen2

CODE = "def area(radius: float) -> float:\n    return 3.14159 * radius ** 2  # ünïcode\n"


def test_same_seed_same_model(tmp_path, tiny_model_dir):
    again = build_tiny_qwen2(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name


def test_chat_template_is_chatml(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.decode(tokenizer(CODE)["input_ids"]) == CODE


def test_gguf_tokenizes_and_predicts_like_transformers(tiny_model_dir, tiny_gguf):
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    expected_ids = AutoTokenizer.from_pretrained(tiny_model_dir)(CODE)["input_ids"]
    llm = Llama(model_path=str(tiny_gguf), n_ctx=256, n_threads=2, logits_all=True, verbose=False)
    assert llm.tokenize(CODE.encode(), add_bos=False, special=False) == expected_ids
    assert llm.tokenize(b"<|im_start|>", add_bos=False, special=True) == [llm.token_eos() - 1]
    llm.eval(expected_ids)
    with torch.no_grad():
        reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(torch.tensor([expected_ids])).logits[0, -1]
    # llama.cpp keeps its KV cache in f16, hence agreement to ~1e-2 rather than float32 precision
    np.testing.assert_allclose(np.array(llm.scores[len(expected_ids) - 1]), reference.numpy(), atol=2e-2)
