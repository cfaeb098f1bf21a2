"""Compare llama.cpp builds on the default model, every figure from one run (issue 14).

Each build lives in its own Python environment (`--python LABEL=/path/to/python`, the first one
is the reference: normally the install's `.venv`). For each round, every build runs the same
measurement in a fresh child process, interleaved A/B/A/B so that load on the machine hits all
builds alike: llama-cpp-python called directly (no project code), 2 threads, a ~1,000-token
prompt evaluated in 128-token micro-batches (as the backend does), then 32 greedy tokens.
A build that dies is reported with the signal that killed it (e.g. SIGILL for AMX kernels the
CPU or kernel refuses), not as a crash of the benchmark.

    .venv/bin/python bench/engine_builds.py --python native=.venv/bin/python \\
        --python amx=/tmp/amx-venv/bin/python [--rounds 3] [--json out.json]

A build is worth adopting over the reference only if it passes the smoke test and its prefill
ratio is >= 1.5 (issue 14's bar for the AMX build).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hybrid_llm.config import REPO_ROOT  # noqa: E402
from hybrid_llm.llm.engine_check import describe_exit  # noqa: E402
from repl_driver import cpu_model, report  # noqa: E402

MODEL = REPO_ROOT / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"

# Runs inside each build's interpreter: nothing from this project is importable there.
CHILD = r"""
import json, sys, time
import llama_cpp
model, threads = sys.argv[1], int(sys.argv[2])
source = open(sys.argv[3]).read()
llm = llama_cpp.Llama(model_path=model, n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                      n_ubatch=128, verbose=False)
tokens = llm.tokenize(source.encode())[:1000]
start = time.perf_counter(); llm.eval(tokens); prefilled = time.perf_counter()
token = llm.sample(temp=0.0)
decode_start = time.perf_counter()
for _ in range(32):
    llm.eval([token]); token = llm.sample(temp=0.0)
end = time.perf_counter()
info = llama_cpp.llama_print_system_info().decode(errors="replace")
print(json.dumps({"prefill_tok_s": len(tokens) / (prefilled - start), "decode_tok_s": 32 / (end - decode_start),
                  "amx": "AMX_INT8 = 1" in info}))
"""


def measure(python: str, threads: int, prompt_file: Path) -> dict:
    child = subprocess.run([python, "-c", CHILD, str(MODEL), str(threads), str(prompt_file)],
                           capture_output=True, text=True, timeout=900)
    if child.returncode != 0:
        return {"error": describe_exit(child.returncode, child.stderr)}
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", required=True, metavar="LABEL=PATH",
                        help="a build's interpreter; the first is the reference")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    builds = dict(item.split("=", 1) for item in args.python)
    prompt_file = REPO_ROOT / "hybrid_llm" / "rag" / "index.py"  # real code, well over 1,000 tokens
    runs: dict[str, list[dict]] = {label: [] for label in builds}
    for round_number in range(args.rounds):
        for label, python in builds.items():
            result = measure(python, args.threads, prompt_file)
            runs[label].append(result)
            print(f"round {round_number + 1} {label}: {result}", flush=True)
    reference = next(iter(builds))
    summary = {"cpu": cpu_model(), "threads": args.threads, "reference": reference, "builds": {}}
    for label, results in runs.items():
        good = [r for r in results if "error" not in r]
        if not good:
            summary["builds"][label] = {"error": results[0]["error"]}
            continue
        summary["builds"][label] = {
            "prefill_tok_s": statistics.median(r["prefill_tok_s"] for r in good),
            "decode_tok_s": statistics.median(r["decode_tok_s"] for r in good),
            "amx": good[0]["amx"], "failed_runs": len(results) - len(good),
        }
    ref = summary["builds"].get(reference, {})
    for label, figures in summary["builds"].items():
        if "error" in figures or "error" in ref:
            continue
        figures["prefill_ratio"] = round(figures["prefill_tok_s"] / ref["prefill_tok_s"], 2)
        figures["decode_ratio"] = round(figures["decode_tok_s"] / ref["decode_tok_s"], 2)
    report(summary, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
