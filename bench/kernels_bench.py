"""llama.cpp kernel settings (issue 17): are batch logits the same as one-token logits, and
what do the settings cost in speed? Every figure from one run, settings interleaved.

Speculative decoding verifies drafted tokens in one batch, plain decoding goes one token at a
time; the answers can only be token-for-token equal if a position's logits do not depend on
how many positions share its batch. For each kernel setting this measures, on the default
model and a real ~1,000-token prompt (this repository's code):
- the largest logit difference between a position decoded alone and in batches of 2 to 17 (one
  row past the largest batch speculative decoding verifies);
- prompt processing tok/s for 1,000 and 250 tokens (the micro-batch the backend uses), one-token decode tok/s, and the
  cost of a batch of n tokens relative to one token (what a verified draft costs);
all as ratios against llama.cpp's defaults (no flash attention, weight repacking, F16 KV cache).
On an engine compiled by `hybrid-llm engine install` the kernels carry our patch
(hybrid_llm/llm/engine_patch.py), which is what makes the last setting exact.

    flock /work/coord/cpu.lock .venv/bin/python bench/kernels_bench.py [--rounds 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hybrid_llm.config import REPO_ROOT, Config  # noqa: E402
from hybrid_llm.llm.llama_cpp_backend import BATCH_INVARIANT_SETTINGS, PATCHED_ENGINE_SETTINGS, load_llama  # noqa: E402
from hybrid_llm.llm.models import resolve_model_path  # noqa: E402
from hybrid_llm.llm.speculative import MAX_VERIFY_BATCH, batch_logit_difference, fill_batch  # noqa: E402
from repl_driver import cpu_model, report  # noqa: E402

KERNEL_SETTINGS = {
    "llama.cpp defaults": {"flash_attention": False, "repack_weights": True, "kv_cache": "f16"},
    "flash attention, F16 cache": {"flash_attention": True, "repack_weights": False, "kv_cache": "f16"},
    "flash attention, Q8_0 cache, repacking": {"flash_attention": True, "repack_weights": True, "kv_cache": "q8_0"},
    "ours on any engine: flash attention, Q8_0 cache": BATCH_INVARIANT_SETTINGS,
    "ours on the patched engine: flash attention, F16 cache, repacking": PATCHED_ENGINE_SETTINGS,
}
REFERENCE = "llama.cpp defaults"
PROMPT_TOKENS = 1000
SHORT_PROMPT_TOKENS = 250  # a short request after a cached system prompt
BATCH_SIZES = tuple(range(2, MAX_VERIFY_BATCH + 2))
DECODE_REPEATS = 8


def prompt_tokens(llama) -> list[int]:
    text = (REPO_ROOT / "hybrid_llm" / "llm" / "speculative.py").read_text(encoding="utf-8")
    return llama.tokenize(text.encode(), add_bos=False)[:PROMPT_TOKENS]


class BatchTimer:
    """Decodes one batch (a position per row, logits at each) and returns its seconds."""

    def __init__(self, llama) -> None:
        import llama_cpp

        self.llama = llama
        self.batch = llama_cpp.llama_batch_init(max(BATCH_SIZES), 0, 1)

    def decode(self, tokens: list[int], start: int) -> float:
        import llama_cpp

        fill_batch(self.batch, tokens, start)
        self.llama._ctx.kv_cache_seq_rm(-1, start, -1)
        started = time.perf_counter()
        if llama_cpp.llama_decode(self.llama.ctx, self.batch) != 0:
            raise RuntimeError("llama_decode failed")
        return time.perf_counter() - started

    def close(self) -> None:
        import llama_cpp

        llama_cpp.llama_batch_free(self.batch)


def measure(model: Path, kernels: dict, threads: int) -> dict:
    llama = load_llama(model, n_ctx=2048, threads=threads, kernels=kernels)
    timer = BatchTimer(llama)
    tokens = prompt_tokens(llama)
    context, follow = tokens[:-max(BATCH_SIZES)], tokens[-max(BATCH_SIZES):]
    llama.eval(tokens[:16])  # first-call set-up is not prompt processing
    llama.reset()
    started = time.perf_counter()
    llama.eval(tokens[:SHORT_PROMPT_TOKENS])
    short_prefill_s = time.perf_counter() - started
    llama.reset()
    started = time.perf_counter()
    llama.eval(context)
    prefill_s = time.perf_counter() - started
    start = len(context)
    one = statistics.median(timer.decode(follow[:1], start) for _ in range(DECODE_REPEATS))
    batch_cost = {size: statistics.median(timer.decode(follow[:size], start) for _ in range(DECODE_REPEATS)) / one
                  for size in BATCH_SIZES}
    timer.close()
    difference = {size: batch_logit_difference(llama, follow[:size], start) for size in BATCH_SIZES}
    llama.close()
    return {"prefill_tok_s": len(context) / prefill_s, "short_prefill_tok_s": SHORT_PROMPT_TOKENS / short_prefill_s,
            "decode_tok_s": 1 / one,
            "batch_cost": batch_cost, "max_logit_difference": difference}


def combine(runs: list[dict]) -> dict:
    """Medians over rounds; the logit difference is the largest seen."""
    return {
        "prefill_tok_s": round(statistics.median(r["prefill_tok_s"] for r in runs), 1),
        "short_prefill_tok_s": round(statistics.median(r["short_prefill_tok_s"] for r in runs), 1),
        "decode_tok_s": round(statistics.median(r["decode_tok_s"] for r in runs), 2),
        "batch_cost_vs_one_token": {size: round(statistics.median(r["batch_cost"][size] for r in runs), 2)
                                    for size in BATCH_SIZES},
        "max_logit_difference_batch_vs_alone": {size: round(max(r["max_logit_difference"][size] for r in runs), 4)
                                                for size in BATCH_SIZES},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = resolve_model_path(Config())
    runs: dict[str, list[dict]] = {name: [] for name in KERNEL_SETTINGS}
    for _ in range(args.rounds):
        for name, kernels in KERNEL_SETTINGS.items():
            runs[name].append(measure(model, kernels, args.threads))
            print(name, json.dumps(runs[name][-1], default=str), flush=True)
    results = {name: combine(values) for name, values in runs.items()}
    reference = results[REFERENCE]
    for row in results.values():
        row["prefill_vs_defaults"] = round(row["prefill_tok_s"] / reference["prefill_tok_s"], 3)
        row["short_prefill_vs_defaults"] = round(row["short_prefill_tok_s"] / reference["short_prefill_tok_s"], 3)
        row["decode_vs_defaults"] = round(row["decode_tok_s"] / reference["decode_tok_s"], 3)
    result = {"model": model.name, "cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": args.threads,
              "prompt_tokens": PROMPT_TOKENS, "rounds": args.rounds, "settings": KERNEL_SETTINGS, "results": results}
    report(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
