"""Convert a peft LoRA adapter for Qwen2 into a GGUF LoRA adapter that llama.cpp applies at load time.

This is what llama.cpp's `convert_lora_to_gguf.py` produces, written with the `gguf` package
alone: that script needs the base model's Hugging Face files (gigabytes the laptop does not have),
while an adapter for a Qwen2 model only needs its own tensors renamed to llama.cpp's names.
llama.cpp scales each pair by `alpha / rank`, exactly as peft does, so the outputs agree.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from hybrid_llm.errors import UserError

_PEFT_TENSOR = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])(?:\.[\w-]+)?\.weight$")
_LAYER = re.compile(r"\.layers\.(\d+)\.")


def _lora_alpha(adapter_config: dict) -> float:
    """The alpha llama.cpp needs for peft's scaling (rsLoRA scales by alpha/sqrt(r), not alpha/r)."""
    alpha = float(adapter_config["lora_alpha"])
    if adapter_config.get("use_rslora"):
        alpha *= math.sqrt(float(adapter_config["r"]))
    return alpha


def check_supported(adapter_config: dict) -> None:
    """Refuse adapters llama.cpp cannot apply as plain LoRA, with the reason."""
    if adapter_config.get("peft_type", "LORA") != "LORA":
        raise UserError(f"adapter type {adapter_config.get('peft_type')} is not supported: only LoRA is")
    if adapter_config.get("use_dora"):
        raise UserError("DoRA adapters are not supported by llama.cpp: train with use_dora=False")
    if adapter_config.get("modules_to_save"):
        raise UserError("adapters that retrain whole modules (modules_to_save) are not supported")
    if adapter_config.get("alpha_pattern"):
        raise UserError("adapters with per-module alpha (alpha_pattern) are not supported")


def convert_peft_lora(peft_dir: Path, out_path: Path, *, dtype: str = "float32") -> Path:
    """Write `out_path` (a GGUF LoRA) from `adapter_config.json` + `adapter_model.safetensors`.

    `dtype` is the numpy type of the stored matrices. float32 is the default because llama.cpp's
    CPU path runs it faster than float16 (bench/adapter_engines.py: decode at 0.62 of the base
    model's speed vs 0.41), at twice the size (74 MB for 1.5B at r=16).
    """
    import gguf
    import torch
    from safetensors.torch import load_file

    peft_dir = Path(peft_dir)
    adapter_config = json.loads((peft_dir / "adapter_config.json").read_text(encoding="utf-8"))
    check_supported(adapter_config)
    tensors = load_file(str(peft_dir / "adapter_model.safetensors"))
    layers = 1 + max((int(m.group(1)) for name in tensors if (m := _LAYER.search(name))), default=0)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, layers)
    writer = gguf.GGUFWriter(str(out_path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN2])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, _lora_alpha(adapter_config))
    for name in sorted(tensors):
        match = _PEFT_TENSOR.match(name)
        if match is None:
            raise UserError(f"unexpected tensor {name} in the adapter: not a LoRA A/B matrix")
        base = names.get_name(match["module"] + ".weight", try_suffixes=(".weight",))
        if base is None:
            raise UserError(f"adapter tensor {name} targets a module llama.cpp does not have")
        # peft stores A as (r, in) and B as (out, r); GGUF reverses dims, giving llama.cpp's
        # expected ne = {in, r} and {r, out}.
        data = tensors[name].to(torch.float32).numpy().astype(dtype)
        writer.add_tensor(f"{base}.lora_{match['part'].lower()}", data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out_path)
