"""The llama.cpp backend: the tiny Qwen2 GGUF (built locally) for the quick checks, the real
default model for what only a real model shows (cancellation latency, prefix KV reuse)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from hybrid_llm.config import Config
from hybrid_llm.llm.base import choose_backend, create_backend
from hybrid_llm.llm.llama_cpp_backend import (BATCH_INVARIANT_SETTINGS, LlamaCppBackend, physical_cores,
                                              runs_batch_invariant)
from hybrid_llm.llm.prompt import SYSTEM_PROMPT
from hybrid_llm.llm.speculative import ChatPrompt, common_prefix_length

GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": 1}
CANCEL_LIMIT_S = 0.2


def test_auto_picks_llama_cpp_for_a_gguf_file(tiny_gguf: Path):
    config = Config.model_validate({"model": {"path": str(tiny_gguf), "n_ctx": 512}})
    entry, path = choose_backend(config)
    assert (entry.name, path) == ("llama_cpp", tiny_gguf)
    backend = create_backend(config)
    assert backend.context_length == 512
    assert backend.threads == physical_cores()


def test_a_model_too_small_for_the_q8_cache_loads_and_auto_does_not_draft(tiny_gguf: Path):
    """A model the install's batch check did not measure loads with the settings any engine is
    exact with (no repacking, Q8_0 KV cache); the tiny model's 16-dimension heads cannot use a
    Q8_0 cache: it still loads (F16 cache), and `auto` leaves its answers to plain decoding."""
    backend = LlamaCppBackend(tiny_gguf, n_ctx=512, threads=1, speculative="auto")
    assert not backend._llama.model_params.use_extra_bufts
    assert not runs_batch_invariant(backend._llama, BATCH_INVARIANT_SETTINGS)
    assert backend.speculative == "auto (off)"
    assert list(backend.stream([{"role": "user", "content": "def add(a, b):"}], max_tokens=4, **GREEDY))
    backend.close()


def test_streams_piece_by_piece_quietly(tiny_gguf: Path, tiny_tokenizer, capfd):
    backend = LlamaCppBackend(tiny_gguf, n_ctx=512, threads=1)
    pieces = list(backend.stream([{"role": "user", "content": "def add(a, b):"}], max_tokens=12, **GREEDY))

    assert len(pieces) > 1
    assert capfd.readouterr() == ("", ""), "no llama.cpp logs on the terminal"
    text = "def add(a, b):\n    return a + b"
    assert backend.count_tokens(text) == len(tiny_tokenizer.encode(text, add_special_tokens=False))


def test_speculative_modes_answer_like_plain_decoding_on_prompts_longer_than_a_batch(tiny_gguf: Path):
    """Drafts are verified in small batches after a prompt processed in several micro-batches."""
    code = "\n".join(f"value_{i} = compute({i})" for i in range(150))
    answers = {}
    for mode in ("off", "lookup"):
        backend = LlamaCppBackend(tiny_gguf, n_ctx=2048, threads=1, speculative=mode)
        assert backend.count_tokens(code) > 512
        answers[mode] = "".join(backend.stream([{"role": "user", "content": code}], max_tokens=24, **GREEDY))
        backend.close()
    assert answers["off"] and answers["lookup"] == answers["off"]


def test_threads_setting_is_passed_on(tiny_gguf: Path):
    config = Config.model_validate({"model": {"path": str(tiny_gguf), "n_ctx": 512, "threads": 1}})
    assert create_backend(config).threads == 1


@pytest.fixture(scope="module")
def real_backend(default_model_file: Path) -> LlamaCppBackend:
    return LlamaCppBackend(default_model_file, n_ctx=4096)


def long_messages(request: str = "Summarise this code in one sentence.") -> list[dict]:
    code = "\n\n".join(
        f"def step_{i}(state: dict) -> dict:\n    state['value_{i}'] = state.get('value_{i - 1}', 0) + {i}\n"
        f"    return state" for i in range(30)
    )
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"```python\n{code}\n```\n\n{request}"}]


def stop_delay_after_cancel(backend: LlamaCppBackend, stream) -> tuple[float, list[str]]:
    """Seconds from a `cancel()` sent 50 ms into consuming the rest of `stream` until it ends,
    and the pieces that came in that time."""
    threading.Timer(0.05, backend.cancel).start()
    started = time.perf_counter()
    rest = list(stream)
    return time.perf_counter() - started - 0.05, rest


@pytest.mark.slow
def test_cancel_during_decode_stops_fast_and_the_backend_stays_usable(real_backend: LlamaCppBackend):
    messages = [{"role": "user", "content": "Write a long essay about sorting algorithms."}]
    stream = real_backend.stream(messages, max_tokens=2000, **GREEDY)
    for _, _piece in zip(range(5), stream):
        pass
    stopped_after, rest = stop_delay_after_cancel(real_backend, stream)

    assert stopped_after < CANCEL_LIMIT_S, f"stopped {stopped_after * 1000:.0f} ms after cancel"
    assert real_backend.count_tokens("".join(rest)) < 10
    after = "".join(real_backend.stream([{"role": "user", "content": "Say hi."}], max_tokens=8, **GREEDY))
    assert after.strip()


@pytest.mark.slow
def test_cancel_during_prompt_processing_stops_fast(real_backend: LlamaCppBackend, capfd):
    real_backend._llama.reset()
    cancel_at = 1.0  # well inside the processing of a ~900-token prompt on a laptop CPU
    threading.Timer(cancel_at, real_backend.cancel).start()
    started = time.perf_counter()
    pieces = list(real_backend.stream(long_messages(), max_tokens=64, **GREEDY))
    stopped_after = time.perf_counter() - started - cancel_at

    assert pieces == [], "cancelled before the first token"
    assert stopped_after < CANCEL_LIMIT_S, f"stopped {stopped_after * 1000:.0f} ms after cancel"
    assert capfd.readouterr().err == "", "an aborted decode logs nothing on the terminal"
    after = "".join(real_backend.stream([{"role": "user", "content": "Say hi."}], max_tokens=8, **GREEDY))
    assert after.strip(), "usable afterwards"


@pytest.mark.slow
def test_second_turn_reuses_the_conversation_prefix(real_backend: LlamaCppBackend):
    """Turn 2 re-processes only its new messages: the first turn stays in the KV cache."""
    llama = real_backend._llama
    llama.reset()
    first_turn = long_messages()
    answer = "".join(real_backend.stream(first_turn, max_tokens=24, **GREEDY))
    question = "Which function adds 7?"
    second_turn = [*first_turn, {"role": "assistant", "content": answer}, {"role": "user", "content": question}]
    tokens = ChatPrompt(llama).tokens(second_turn)
    left_to_process = len(tokens) - common_prefix_length(llama._input_ids, tokens)

    assert len(tokens) > 500
    assert left_to_process <= real_backend.count_tokens(answer) + real_backend.count_tokens(question) + 12, \
        left_to_process


@pytest.mark.slow
def test_warm_processes_the_system_prompt_before_the_first_request(real_backend: LlamaCppBackend):
    """After `warm`, the first request pays only for its own tokens (the KV cache already holds
    everything before them), and answers the same as from a cold cache."""
    request = [{"role": "system", "content": SYSTEM_PROMPT},
               {"role": "user", "content": "Name one sorting algorithm."}]
    llama = real_backend._llama
    tokens = ChatPrompt(llama).tokens(request)

    llama.reset()
    cold_answer = "".join(real_backend.stream(request, max_tokens=8, **GREEDY))
    llama.reset()
    real_backend.warm(SYSTEM_PROMPT)
    left_to_process = len(tokens) - common_prefix_length(llama._input_ids, tokens)
    warm_answer = "".join(real_backend.stream(request, max_tokens=8, **GREEDY))

    assert left_to_process <= real_backend.count_tokens(request[1]["content"]) + 8, left_to_process
    assert warm_answer == cold_answer
