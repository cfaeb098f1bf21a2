"""The engine smoke test: load the configured model in a child process and generate a few tokens.

A llama.cpp build can pass every import and version check and still kill the process on its
first matrix product: compiled with `-march=native` on a Xeon with AMX, ggml's AMX kernels died
with SIGILL on the first request (issue 14). Native code that dies takes the whole Python
process with it, so the only safe place to find out is a child process. The install runs this
before declaring success (and rebuilds with safer flags when it fails), `doctor` runs it to show
the engine's real speed, and the answer is always one line naming the cause.

Run as `python -m hybrid_llm.llm.engine_check`, this module is the child: it prints one JSON
line with the measured speeds, or one `error: ...` line on stderr and exit status 1.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, fields, replace

from hybrid_llm.llm.speculative import (MAX_VERIFY_BATCH, SHORT_VERIFY_BATCH, ChatPrompt,
                                         batch_logit_difference)

# About 120 prompt tokens and 16 answer tokens: a few seconds on a 2-core laptop, enough to
# run every kernel a real request runs (prompt micro-batches, then single-token decoding).
SMOKE_PROMPT = (
    "Here is a small Python module:\n\n"
    "def parse_pairs(text):\n"
    "    result = {}\n"
    "    for line in text.splitlines():\n"
    "        if not line.strip() or line.startswith('#'):\n"
    "            continue\n"
    "        key, _, value = line.partition('=')\n"
    "        result[key.strip()] = value.strip()\n"
    "    return result\n\n"
    "def render_pairs(pairs):\n"
    "    return '\\n'.join(f'{key} = {value}' for key, value in sorted(pairs.items()))\n\n"
    "Write a function merge_files(paths) that reads each file with parse_pairs, merges the "
    "dictionaries so that later files win, and returns render_pairs of the result."
)
SMOKE_DECODE_TOKENS = 16
# The batch check runs behind 512+ cached tokens, where llama.cpp's flash attention would split a
# single row's keys among threads (unless our patch is in): the smoke prompt, five times.
BATCH_CHECK_PROMPT = "\n\n".join([SMOKE_PROMPT] * 5)
SMOKE_TIMEOUT_S = 180.0

SIGNAL_CAUSES = {
    signal.SIGILL: "illegal instruction: the engine was compiled for instructions this CPU cannot run",
    signal.SIGSEGV: "segmentation fault: the engine crashed on a memory access",
    signal.SIGBUS: "bus error: the model file may be truncated or changing on disk",
    signal.SIGFPE: "arithmetic fault inside the engine",
    signal.SIGABRT: "aborted: the engine failed one of its own internal checks",
    signal.SIGKILL: "killed (SIGKILL): most likely out of memory",
}


@dataclass(frozen=True)
class SmokeResult:
    """What the child measured, or why it failed (`cause`, one line)."""

    ok: bool
    cause: str = ""
    load_s: float = 0.0
    prefill_tok_s: float = 0.0
    decode_tok_s: float = 0.0
    backend: str = ""
    # Largest logit difference between positions decoded alone and in one batch, with
    # BATCH_INVARIANT_SETTINGS and with PATCHED_ENGINE_SETTINGS (None: not measured, e.g. xllamacpp,
    # or a check that leaves it to the install); speculative decoding keeps answers unchanged only
    # at 0, and models load with the patched engine's settings only where the second is 0.
    batch_logit_difference: float | None = None
    patched_batch_logit_difference: float | None = None
    batch_check_model: str = ""  # the model file both were measured on
    batch_check_rows: int | None = None  # the batch size both were measured at

    def with_batch_check_of(self, measured: dict) -> SmokeResult:
        """This result with the batch check's fields taken from `measured` (a recorded smoke
        result): a check that does not repeat the install's ~15 s batch check reports its verdict."""
        return replace(self, **{name: measured.get(name, default)
                                for name, default in _BATCH_CHECK_FIELDS.items()})

    def line(self) -> str:
        if not self.ok:
            return f"engine smoke test failed: {self.cause}"
        line = (f"prefill {self.prefill_tok_s:.0f} tok/s, decode {self.decode_tok_s:.1f} tok/s "
                f"(load {self.load_s:.1f} s, {self.backend})")
        rows = f" in batches of up to {self.batch_check_rows}" if self.batch_check_rows else ""
        if self.patched_batch_logit_difference == 0:
            line += (f"; batch logits identical to one-token logits{rows} with repacked weights and an F16 cache "
                     "(speculative decoding is exact)")
        elif self.batch_logit_difference == 0:
            line += f"; batch logits identical to one-token logits{rows} (speculative decoding is exact)"
        elif self.batch_logit_difference is not None:
            line += (f"; batch logits differ from one-token logits by up to {self.batch_logit_difference:.2g}"
                     " (speculative decoding stays off under `auto`)")
        return line


# The fields the install's batch check fills in, with their values when it has not run.
_BATCH_CHECK_FIELDS = {field.name: field.default for field in fields(SmokeResult)
                       if field.name in ("batch_logit_difference", "patched_batch_logit_difference",
                                         "batch_check_model", "batch_check_rows")}


def describe_exit(returncode: int, stderr: str) -> str:
    """One line for how a child ended badly: the signal and what it means, or its last error line."""
    if returncode < 0:
        try:
            signum = signal.Signals(-returncode)
        except ValueError:
            return f"the engine process died of signal {-returncode}"
        cause = SIGNAL_CAUSES.get(signum, "a native crash")
        return f"the engine process died of {signum.name} ({cause})"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else "no message"
    return f"the engine process exited with status {returncode}: {last.removeprefix('error: ')}"


def run_smoke_test(timeout: float = SMOKE_TIMEOUT_S, *, check_batches: bool = False) -> SmokeResult:
    """Run the child and interpret how it ended; never raises for a crash or a hang.
    `check_batches` (the install) also measures batch vs one-token logits, ~15 s more."""
    command = [sys.executable, "-m", "hybrid_llm.llm.engine_check", *(["--batches"] if check_batches else [])]
    try:
        child = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return SmokeResult(False, f"the engine hung: no answer within {timeout:.0f} s (process killed)")
    if child.returncode != 0:
        return SmokeResult(False, describe_exit(child.returncode, child.stderr))
    try:
        measured = json.loads(child.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return SmokeResult(False, f"the engine process printed no result: {child.stdout.strip()[-200:]!r}")
    return SmokeResult(True, **measured)


def measure(config, check_batches: bool) -> dict[str, float | str]:
    """Load the configured model with the installed engine and time prefill and decoding."""
    from hybrid_llm.llm.base import create_backend

    started = time.perf_counter()
    backend = create_backend(config)
    loaded = time.perf_counter()
    messages = [{"role": "user", "content": SMOKE_PROMPT}]
    first = end = None
    pieces: list[str] = []
    for piece in backend.stream(messages, max_tokens=SMOKE_DECODE_TOKENS, temperature=0.0,
                                top_p=1.0, top_k=1):
        end = time.perf_counter()
        first = first or end
        pieces.append(piece)
    if first is None or end is None:
        raise RuntimeError("the model produced no token")
    prompt_tokens = backend.count_tokens(SMOKE_PROMPT)
    answer_tokens = backend.count_tokens("".join(pieces))
    in_process = hasattr(backend, "_llama")  # llama-cpp-python, not an xllamacpp server
    backend.close()
    return {
        "load_s": round(loaded - started, 2),
        "prefill_tok_s": round(prompt_tokens / (first - loaded), 1),
        # The first token closes the prefill; the rest are pure decoding.
        "decode_tok_s": round(max(answer_tokens - 1, 1) / max(end - first, 1e-6), 1),
        "backend": backend.name,
        **(batch_differences(config) if in_process and check_batches else {}),
    }


def batch_differences(config) -> dict[str, float | str]:
    """`speculative.batch_logit_difference` over the last tokens of a 600+-token prompt, with each
    setting that can be exact: in a batch of MAX_VERIFY_BATCH (exact with our engine patch), and
    where neither setting is exact there, of SHORT_VERIFY_BATCH (exact on any llama.cpp build)."""
    measured: dict[str, float | str] = {}
    for rows in (MAX_VERIFY_BATCH, SHORT_VERIFY_BATCH):
        measured = batch_differences_at(config, rows)
        if 0 in (measured["batch_logit_difference"], measured["patched_batch_logit_difference"]):
            break
    return measured


def batch_differences_at(config, rows: int) -> dict[str, float | str]:
    from hybrid_llm.llm.llama_cpp_backend import (BATCH_INVARIANT_SETTINGS, PATCHED_ENGINE_SETTINGS, load_llama,
                                                  physical_cores)
    from hybrid_llm.llm.models import resolve_model_path

    model = resolve_model_path(config)
    measured: dict[str, float | str] = {"batch_check_model": model.name, "batch_check_rows": rows}
    for name, kernels in (("batch_logit_difference", BATCH_INVARIANT_SETTINGS),
                          ("patched_batch_logit_difference", PATCHED_ENGINE_SETTINGS)):
        llama = load_llama(model, n_ctx=config.model.n_ctx,
                           threads=config.model.threads or physical_cores(), kernels=kernels)
        try:
            tokens = ChatPrompt(llama).tokens([{"role": "user", "content": BATCH_CHECK_PROMPT}])
            start = len(tokens) - rows
            llama.eval(tokens[:start])
            measured[name] = round(batch_logit_difference(llama, tokens[start:], start), 4)
        finally:
            llama.close()
    return measured


def _child_main() -> int:
    from hybrid_llm.config import load_config

    try:
        print(json.dumps(measure(load_config(), check_batches="--batches" in sys.argv[1:])))
    except Exception as exc:  # noqa: BLE001 - the parent reports it in one line
        print(f"error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
