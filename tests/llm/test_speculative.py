"""Speculative decoding (hybrid_llm/llm/speculative.py): drafting must never change the answer.

The real default model (and the 0.5B draft model where it was pulled) for what a user cares
about: identical greedy answers in every mode, a fast cancel while drafting, a usable backend
afterwards. One backend per module: its model is loaded once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_llm.config import REPO_ROOT
from hybrid_llm.llm import speculative
from hybrid_llm.llm.llama_cpp_backend import (BATCH_INVARIANT_SETTINGS, PATCHED_ENGINE_SETTINGS, LlamaCppBackend,
                                              kernel_settings, load_llama, settings_exact, verify_batch_limit)
from hybrid_llm.llm.models import draft_model_path
from hybrid_llm.llm.prompt import SYSTEM_PROMPT
from hybrid_llm.llm.speculative import PromptLookup, Sampling, SpeculativeDecoder
from tests.llm.test_llama_cpp_backend import CANCEL_LIMIT_S, stop_delay_after_cancel

GREEDY = Sampling(0.0, 1.0, 1)
COPIED_CODE = (REPO_ROOT / "hybrid_llm" / "llm" / "models.py").read_text().split("def verify_file")[0][-900:]
PROMPTS = {
    "copies the prompt": f"```python\n{COPIED_CODE}\n```\n\nAdd type hints where they are missing and "
                         "print the whole edited code.",
    "generic code": "Write a Python function that returns the n-th Fibonacci number.",
    "prose": "In two sentences, what is a Python generator?",
}


def test_prompt_lookup_drafts_what_followed_the_most_recent_match():
    lookup = PromptLookup()
    lookup.reset([5, 1, 2, 3, 9, 9, 7, 1, 2, 3, 4, 6, 1, 2, 3])
    assert lookup.propose(3) == [4, 6, 1], "the continuation of the latest [1, 2, 3], not the first"
    lookup.extend([8])
    assert lookup.propose(3) == [], "[2, 3, 8] and [3, 8] never appeared before"


def test_prompt_lookup_prefers_a_longer_match_to_a_more_recent_shorter_one():
    """An edit repeats a line of the prompt: its 8 last tokens point into that line, even where
    its last 4 appeared again later (in another line the answer is not copying)."""
    lookup = PromptLookup()
    lookup.reset([30, 31, 32, 33, 1, 2, 3, 4, 50, 51,  70, 1, 2, 3, 4, 60, 61,
                  30, 31, 32, 33, 1, 2, 3, 4])
    assert lookup.propose(3) == [50, 51, 70]


def test_wrong_guesses_from_short_matches_do_not_stop_a_long_copy_from_being_drafted():
    """A 2-token match (a common phrase) that keeps guessing wrong stops being drafted, while a
    match of 4+ tokens, inside a block the answer copies, keeps its own acceptance rate."""
    lookup = PromptLookup()
    block = list(range(5, 17))
    lookup.reset([*block, 90, 6, 7])
    assert lookup.propose(3) == [8, 9, 10], "the continuation of the 2-token match (6, 7)"
    for _ in range(20):
        lookup.length.record(drafted=3, accepted=0)
    costs = speculative.CostModel()
    assert lookup.length.choose(3, costs) == (0, 1.0)
    lookup.extend([9, 10, 11, 12])
    draft = lookup.propose(15)
    assert draft[:4] == [13, 14, 15, 16], "the continuation of the 4-token match (9, 10, 11, 12)"
    assert lookup.length.choose(len(draft), costs)[0] > 0


def test_draft_length_drops_to_zero_when_drafts_are_rejected():
    length = speculative.DraftLength(draft_token_cost=0.0)
    costs = speculative.CostModel()
    for _ in range(20):
        length.record(drafted=4, accepted=4)
    assert length.choose(8, costs)[0] >= 4
    for _ in range(30):
        length.record(drafted=1, accepted=0)
    assert length.choose(8, costs) == (0, 1.0)


@pytest.fixture
def record_smoke(tmp_path, monkeypatch):
    """Writes the install's engine record with the given smoke-test fields (none until called)."""
    from dataclasses import asdict

    from hybrid_llm.llm import engine_build

    record = tmp_path / "engine.json"
    monkeypatch.setattr(engine_build, "record_path", lambda: record)
    measured = engine_build.EngineRecord("native", "compiled for this CPU", "first choice")

    def write(smoke: dict) -> None:
        measured.smoke = {"ok": True, **smoke}
        record.write_text(json.dumps(asdict(measured)))

    return write


def test_auto_does_not_draft_where_the_smoke_test_found_batch_logits_differ(record_smoke):
    measured_model, other_model = Path("models/measured.gguf"), Path("models/other.gguf")
    cases = [  # (any engine's settings, the patched engine's): auto's drafters, the kernels models load with
        ((0.0, 0.66), speculative.AUTO_DRAFTERS, BATCH_INVARIANT_SETTINGS),  # an engine without our patch
        ((0.0, 0.0), speculative.AUTO_DRAFTERS, PATCHED_ENGINE_SETTINGS),  # ours: the faster exact settings
        ((0.31, 0.0), speculative.AUTO_DRAFTERS, PATCHED_ENGINE_SETTINGS),
        ((0.31, 0.66), (), BATCH_INVARIANT_SETTINGS),  # another CPU or build: auto must not draft
    ]
    for (plain, patched), drafters, kernels in cases:
        record_smoke({"batch_logit_difference": plain, "patched_batch_logit_difference": patched,
                      "batch_check_model": measured_model.name})
        assert speculative.drafter_names("auto", True) == drafters, (plain, patched)
        assert kernel_settings(measured_model) == kernels, (plain, patched)
        assert settings_exact(kernels) == bool(drafters), (plain, patched)
        # the patch covers the kernels of the measured model's quantization types, not every model's
        assert kernel_settings(other_model) == BATCH_INVARIANT_SETTINGS
    # a backend whose model loaded with settings not measured exact: its own verdict wins
    assert speculative.drafter_names("auto", True, exact=False) == ()
    assert speculative.drafter_names("auto", True, exact=True) == speculative.AUTO_DRAFTERS
    assert speculative.drafter_names("lookup", True) == ("lookup",), "an explicit mode is the user's choice"


def test_batches_are_as_long_as_the_install_measured_them_exact(record_smoke):
    """16 rows where the install's check measured that size exact (our engine patch), 7 where it
    recorded no size: a check from before there were two, or none at all."""
    assert verify_batch_limit() == speculative.SHORT_VERIFY_BATCH, "no record"
    for smoke, rows in (({"batch_check_rows": 16}, 16), ({"batch_check_rows": 7}, 7), ({}, 7)):
        record_smoke({"batch_logit_difference": 0.0, **smoke})
        assert verify_batch_limit() == rows, smoke


@pytest.fixture(scope="module")
def draft_file() -> Path | None:
    return draft_model_path()


@pytest.fixture(scope="module")
def backend(default_model_file: Path, draft_file: Path | None) -> LlamaCppBackend:
    """Draft mode where the draft model is installed (its cancellation is the harder one)."""
    mode = "draft" if draft_file else "lookup"
    loaded = LlamaCppBackend(default_model_file, n_ctx=4096, speculative=mode, draft_model_path=draft_file)
    yield loaded
    loaded.close()


def decoders(backend: LlamaCppBackend, draft_file: Path | None) -> dict[str, SpeculativeDecoder]:
    draft = backend._draft_llama or (load_llama(draft_file, n_ctx=4096, threads=backend.threads) if draft_file else None)
    modes = ["off", "lookup"] + (["draft"] if draft else [])
    if speculative.drafter_names("auto", draft is not None) not in [(), ("lookup",), ("draft",)]:
        modes.append("auto")  # otherwise auto drafts exactly like one of the modes above
    return {mode: SpeculativeDecoder(backend._llama, mode,
                                     speculative.make_drafters(speculative.drafter_names(mode, draft is not None), draft),
                                     lambda: False)
            for mode in modes}


def messages(request: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": request}]


@pytest.fixture(scope="module")
def by_mode(backend: LlamaCppBackend, draft_file) -> dict[str, SpeculativeDecoder]:
    made = decoders(backend, draft_file)
    yield made
    for decoder in made.values():
        decoder.close()


@pytest.mark.slow
def test_a_position_gets_the_same_logits_in_a_batch_as_alone(backend: LlamaCppBackend):
    """What makes speculation exact: with the backend's kernel settings a position decoded in a
    batch of up to the verified size (16 rows with our engine patch, which the install measured)
    gets bit-identical logits to one decoded alone, also after 512 cached tokens (llama.cpp's
    defaults differ by up to 0.70 here; bench/kernels_bench.py)."""
    llama = backend._llama
    module = (REPO_ROOT / "hybrid_llm" / "llm" / "models.py").read_text()[:3000]
    tokens = speculative.ChatPrompt(llama).tokens(messages(f"```python\n{module}\n```\nSummarise this."))
    assert len(tokens) > 600, "long enough for llama.cpp's split attention path (512+ cached tokens)"
    size = verify_batch_limit()
    context, follow = tokens[:-size], tokens[-size:]
    llama.reset()
    llama.eval(context)
    for rows in range(2, size + 1):
        assert speculative.batch_logit_difference(llama, follow[:rows], len(context)) == 0.0, rows


@pytest.mark.slow
@pytest.mark.parametrize("label", ["copies the prompt", "generic code", "prose"])
def test_every_mode_gives_the_plain_greedy_answer_token_for_token(backend: LlamaCppBackend, by_mode, label):
    request = messages(PROMPTS[label])
    prompt = speculative.ChatPrompt(backend._llama).tokens(request)

    def from_an_empty_cache(generate):
        # Each answer starts from the same empty KV cache, so that the prompt is processed in the
        # same batches every time: what is compared is the decoding, not the cache's history.
        backend._llama.reset()
        return generate()

    binding = from_an_empty_cache(lambda: backend._llama.create_chat_completion(
        request, max_tokens=32, temperature=0.0, top_k=1))
    answers = {mode: from_an_empty_cache(lambda d=decoder: "".join(d.generate(prompt, max_tokens=32, sampling=GREEDY)))
               for mode, decoder in by_mode.items()}
    assert answers["off"] == binding["choices"][0]["message"]["content"]
    for mode, answer in answers.items():
        assert answer == answers["off"], f"{mode} differs from off"


@pytest.mark.slow
def test_an_answer_that_copies_the_prompt_is_drafted_and_sampling_keeps_it(backend: LlamaCppBackend):
    """Most of an answer that copies its prompt comes from accepted drafts; sampling with top_k 1
    is deterministic, so the sampled acceptance path gives the same text as greedy."""
    prompt = speculative.ChatPrompt(backend._llama).tokens(messages(PROMPTS["copies the prompt"]))
    lookup = SpeculativeDecoder(backend._llama, "lookup", speculative.make_drafters(("lookup",)), lambda: False)
    greedy = "".join(lookup.generate(prompt, max_tokens=96, sampling=GREEDY))
    stats = speculative.last_stats()
    assert stats.accepted > 10, stats
    sampled = "".join(lookup.generate(prompt, max_tokens=96, sampling=Sampling(0.7, 0.95, 1)))
    lookup.close()
    assert sampled == greedy


@pytest.mark.slow
def test_stop_string_ends_the_answer_before_it(backend: LlamaCppBackend):
    request = messages("Print the numbers 1 to 10 separated by commas, nothing else.")
    plain = "".join(backend.stream(request, max_tokens=40, temperature=0.0, top_p=1.0, top_k=1))
    assert "5" in plain
    stopped = "".join(backend.stream(request, max_tokens=40, temperature=0.0, top_p=1.0, top_k=1, stop=["5"]))
    assert stopped == plain[: plain.index("5")]


@pytest.mark.slow
def test_cancel_while_drafting_stops_fast_and_the_backend_stays_usable(backend: LlamaCppBackend):
    stream = backend.stream(messages(PROMPTS["copies the prompt"]), max_tokens=600,
                            temperature=0.0, top_p=1.0, top_k=1)
    for _, _piece in zip(range(12), stream):
        pass
    stopped_after, rest = stop_delay_after_cancel(backend, stream)

    assert stopped_after < CANCEL_LIMIT_S, f"stopped {stopped_after * 1000:.0f} ms after cancel"
    assert backend.count_tokens("".join(rest)) < 40
    assert speculative.last_stats().drafted > 0, "the cancelled answer was being drafted"
    after = "".join(backend.stream(messages("Say hi."), max_tokens=8, temperature=0.0, top_p=1.0, top_k=1))
    assert after.strip()
