"""LLM engine benchmark on the default GGUF model (issue 5), every figure from one run.

1. Overhead: prefill tok/s on a ~1,000-token prompt, decode tok/s and time to first token for
   (a) our LlamaCppBackend and (b) llama-cpp-python's `create_chat_completion` called directly
   with the same settings, interleaved a/b/a/b; reported as medians and the ratio a/b.
2. Prefix reuse: the first turn of a conversation, then a follow-up on the same Llama object
   (KV cache kept) against the same follow-up prompt evaluated cold; ratio of TTFTs.
3. Speculative decoding (`--only speculative`, issue 17), one set of requests per run
   (`--set edit`: the answer rewrites code from this repository shown in the prompt; `--set
   generic`: HumanEval-style tasks): greedy decode tok/s with `off`, `lookup`, `draft` and
   `auto`, acceptance rate, whether each answer equals `off`'s, time to first token and RSS.
4. Cancellation during prompt processing: for llama.cpp's default micro-batch (512 tokens, the
   reference) and smaller ones, prefill tok/s and how long after `cancel()` the stream ends,
   with the cancel sent at points spread over the processing of the prompt.
5. `hybrid-llm ask` with retrieval over a real repository (this one, indexed first), in a fresh
   process: TTFT, total time for ~200 tokens, peak RSS of that process.

Run when the machine is otherwise quiet (about 30 minutes on 2 cores):
    nice .venv/bin/python bench/llm_bench.py [--threads 2] [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hybrid_llm.config import REPO_ROOT, Config  # noqa: E402
from hybrid_llm.llm import speculative  # noqa: E402
from hybrid_llm.llm.llama_cpp_backend import (BATCH_INVARIANT_SETTINGS, PATCHED_ENGINE_SETTINGS,  # noqa: E402
                                              PREFILL_UBATCH, LlamaCppBackend, kernel_settings, load_llama,
                                              verify_batch_limit)
from hybrid_llm.llm.models import draft_model_path, resolve_model_path  # noqa: E402
from hybrid_llm.llm.prompt import SYSTEM_PROMPT  # noqa: E402

SETTINGS = {"max_tokens": 128, "temperature": 0.0, "top_p": 1.0, "top_k": 1}
N_CTX = 4096


def code_context(tokens_wanted: int, count) -> str:
    """Real code from this repository, cut to about `tokens_wanted` tokens."""
    text = ""
    for path in sorted((REPO_ROOT / "hybrid_llm").rglob("*.py")):
        text += f"### {path.relative_to(REPO_ROOT)}\n{path.read_text()}\n"
        if count(text) >= tokens_wanted:
            break
    while count(text) > tokens_wanted:
        text = text[: int(len(text) * 0.95)]
    return text


def long_prompt_messages(count) -> list[dict]:
    context = code_context(950, count)
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Code from the repository:\n\n{context}\n\nRequest: summarise what this code does."},
    ]


def timed_stream(pieces_iter, count) -> dict:
    started = time.perf_counter()
    first = None
    text = []
    for piece in pieces_iter:
        first = first or time.perf_counter()
        text.append(piece)
    end = time.perf_counter()
    first = first or end
    answer = "".join(text)
    return {"ttft_s": first - started, "decode_s": end - first, "completion_tokens": count(answer), "text": answer}


def direct_stream(llama, messages):
    """(b): the binding itself, as a user of llama-cpp-python would call it."""
    for chunk in llama.create_chat_completion(messages=messages, stream=True, **SETTINGS):
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            yield text


def prompt_tokens(llama, messages) -> int:
    """Tokens of the prompt the binding evaluates (Qwen2.5's template is ChatML)."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return len(llama.tokenize((text + "<|im_start|>assistant\n").encode(), add_bos=False, special=True))


def summarise(runs: list[dict], n_prompt: int) -> dict:
    ttft = statistics.median(r["ttft_s"] for r in runs)
    decode = statistics.median((r["completion_tokens"] - 1) / r["decode_s"] for r in runs if r["decode_s"] > 0)
    return {"ttft_s": round(ttft, 3), "prefill_tok_s": round(n_prompt / ttft, 1), "decode_tok_s": round(decode, 2),
            "completion_tokens": runs[0]["completion_tokens"]}


def bench_overhead(model: Path, threads: int, runs: int) -> dict:
    backend = LlamaCppBackend(model, n_ctx=N_CTX, threads=threads, speculative="off")
    llama = backend._llama  # the same weights for (a) and (b): no second 1 GB mapping
    messages = long_prompt_messages(backend.count_tokens)
    n_prompt = prompt_tokens(llama, messages)
    ours, direct = [], []
    for _ in range(runs):
        llama.reset()  # no prefix reuse between runs: each one processes the whole prompt
        ours.append(timed_stream(backend.stream(messages, **SETTINGS), backend.count_tokens))
        llama.reset()
        direct.append(timed_stream(direct_stream(llama, messages), backend.count_tokens))
    a, b = summarise(ours, n_prompt), summarise(direct, n_prompt)
    backend.close()
    return {
        "prompt_tokens": n_prompt,
        "ours": a,
        "direct": b,
        "ratio_prefill": round(a["prefill_tok_s"] / b["prefill_tok_s"], 3),
        "ratio_decode": round(a["decode_tok_s"] / b["decode_tok_s"], 3),
        "ratio_ttft": round(b["ttft_s"] / a["ttft_s"], 3),
    }


def bench_prefix_reuse(model: Path, threads: int) -> dict:
    backend = LlamaCppBackend(model, n_ctx=N_CTX, threads=threads)
    first_messages = long_prompt_messages(backend.count_tokens)
    first = timed_stream(backend.stream(first_messages, **SETTINGS), backend.count_tokens)
    follow_up = [*first_messages, {"role": "assistant", "content": first["text"]},
                 {"role": "user", "content": "Which module loads the model?"}]
    warm = timed_stream(backend.stream(follow_up, **{**SETTINGS, "max_tokens": 16}), backend.count_tokens)
    backend._llama.reset()
    cold = timed_stream(backend.stream(follow_up, **{**SETTINGS, "max_tokens": 16}), backend.count_tokens)
    backend.close()
    return {
        "first_turn_ttft_s": round(first["ttft_s"], 3),
        "second_turn_ttft_s": round(warm["ttft_s"], 3),
        "second_turn_cold_ttft_s": round(cold["ttft_s"], 3),
        "speedup_vs_first": round(first["ttft_s"] / warm["ttft_s"], 1),
        "speedup_vs_cold": round(cold["ttft_s"] / warm["ttft_s"], 1),
    }


EDIT_INSTRUCTIONS = (
    "Add type hints to every parameter and the return value. Print the whole edited function.",
    "Add a docstring that explains each parameter. Print the whole edited function.",
    "Add a `logging.debug` call at the start that shows the arguments. Print the whole edited function.",
    "Rename every local variable to a longer, more descriptive name. Print the whole edited function.",
)
GENERIC_TASKS = (
    "def has_close_elements(numbers: list[float], threshold: float) -> bool:\n"
    "    \"\"\"True if any two numbers are closer to each other than threshold.\"\"\"",
    "def separate_paren_groups(text: str) -> list[str]:\n"
    "    \"\"\"Split a string of balanced, non-nested parenthesis groups into the groups.\"\"\"",
    "def below_zero(operations: list[int]) -> bool:\n"
    "    \"\"\"Deposits and withdrawals on an account starting at 0: does the balance ever go below 0?\"\"\"",
    "def mean_absolute_deviation(numbers: list[float]) -> float:\n"
    "    \"\"\"Mean absolute deviation around the mean of the numbers.\"\"\"",
    "def intersperse(numbers: list[int], delimiter: int) -> list[int]:\n"
    "    \"\"\"Insert delimiter between every two consecutive elements.\"\"\"",
    "def parse_nested_parens(text: str) -> list[int]:\n"
    "    \"\"\"For each space-separated group of parentheses, its deepest level of nesting.\"\"\"",
    "def rolling_max(numbers: list[int]) -> list[int]:\n"
    "    \"\"\"The running maximum of the numbers up to each position.\"\"\"",
    "def make_palindrome(text: str) -> str:\n"
    "    \"\"\"The shortest palindrome that begins with text.\"\"\"",
    "def string_xor(a: str, b: str) -> str:\n"
    "    \"\"\"Bitwise XOR of two strings of 0s and 1s, as a string.\"\"\"",
    "def longest(strings: list[str]) -> str | None:\n"
    "    \"\"\"The longest string (the first of equals), None for an empty list.\"\"\"",
    "def count_distinct_characters(text: str) -> int:\n"
    "    \"\"\"How many distinct characters, regardless of case.\"\"\"",
)
# Whole answers: most of the edit set's end before 256 tokens, and the first 64 tokens of an edit
# (its intro line and edited signature) copy less of the prompt than the rest (--max-tokens 64).
SPECULATIVE_SETTINGS = {"max_tokens": 256, "temperature": 0.0, "top_p": 1.0, "top_k": 1}
SPECULATIVE_MODES = ("off", "lookup", "draft", "auto")


def real_functions(count: int) -> list[str]:
    """Functions of 12-30 lines from this repository, one per module, in a fixed order."""
    import ast

    found = []
    for path in sorted((REPO_ROOT / "hybrid_llm").rglob("*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef) and 12 <= node.end_lineno - node.lineno + 1 <= 30:
                found.append(ast.get_source_segment(source, node))
                break
        if len(found) == count:
            break
    return found


def speculative_requests(kind: str) -> list[list[dict]]:
    if kind == "edit":
        asks = [f"```python\n{code}\n```\n\n{EDIT_INSTRUCTIONS[i % len(EDIT_INSTRUCTIONS)]}"
                for i, code in enumerate(real_functions(10))]
    else:
        asks = [f"Complete this Python function:\n\n```python\n{task}\n```" for task in GENERIC_TASKS]
    return [[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": ask}] for ask in asks]


class SpeculativeRig:
    """One target model and one draft model shared by every mode, so that the modes differ
    only in drafting; each request starts with only the system prompt in both KV caches, as
    after `warm` in the REPL."""

    def __init__(self, model: Path, draft: Path, threads: int, kernels: dict, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.target = load_llama(model, n_ctx=N_CTX, threads=threads, kernels=kernels)
        self.rss_target_only_mb = round(psutil.Process().memory_info().rss / 2**20)
        self.draft = load_llama(draft, n_ctx=N_CTX, threads=threads, kernels=kernels)
        self.chat = speculative.ChatPrompt(self.target)
        system = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": ""}]
        self.system_tokens = self.chat.tokens(system)
        self.target.eval(self.system_tokens)
        self.draft.eval(self.system_tokens)

    def decoder(self, mode: str, max_batch: int | None = None) -> speculative.SpeculativeDecoder:
        drafters = speculative.make_drafters(speculative.drafter_names(mode, True), self.draft)
        return speculative.SpeculativeDecoder(self.target, mode, drafters, lambda: False, max_batch)

    def forget_request(self) -> None:
        for llama in (self.target, self.draft):
            llama.n_tokens = len(self.system_tokens)

    def run(self, decoder, messages: list[dict], *, cached_prompt: bool) -> dict:
        """One answer; with `cached_prompt` the target keeps the request's prompt (measured
        once per request) and only the draft model starts from the system prompt."""
        tokens = self.chat.tokens(messages)
        if cached_prompt:
            self.draft.n_tokens = len(self.system_tokens)
        else:
            self.forget_request()
        pieces = decoder.generate(tokens, max_tokens=self.max_tokens,
                                  sampling=speculative.Sampling(0.0, 1.0, 1))
        timed = timed_stream(pieces, lambda text: 0)
        stats = speculative.last_stats()
        return {**timed, "tokens": stats.tokens, "drafted": stats.drafted, "accepted": stats.accepted,
                "n_prompt": len(tokens)}


KERNELS = {"installed": None, "any-engine": BATCH_INVARIANT_SETTINGS, "patched-engine": PATCHED_ENGINE_SETTINGS}


# With --short-batches: prompt lookup verifying at most this many rows per batch, as on a
# llama.cpp build without our patch (the reference for what longer batches bring).
SHORT_LOOKUP = f"lookup-{speculative.SHORT_VERIFY_BATCH}-rows"


def bench_speculative(model: Path, threads: int, kind: str, selected: slice, kernels: str,
                      max_tokens: int = SPECULATIVE_SETTINGS["max_tokens"], short_batches: bool = False) -> dict:
    """Per request: its prompt processed once (the first two: once per mode, for the time to
    first token), then each mode's answer from the cached prompt. `auto` is run only where it
    drafts differently from a mode already run. One JSON line per request as it is measured.
    `kernels`: what the backend uses on this installation, or one setting for comparisons.
    `short_batches`: also prompt lookup with SHORT_VERIFY_BATCH-row batches (SHORT_LOOKUP)."""
    draft = draft_model_path()
    if draft is None:
        return {"error": "draft model missing: hybrid-llm models pull qwen2.5-coder-0.5b-instruct-q4_k_m"}
    settings = KERNELS[kernels] or kernel_settings(model)
    rig = SpeculativeRig(model, draft, threads, settings, max_tokens)
    auto_drafters = speculative.drafter_names("auto", True)
    same_as_auto = {"off": (), "lookup": ("lookup",), "draft": ("draft",)}
    auto_alias = next((mode for mode, names in same_as_auto.items() if names == auto_drafters), None)
    modes = [mode for mode in SPECULATIVE_MODES if not (mode == "auto" and auto_alias)]
    decoders = {mode: rig.decoder(mode) for mode in modes}
    if short_batches:
        modes.append(SHORT_LOOKUP)
        decoders[SHORT_LOOKUP] = rig.decoder("lookup", max_batch=speculative.SHORT_VERIFY_BATCH)
    requests = speculative_requests(kind)[selected]
    ttft = {mode: [] for mode in ("off", "draft", auto_alias or "auto")}
    rows = {mode: [] for mode in modes}
    for index, messages in enumerate(requests):
        if index < 2:  # time to first token: the whole request processed, interleaved by mode
            for mode in ttft:
                ttft[mode].append(rig.run(decoders[mode], messages, cached_prompt=False)["ttft_s"])
        else:
            rig.run(decoders["off"], messages, cached_prompt=False)  # the prompt, once
        for mode in modes:
            rows[mode].append(rig.run(decoders[mode], messages, cached_prompt=True))
        print(json.dumps({"request": index, **{mode: {key: round(value, 2) if isinstance(value, float) else value
                                                      for key, value in runs[-1].items() if key != "text"}
                                               for mode, runs in rows.items()}}), flush=True)
    if auto_alias:
        rows["auto"] = rows[auto_alias]
        ttft["auto"] = ttft[auto_alias]
    reference = rows["off"]
    result = {"set": kind, "kernels": settings, "requests": len(requests), "max_tokens": max_tokens,
              "verify_batch_limit": verify_batch_limit(),
              "prompt_tokens_median": statistics.median(r["n_prompt"] for r in reference),
              "auto_is": speculative.describe_mode("auto", auto_drafters), "modes": {}}
    for mode, runs in rows.items():
        tokens = sum(r["tokens"] - 1 for r in runs)
        seconds = sum(r["decode_s"] for r in runs)
        drafted = sum(r["drafted"] for r in runs)
        result["modes"][mode] = {
            "decode_tok_s": round(tokens / seconds, 2),
            "acceptance": round(sum(r["accepted"] for r in runs) / drafted, 3) if drafted else None,
            "drafted_per_answer": round(drafted / len(runs), 1),
            "same_answer_as_off": sum(r["text"] == ref["text"] for r, ref in zip(runs, reference)),
        }
    off = result["modes"]["off"]["decode_tok_s"]
    for mode, row in result["modes"].items():
        row["decode_vs_off"] = round(row["decode_tok_s"] / off, 3)
    result["ttft_s_median"] = {mode: round(statistics.median(values), 3) for mode, values in ttft.items()}
    result["ttft_vs_off"] = {mode: round(statistics.median(values) / statistics.median(ttft["off"]), 3)
                             for mode, values in ttft.items()}
    result["rss_mb"] = {"target_only": rig.rss_target_only_mb,
                        "with_draft_peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    for decoder in decoders.values():
        decoder.close()
    return result


CANCEL_POINTS = 8
REFERENCE_UBATCH = 512  # llama-cpp-python's default n_ubatch


def cancel_latency_ms(backend: LlamaCppBackend, messages: list[dict], cancel_at: float) -> float:
    """Milliseconds between `cancel()` and the end of a stream cancelled during the prompt."""
    backend._llama.reset()
    threading.Timer(cancel_at, backend.cancel).start()
    started = time.perf_counter()
    for _ in backend.stream(messages, **SETTINGS):
        pass
    return (time.perf_counter() - started - cancel_at) * 1000


def bench_cancel(model: Path, threads: int, runs: int) -> dict:
    results = {}
    for ubatch in sorted({REFERENCE_UBATCH, 256, PREFILL_UBATCH, 64}, reverse=True):
        backend = LlamaCppBackend(model, n_ctx=N_CTX, threads=threads, prefill_ubatch=ubatch)
        messages = long_prompt_messages(backend.count_tokens)
        n_prompt = prompt_tokens(backend._llama, messages)
        prefill = []
        for _ in range(runs):
            backend._llama.reset()
            prefill.append(timed_stream(backend.stream(messages, **{**SETTINGS, "max_tokens": 1}), backend.count_tokens))
        prefill_s = statistics.median(r["ttft_s"] for r in prefill)
        # Points over the first 60 % of the prompt: a cancel never lands after it is done.
        points = [prefill_s * 0.6 * (i + 1) / CANCEL_POINTS for i in range(CANCEL_POINTS)]
        latencies = sorted(cancel_latency_ms(backend, messages, at) for at in points)
        backend.close()
        results[ubatch] = {"prefill_tok_s": round(n_prompt / prefill_s, 1),
                           "cancel_ms_median": round(statistics.median(latencies)),
                           "cancel_ms_max": round(latencies[-1]), "cancel_ms_all": [round(x) for x in latencies]}
    reference = results[REFERENCE_UBATCH]
    for row in results.values():
        row["prefill_vs_reference"] = round(row["prefill_tok_s"] / reference["prefill_tok_s"], 3)
        row["cancel_max_vs_reference"] = round(row["cancel_ms_max"] / max(reference["cancel_ms_max"], 1), 3)
    return {"prompt_tokens": n_prompt, "reference_ubatch": REFERENCE_UBATCH, "default_ubatch": PREFILL_UBATCH,
            "by_ubatch": results}


def bench_ask(repo: Path) -> dict:
    """`hybrid-llm ask --json` twice in fresh processes: the first builds the index (cold), the
    second finds it up to date (a REPL user's usual case); peak RSS of the child processes."""
    home = Path(tempfile.mkdtemp(prefix="llm-bench-home-"))
    config = home / "config.json"
    config.write_text(json.dumps({"generation": {"max_tokens": 200, "temperature": 0.2}}))
    env = {**os.environ, "HYBRID_LLM_HOME": str(home), "HYBRID_LLM_CONFIG": str(config)}
    request = ("How does the prompt builder decide which retrieved chunks to drop? "
               "Write a function that reports how many were dropped.")
    results = {}
    for label in ("cold_index", "warm_index"):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "hybrid_llm", "ask", request, "--repo", str(repo), "--json"],
                              env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            return {"error": done.stderr.strip()[-500:]}
        out = json.loads(done.stdout)
        results[label] = {"timings": out["timings"], "sources": len(out["sources"]),
                          "process_wall_s": round(wall, 2), "has_code_block": "```" in out["answer"]}
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description="LLM engine benchmark (issue 5)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repo", type=Path, default=REPO_ROOT / "hybrid_llm")
    parser.add_argument("--only", choices=["overhead", "prefix", "speculative", "cancel", "ask"], action="append")
    parser.add_argument("--set", choices=["edit", "generic"], default="edit", help="requests for --only speculative")
    parser.add_argument("--requests", default="0:10", help="START:END of the set, to split a run")
    parser.add_argument("--max-tokens", type=int, default=SPECULATIVE_SETTINGS["max_tokens"],
                        help="answer length for --only speculative (default: whole answers; 64: their first lines)")
    parser.add_argument("--kernels", choices=list(KERNELS), default="installed",
                        help="llama.cpp kernel settings for --only speculative (default: what the backend uses)")
    parser.add_argument("--short-batches", action="store_true",
                        help=f"--only speculative also runs {SHORT_LOOKUP} (lookup as without our engine patch)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = resolve_model_path(Config())
    only = set(args.only or ["overhead", "prefix", "speculative", "cancel", "ask"])
    report: dict = {"model": model.name, "threads": args.threads, "cpu_count": os.cpu_count(),
                    "load_average_start": os.getloadavg()}
    if "overhead" in only:
        report["overhead"] = bench_overhead(model, args.threads, args.runs)
        print(json.dumps(report["overhead"]), flush=True)
    if "prefix" in only:
        report["prefix_reuse"] = bench_prefix_reuse(model, args.threads)
        print(json.dumps(report["prefix_reuse"]), flush=True)
    if "speculative" in only:
        start, end = (int(x) for x in args.requests.split(":"))
        report["speculative"] = bench_speculative(model, args.threads, args.set, slice(start, end), args.kernels,
                                                 args.max_tokens, args.short_batches)
        print(json.dumps(report["speculative"]), flush=True)
    if "cancel" in only:
        report["cancel"] = bench_cancel(model, args.threads, args.runs)
        print(json.dumps(report["cancel"]), flush=True)
    if "ask" in only:
        report["ask"] = bench_ask(args.repo)
        print(json.dumps(report["ask"]), flush=True)
    report["load_average_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
