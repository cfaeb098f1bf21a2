"""Check the transformers backend's GPU path: 4-bit nf4 weights (bitsandbytes) and generation.

Needs a CUDA GPU and `pip install bitsandbytes` (the `gpu` extra). Nothing is downloaded: pass a
local Hugging Face model directory, or none to use the tiny Qwen2 built on the spot.

    python bench/gpu_check.py [MODEL_DIR] [--adapter PEFT_DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", type=Path)
    parser.add_argument("--adapter", type=Path)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    import torch

    from hybrid_llm.llm.transformers_backend import TransformersBackend

    if not torch.cuda.is_available():
        print("no CUDA GPU: the 4-bit path cannot run here")
        return 2
    model_dir = args.model_dir
    if model_dir is None:
        from hybrid_llm.finetune.tiny_model import build_tiny_qwen2

        model_dir = build_tiny_qwen2(Path(tempfile.mkdtemp()), hidden_size=256)
    started = time.perf_counter()
    backend = TransformersBackend(model_dir, n_ctx=4096, adapter_dir=args.adapter)
    load_s = time.perf_counter() - started
    weights = {str(p.dtype) for p in backend.model.parameters()}
    print(f"device: {torch.cuda.get_device_name(0)}")
    print(f"loaded {backend.name} in {load_s:.1f} s; parameter dtypes {sorted(weights)}")
    print(f"4-bit: {getattr(backend.model, 'is_loaded_in_4bit', False)}; "
          f"GPU memory {torch.cuda.memory_allocated() / 2**20:.0f} MiB")
    messages = [{"role": "user", "content": "Write a Python function that reverses a string."}]
    started = time.perf_counter()
    first = None
    pieces = []
    for piece in backend.stream(messages, max_tokens=args.max_tokens, temperature=0.0, top_p=1.0, top_k=0):
        first = first or time.perf_counter()
        pieces.append(piece)
    total = time.perf_counter() - started
    text = "".join(pieces)
    tokens = backend.count_tokens(text)
    print(f"ttft {((first or started) - started) * 1000:.0f} ms; {tokens} tokens in {total:.2f} s "
          f"({tokens / total:.1f} tok/s)")
    print(text[:400])
    return 0 if text else 1


if __name__ == "__main__":
    raise SystemExit(main())
