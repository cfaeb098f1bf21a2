"""The GGUF LoRA made from a peft adapter makes llama.cpp compute what transformers+peft computes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybrid_llm.errors import UserError
from hybrid_llm.finetune.lora_gguf import check_supported, convert_peft_lora

PROMPT = "def area(radius):\n    return"


def _unzip(archive, target):
    import zipfile

    with zipfile.ZipFile(archive) as content:
        content.extractall(target)
    return target


def _transformers_logits(model_dir, adapter_dir, token_ids):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter_dir)
    with torch.no_grad():
        return model(input_ids=torch.tensor([token_ids])).logits[0, -1].numpy()


def _llama_cpp_logits(gguf_path, lora_path, token_ids):
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf_path), lora_path=str(lora_path) if lora_path else None,
                n_ctx=256, n_threads=2, logits_all=True, verbose=False)
    llm.eval(token_ids)
    return np.array(llm.scores[len(token_ids) - 1])


def test_llama_cpp_with_the_converted_adapter_matches_peft(tmp_path, tiny_model_dir, tiny_gguf, make_adapter_zip):
    from transformers import AutoTokenizer

    adapter_dir = _unzip(make_adapter_zip(tiny_model_dir, tmp_path / "a.zip"), tmp_path / "adapter")
    lora = convert_peft_lora(adapter_dir, tmp_path / "adapter.gguf")
    token_ids = AutoTokenizer.from_pretrained(tiny_model_dir)(PROMPT)["input_ids"]

    expected = _transformers_logits(tiny_model_dir, adapter_dir, token_ids)
    with_lora = _llama_cpp_logits(tiny_gguf, lora, token_ids)
    without = _llama_cpp_logits(tiny_gguf, None, token_ids)
    # llama.cpp's f16 KV cache: agreement to a small fraction of the logit spread, far closer
    # than the base model is to the adapted one.
    spread = expected.max() - expected.min()
    assert np.abs(with_lora - expected).max() < 0.02 * spread
    assert np.abs(without - expected).max() > 10 * np.abs(with_lora - expected).max()
    assert with_lora.argmax() == expected.argmax()


def test_rslora_scale_is_folded_into_alpha(tmp_path, tiny_model_dir, make_adapter_zip):
    import gguf

    adapter_dir = _unzip(make_adapter_zip(tiny_model_dir, tmp_path / "a.zip"), tmp_path / "adapter")
    config_path = adapter_dir / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "use_rslora": True}))
    reader = gguf.GGUFReader(str(convert_peft_lora(adapter_dir, tmp_path / "rs.gguf")))
    # llama.cpp scales by alpha/r; rsLoRA means alpha/sqrt(r): alpha 8, r 4 -> 8*2 = 16
    assert reader.get_field("adapter.lora.alpha").contents() == pytest.approx(16.0)


@pytest.mark.parametrize(
    "config, reason",
    [
        ({"peft_type": "IA3"}, "only LoRA is"),
        ({"peft_type": "LORA", "use_dora": True}, "DoRA"),
        ({"peft_type": "LORA", "modules_to_save": ["lm_head"]}, "modules_to_save"),
    ],
)
def test_adapters_llama_cpp_cannot_apply_are_refused(config, reason):
    with pytest.raises(UserError, match=reason):
        check_supported(config)
