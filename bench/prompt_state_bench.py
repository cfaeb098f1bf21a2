"""`hybrid-llm ask` in a script: time to first token and process wall time with the system
prompt's KV state loaded from disk (`model.prompt_state_cache`, the default) vs processed
again in every process (the key off), same run, alternating, real default model.

    flock /work/coord/cpu.lock .venv/bin/python bench/prompt_state_bench.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from repl_driver import cpu_model, report  # noqa: E402

REQUEST = "Write a Python function that checks whether a string is a palindrome."


def ask(home: Path, config: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hybrid_llm", "ask", "--no-rag", "--json", REQUEST],
        capture_output=True, text=True, check=True,
        env={**os.environ, "HYBRID_LLM_HOME": str(home), "HYBRID_LLM_CONFIG": str(config)},
    )
    wall = time.perf_counter() - started
    timings = json.loads(done.stdout)["timings"]
    return {"ttft_s": timings["ttft_ms"] / 1000, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="prompt-state-bench-"))
    configs = {}
    for name, enabled in (("saved", True), ("processed", False)):
        configs[name] = scratch / f"{name}.json"
        configs[name].write_text(json.dumps({
            "model": {"prompt_state_cache": enabled},
            "generation": {"temperature": 0, "max_tokens": 8},
            "logging": {"log_requests": False},
        }))
    ask(scratch, configs["saved"])  # the first process saves the state
    runs: dict[str, list[dict]] = {"saved": [], "processed": []}
    for number in range(args.runs):
        for name in (("processed", "saved") if number % 2 == 0 else ("saved", "processed")):
            runs[name].append(ask(scratch, configs[name]))
            print(name, runs[name][-1], file=sys.stderr, flush=True)
    medians = {name: {key: round(statistics.median(run[key] for run in values), 2) for key in ("ttft_s", "wall_s")}
               for name, values in runs.items()}
    result = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "runs": runs, "medians": medians,
        "ttft_ratio": round(medians["saved"]["ttft_s"] / medians["processed"]["ttft_s"], 3),
        "wall_ratio": round(medians["saved"]["wall_s"] / medians["processed"]["wall_s"], 3),
    }
    report(result, args.json)


if __name__ == "__main__":
    main()
