"""Speculative decoding on llama.cpp's batch API: a cheap draft proposes the next tokens and
the model checks them all in one batch; every token is still the model's own choice.

Why this is our own generation loop: llama-cpp-python's `LlamaPromptLookupDecoding` needs
`logits_all=True` (an n_ctx x vocabulary float buffer and the output layer on every prompt
token). Here the prompt is processed by the binding's own `Llama.eval`, exactly as before
(logits for its last token only), and in decode only the positions being verified ask for
logits. On 2 cores a batch of 4 tokens costs ~1.4x one token, so every accepted draft token
is nearly free, and a rejected one costs a fraction of a token.

Exactness: the target is sampled at each verified position, in order, with the sampler chain
`create_chat_completion` uses; a draft token is kept only where the sample equals it, and the
first sample that differs is the next token. At temperature 0 each token is the greedy choice
given the tokens before it; at temperature > 0 a sample of the model's own distribution (the
drafts here are deterministic). This holds only because a position decoded in a batch gets
exactly the logits it gets alone, which llama.cpp's defaults do not give (weight repacking rounds
otherwise for groups of 4 rows, attention splits one row's keys among threads, unless our engine
patch is in; attention without flash attention differs too): the backend loads models with
llama_cpp_backend.kernel_settings(), and `batch_logit_difference` checks them.

Drafts come from prompt lookup (the continuation of the longest recent n-gram of the prompt
and the answer so far: free) and from a small draft model of the same tokenizer family. How
many tokens to draft follows measured acceptance and measured batch cost, down to none, so a
request whose answer copies nothing decodes as plainly as without speculation.
"""

from __future__ import annotations

import codecs
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass


from hybrid_llm.config import hybrid_home

SPECULATIVE_MODES = ("auto", "off", "lookup", "draft")
# The drafters `auto` uses: on the 2-core VM the draft model did not pay for itself next to
# prompt lookup (bench/llm_bench.py --only speculative), so auto does not spend its memory.
AUTO_DRAFTERS = ("lookup",)
# The most rows a verified batch (the last token and the drafts) has. llama.cpp's K-quant matrix
# product switches to a tiled kernel with another summation order at 8 rows, so on any build a
# position's logits equal a one-token decode's only up to SHORT_VERIFY_BATCH rows; our engine
# patch moves that switch past MAX_VERIFY_BATCH (engine_patch.TILED_AFTER_VERIFY_BATCH). The
# install measures which of the two holds (engine_check.batch_differences). Past 16 rows nothing
# is cheaper per token on 2 cores: 8 rows cost 2.9 one-token decodes, 12 rows 4.0, 16 rows 4.4
# (bench/kernels_bench.py).
MAX_VERIFY_BATCH = 16
SHORT_VERIFY_BATCH = 7
# Prompt lookup matches the text's last 8 tokens down to its last 2: a longer match is a surer
# guess (replaying the edit set's greedy answers: 94 % of guessed tokens right with 8, 87 % with
# 4; beyond 8 nothing changes).
NGRAM_MAX = 8
NGRAM_MIN = 2
# A proposal continuing a match of at least this many tokens has an acceptance rate of its own:
# inside a copied block a long match is nearly always right, a 2-3-token match (a common phrase)
# often is not, and with one rate for both, long copies drafted too little and new text too much
# (replaying the recorded greedy answers with 16-token batches: edits 2.31x -> 2.46x whole and
# 1.70x -> 1.85x on their first 64 tokens; generic 1.23x -> 1.24x and 1.40x -> 1.40x).
LONG_MATCH = 4
# Cost of verifying n tokens in one batch relative to one token, before any is measured:
# 1 + 0.14 * (n - 1) from the figures (1 token 94 ms, 4 tokens 134 ms, 2 cores).
PRIOR_BATCH_COST_PER_TOKEN = 0.14
# A draft model's token relative to one target token, before any is measured (0.5B vs 1.5B).
PRIOR_DRAFT_MODEL_COST = 0.35
# Weight of the newest observation in the running estimates: about the last 8 steps count.
SMOOTHING = 0.125
# A drafter that does not pay is tried again (one token) after this many steps, then after
# twice as many each time it still does not pay.
FIRST_RETRY_STEPS = 8
MAX_RETRY_STEPS = 256
STATE_FILE = "speculation.json"


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    top_k: int


@dataclass
class SpeculationStats:
    """What drafting did for one answer: shown by the toolbar and `doctor`."""

    mode: str
    drafted: int = 0
    accepted: int = 0
    tokens: int = 0

    @property
    def acceptance(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None


_last_stats: SpeculationStats | None = None


def last_stats() -> SpeculationStats | None:
    """The stats of the last answer generated in this process (the REPL toolbar reads it)."""
    return _last_stats


def remembered_stats() -> SpeculationStats | None:
    """The stats of the last answer of any process (`doctor` runs in a process of its own)."""
    try:
        data = json.loads((hybrid_home() / STATE_FILE).read_text(encoding="utf-8"))
        return SpeculationStats(**data)
    except (OSError, ValueError, TypeError):
        return None


def _remember(stats: SpeculationStats) -> None:
    global _last_stats
    _last_stats = stats
    path = hybrid_home() / STATE_FILE
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats.__dict__), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home loses only the doctor line, never the answer


DRAFT_PULL_FIX = "hybrid-llm models pull qwen2.5-coder-0.5b-instruct-q4_k_m"


def installation_status(mode: str) -> tuple[bool, str]:
    """(usable, one line) for `doctor`: the drafting `mode` gives here, and the last answer's
    acceptance rate (remembered by whichever process generated it)."""
    from hybrid_llm.llm.models import draft_model_path

    present = draft_model_path() is not None
    if mode == "draft" and not present:
        return False, "generation.speculative is 'draft' but the draft model is missing"
    line = f"{describe_mode(mode, drafter_names(mode, present))} (generation.speculative)"
    last = remembered_stats()
    if last is not None and last.acceptance is not None:
        line += f"; last answer: {last.acceptance:.0%} of {last.drafted} drafted tokens accepted"
    return True, line


def common_prefix_length(cached: Sequence[int], tokens: Sequence[int]) -> int:
    length = 0
    for a, b in zip(cached, tokens):
        if a != b:
            break
        length += 1
    return length


def fill_batch(batch, tokens: Sequence[int], start: int) -> None:
    """Put `tokens` at positions start.. of sequence 0 into a `llama_batch`, logits at each."""
    for i, token in enumerate(tokens):
        batch.token[i] = token
        batch.pos[i] = start + i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = 1
    batch.n_tokens = len(tokens)


def batch_logit_difference(llama, tokens: Sequence[int], start: int) -> float:
    """The largest logit difference between positions start.. decoded one token at a time and
    all in one batch (the KV cache must hold the `start` tokens before them).

    Speculative decoding can only give plain decoding's answer token for token where this is 0:
    llama.cpp's kernel settings decide it (see llama_cpp_backend.BATCH_INVARIANT_SETTINGS).
    """
    import llama_cpp
    import numpy as np

    vocabulary = llama.n_vocab()
    batch = llama_cpp.llama_batch_init(len(tokens), 0, 1)

    def decode(part: Sequence[int], at: int) -> list:
        fill_batch(batch, part, at)
        llama._ctx.kv_cache_seq_rm(-1, at, -1)
        if llama_cpp.llama_decode(llama.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        return [np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llama.ctx, row), shape=(vocabulary,)).copy()
                for row in range(len(part))]

    try:
        alone = [decode([token], start + offset)[0] for offset, token in enumerate(tokens)]
        together = decode(tokens, start)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama._ctx.kv_cache_seq_rm(-1, start, -1)
        llama.n_tokens = min(llama.n_tokens, start)
    return max(float(np.max(np.abs(a - b))) for a, b in zip(alone, together))


class ChatPrompt:
    """The prompt `create_chat_completion` would evaluate: the model's own chat template,
    rendered by the binding's Jinja2 formatter (compiled once), tokenized with special tokens."""

    def __init__(self, llama) -> None:
        from llama_cpp import llama_chat_format

        self._llama = llama
        self._format = llama_chat_format.Jinja2ChatFormatter(
            template=llama.metadata["tokenizer.chat_template"],
            eos_token=_token_text(llama, llama.token_eos()),
            bos_token=_token_text(llama, llama.token_bos()),
        )

    def tokens(self, messages: Sequence[dict]) -> list[int]:
        result = self._format(messages=list(messages))
        return self._llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)


def is_end_of_generation(llama, token: int) -> bool:
    """End of turn or of text (Qwen's `<|im_end|>`, `<|endoftext|>`)."""
    import llama_cpp

    return llama_cpp.llama_vocab_is_eog(llama._model.vocab, token)


def _token_text(llama, token: int) -> str:
    return llama._model.token_get_text(token) if token != -1 else ""


def drafter_names(mode: str, draft_model_present: bool, exact: bool | None = None) -> tuple[str, ...]:
    """Which drafters a `generation.speculative` mode uses: `auto` none unless verifying a batch
    is exact (`exact`: measured on the loaded model; None: what the install measured)."""
    if mode == "off":
        return ()
    if mode == "auto":
        if not (batch_is_exact() if exact is None else exact):
            return ()
        return tuple(name for name in AUTO_DRAFTERS if name != "draft" or draft_model_present)
    return (mode,)


def batch_is_exact() -> bool:
    """False where the install's smoke test measured batch logits that differ from one-token
    logits with both kernel settings (another llama.cpp build or CPU than they were made for):
    `auto` then does not draft, since it could change answers. No measurement counts as exact."""
    from hybrid_llm.llm.llama_cpp_backend import BATCH_INVARIANT_SETTINGS, PATCHED_ENGINE_SETTINGS, settings_exact

    return settings_exact(PATCHED_ENGINE_SETTINGS) or settings_exact(BATCH_INVARIANT_SETTINGS)


def make_drafters(names: Sequence[str], draft_llama=None) -> list:
    """The drafters `names` asks for; "draft" needs the loaded draft model."""
    return [PromptLookup() if name == "lookup" else DraftModel(draft_llama) for name in names]


def describe_mode(mode: str, names: Sequence[str]) -> str:
    """`auto (prompt lookup)`-style label for the toolbar, `doctor` and the stats."""
    words = {"lookup": "prompt lookup", "draft": "draft model"}
    used = " + ".join(words[name] for name in names) or "off"
    return f"auto ({used})" if mode == "auto" else used


class CostModel:
    """Measured seconds of a target decode by batch size, and of one draft-model token, so
    the draft length is chosen for this machine rather than for the one we measured on."""

    def __init__(self) -> None:
        self._seconds: dict[int, float] = {}

    def record(self, batch_size: int, seconds: float) -> None:
        old = self._seconds.get(batch_size)
        self._seconds[batch_size] = seconds if old is None else old + SMOOTHING * (seconds - old)

    def relative(self, batch_size: int) -> float:
        """Cost of a batch relative to a single token."""
        one = self._seconds.get(1)
        measured = self._seconds.get(batch_size)
        if one and measured:
            return measured / one
        return 1.0 + PRIOR_BATCH_COST_PER_TOKEN * (batch_size - 1)

    def seconds_per_token(self) -> float | None:
        return self._seconds.get(1)


class DraftLength:
    """How many tokens one drafter should propose next, from its recent acceptance.

    Acceptance is modelled as geometric: each draft token is right with probability p (given
    the ones before it were), so k drafted tokens yield 1 + p + ... + p^k tokens per step at a
    cost of one verification batch of k + 1 plus k draft tokens. The k with the best tokens per
    unit of cost wins; 0 (no drafting) when no k beats a plain step.
    """

    def __init__(self, draft_token_cost: float) -> None:
        self.draft_token_cost = draft_token_cost
        self._accepted = 1.0  # start at p = 0.5: neither optimistic nor pessimistic
        self._rejected = 1.0
        self._wait = 0
        self._retry_after = FIRST_RETRY_STEPS

    @property
    def p(self) -> float:
        return self._accepted / (self._accepted + self._rejected)

    def gain(self, k: int, costs: CostModel) -> float:
        """Expected tokens per unit of cost of a step drafting k tokens (1.0 for no draft)."""
        expected = sum(self.p**i for i in range(k + 1))
        return expected / (costs.relative(k + 1) + self.draft_token_cost * k)

    def choose(self, available: int, costs: CostModel) -> tuple[int, float]:
        """(tokens to draft, at most `available`; expected gain); (0, 1.0) while drafting does
        not pay."""
        best = (0, 1.0)
        for k in range(1, available + 1):
            gain = self.gain(k, costs)
            if gain > best[1]:
                best = (k, gain)
        return best

    def record(self, drafted: int, accepted: int) -> None:
        """One step's outcome: `accepted` of `drafted` tokens kept (0 drafted: nothing learnt)."""
        if drafted == 0:
            return
        rejected = 1.0 if accepted < drafted else 0.0
        self._accepted += SMOOTHING * (accepted - self._accepted)
        self._rejected += SMOOTHING * (rejected - self._rejected)

    def should_retry(self) -> bool:
        """After a run of steps without drafting, try one token again, backing off each time:
        this re-measures a batch cost that one noisy measurement may have made look too high."""
        self._wait += 1
        if self._wait < self._retry_after:
            return False
        self._wait = 0
        self._retry_after = min(self._retry_after * 2, MAX_RETRY_STEPS)
        return True

    def paid_off(self) -> None:
        self._wait = 0
        self._retry_after = FIRST_RETRY_STEPS


class PromptLookup:
    """Drafts the continuation of the longest recent n-gram (NGRAM_MAX down to NGRAM_MIN
    tokens) that ends the text so far and appeared before, in the prompt or the answer.

    Each n-gram maps to the position right after its most recent earlier occurrence; an
    n-gram is registered only once a token follows it, so the text's own ending never matches
    itself. Proposals cost no model time, so a proposal that was not used is still checked
    against the token the model chose: acceptance is learnt even while drafting is paused.
    Acceptance is learnt separately for long and short matches (LONG_MATCH): `length` is the
    estimate for the last proposal's kind.
    """

    name = "lookup"

    def __init__(self) -> None:
        self._tokens: list[int] = []
        self._next_after: dict[tuple[int, ...], int] = {}
        self._lengths = {True: DraftLength(draft_token_cost=0.0), False: DraftLength(draft_token_cost=0.0)}
        self._long_match = True

    @property
    def length(self) -> DraftLength:
        return self._lengths[self._long_match]

    def reset(self, tokens: Sequence[int]) -> None:
        self._tokens = []
        self._next_after = {}
        self.extend(tokens)

    def extend(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            end = len(self._tokens)
            for n in range(NGRAM_MIN, NGRAM_MAX + 1):
                if end >= n:
                    self._next_after[tuple(self._tokens[end - n:end])] = end
            self._tokens.append(token)

    def propose(self, limit: int) -> list[int]:
        for n in range(NGRAM_MAX, NGRAM_MIN - 1, -1):
            if len(self._tokens) < n:
                continue
            start = self._next_after.get(tuple(self._tokens[-n:]))
            if start is not None:
                self._long_match = n >= LONG_MATCH
                return self._tokens[start:start + limit]
        return []


class DraftModel:
    """A small model of the same tokenizer family proposing tokens greedily.

    It keeps its own KV cache of the conversation and, like the target, re-evaluates only what
    follows the longest common prefix; its first proposal of an answer pays for the prompt,
    which is why it starts only after the first token (time to first token is unchanged).
    """

    name = "draft"

    def __init__(self, llama) -> None:
        self._llama = llama
        self.costs = CostModel()  # the decoder hands over its own
        self._token_seconds: float | None = None
        self.length = DraftLength(draft_token_cost=PRIOR_DRAFT_MODEL_COST)

    def sync(self, tokens: Sequence[int]) -> None:
        """Bring the draft's KV cache to `tokens` (all but the logits of the last one)."""
        llama = self._llama
        reuse = min(common_prefix_length(llama._input_ids, tokens), len(tokens) - 1)
        llama.n_tokens = reuse
        llama.eval(list(tokens[reuse:]))

    def propose(self, tokens: Sequence[int], limit: int) -> list[int]:
        import llama_cpp
        import numpy as np

        self.sync(tokens)
        proposal: list[int] = []
        started = time.perf_counter()
        while True:
            logits = llama_cpp.llama_get_logits_ith(self._llama.ctx, -1)
            token = int(np.argmax(np.ctypeslib.as_array(logits, shape=(self._llama.n_vocab(),))))
            proposal.append(token)
            if len(proposal) == limit or is_end_of_generation(self._llama, token):
                break
            self._llama.eval([token])
        self._learn_cost((time.perf_counter() - started) / len(proposal))
        return proposal

    def _learn_cost(self, seconds: float) -> None:
        old = self._token_seconds
        self._token_seconds = seconds if old is None else old + SMOOTHING * (seconds - old)
        target = self.costs.seconds_per_token()
        if target:
            self.length.draft_token_cost = self._token_seconds / target


class _TextStream:
    """Token ids to text as it becomes final: multi-byte characters split over tokens wait
    for their last byte, and text that may be the start of a stop string waits until it is
    clear it is not."""

    def __init__(self, llama, stop: Sequence[str]) -> None:
        self._llama = llama
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = [s for s in stop if s]
        self._held = ""
        self.stopped = False

    def push(self, token: int) -> str:
        self._held += self._decoder.decode(self._llama.detokenize([token]))
        for stop in self._stop:
            at = self._held.find(stop)
            if at != -1:
                self.stopped = True
                text, self._held = self._held[:at], ""
                return text
        keep = max((self._overlap(stop) for stop in self._stop), default=0)
        text, self._held = self._held[: len(self._held) - keep], self._held[len(self._held) - keep:]
        return text

    def flush(self) -> str:
        text, self._held = self._held + self._decoder.decode(b"", final=True), ""
        return "" if self.stopped else text

    def _overlap(self, stop: str) -> int:
        for length in range(min(len(stop) - 1, len(self._held)), 0, -1):
            if self._held.endswith(stop[:length]):
                return length
        return 0


class SpeculativeDecoder:
    """Generates an answer on a loaded `llama_cpp.Llama`, drafting with `drafters` (none:
    plain decoding through the same loop).

    The binding's bookkeeping (`input_ids`, `n_tokens`) is kept in step with the KV cache, so
    prefix reuse across turns and saved states work as with `create_chat_completion`.
    """

    def __init__(self, llama, mode: str, drafters: Sequence, is_cancelled: Callable[[], bool],
                 max_batch: int | None = None) -> None:
        """`max_batch`: the most rows a verified batch may have (default: what the install
        measured exact, `verify_batch_limit`)."""
        import llama_cpp

        from hybrid_llm.llm.llama_cpp_backend import verify_batch_limit

        self._llama = llama
        self._max_draft = (max_batch or verify_batch_limit()) - 1
        self.mode = mode
        self._drafters = list(drafters)
        self._is_cancelled = is_cancelled
        self.costs = CostModel()
        for drafter in self._drafters:
            if isinstance(drafter, DraftModel):
                drafter.costs = self.costs
        self._lookup = next((d for d in self._drafters if isinstance(d, PromptLookup)), None)
        self._batch = llama_cpp.llama_batch_init(self._max_draft + 1, 0, 1)
        self._decode = llama_cpp.llama_decode

    def warm(self, prompt: Sequence[int]) -> None:
        """Let a draft model process the prompt every request starts with, as the target does."""
        for drafter in self._drafters:
            if isinstance(drafter, DraftModel):
                drafter.sync(prompt)

    def generate(self, prompt: Sequence[int], *, max_tokens: int, sampling: Sampling,
                 stop: Sequence[str] = ()) -> Iterator[str]:
        """Stream the answer's text; ends early (quietly) when cancelled."""
        llama = self._llama
        stats = SpeculationStats(self.mode)
        text = _TextStream(llama, stop)
        sampler = llama._init_sampler(temp=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
        try:
            self._process_prompt(prompt)
            if self._is_cancelled():
                return
            history = list(prompt)
            if self._lookup:
                self._lookup.reset(history)
            chosen = [sampler.sample(llama._ctx, -1)]
            finished = False
            while not finished:
                for token in chosen:
                    stats.tokens += 1
                    history.append(token)
                    piece = text.push(token)
                    if piece:
                        yield piece
                    finished = self._finished(token, stats.tokens, max_tokens, text, len(history))
                    if finished:
                        break
                    if self._lookup:
                        self._lookup.extend([token])
                if not finished:
                    chosen = self._step(history, max_tokens - stats.tokens, sampler, stats)
                    if chosen is None:
                        return
            rest = text.flush()
            if rest:
                yield rest
        except RuntimeError:
            # llama_decode reports an abort as an error; the KV cache stays consistent up to
            # the last finished batch (see _truncate), so the next call reuses it.
            if not self._is_cancelled():
                raise
        finally:
            sampler.close()
            _remember(stats)

    def close(self) -> None:
        import llama_cpp

        llama_cpp.llama_batch_free(self._batch)

    def _finished(self, token: int, produced: int, max_tokens: int, text: _TextStream, context: int) -> bool:
        return (text.stopped or produced >= max_tokens or context >= self._llama.n_ctx()
                or is_end_of_generation(self._llama, token))

    def _process_prompt(self, prompt: Sequence[int]) -> None:
        """The binding's own prompt processing, after the longest prefix still in the KV cache
        (at least the last prompt token is evaluated again, for its logits)."""
        llama = self._llama
        reuse = min(common_prefix_length(llama._input_ids, prompt), len(prompt) - 1)
        llama.n_tokens = reuse
        llama.eval(list(prompt[reuse:]))

    def _step(self, history: list[int], room: int, sampler, stats: SpeculationStats) -> list[int] | None:
        """Verify [last token + draft] in one batch; returns the tokens the model chose (the
        kept draft tokens, then one sampled token), or None when cancelled."""
        if self._is_cancelled():
            return None
        room = min(room - 1, self._llama.n_ctx() - len(history) - 1, self._max_draft)
        drafter, draft = self._draft(history, max(room, 0))
        start = len(history) - 1
        batch = [history[-1], *draft]
        if not self._evaluate(batch, start):
            return None
        chosen: list[int] = []
        for index in range(len(batch)):
            sampled = sampler.sample(self._llama._ctx, index)
            chosen.append(sampled)
            if index >= len(draft) or sampled != draft[index]:
                break
        kept = len(chosen) - 1
        self._truncate(start + 1 + kept)
        self._learn(drafter, draft, kept, chosen[0])
        stats.drafted += len(draft)
        stats.accepted += kept
        return chosen

    def _draft(self, history: list[int], room: int):
        """The drafter and draft with the best expected gain, or (None, []) when none pays."""
        best, best_gain, best_k = None, 1.0, 0
        lookup_draft = self._lookup.propose(room) if self._lookup else []
        for drafter in self._drafters:
            available = len(lookup_draft) if drafter is self._lookup else room
            k, gain = drafter.length.choose(available, self.costs)
            if k == 0 and available and drafter.length.should_retry():
                k, gain = 1, 1.0 + 1e-9
            if k and gain > best_gain:
                best, best_gain, best_k = drafter, gain, k
        if best is None:
            return None, []
        if best is self._lookup:
            return best, lookup_draft[:best_k]
        return best, best.propose(history, best_k)

    def _learn(self, drafter, draft: list[int], kept: int, first_choice: int) -> None:
        """Update acceptance from a step; `first_choice` is the model's token after the last
        one known before the step."""
        if drafter is not None:
            drafter.length.record(len(draft), kept)
            if kept:
                drafter.length.paid_off()
        # A prompt-lookup proposal that was not used still shows whether it would have been
        # right: its first token against the model's choice, at no cost.
        lookup = self._lookup
        if lookup is not None and drafter is not lookup:
            shadow = lookup.propose(1)
            if shadow:
                lookup.length.record(1, int(shadow[0] == first_choice))

    def _evaluate(self, tokens: list[int], start: int) -> bool:
        """Decode `tokens` at positions start.. with logits at each; False when aborted."""
        llama = self._llama
        fill_batch(self._batch, tokens, start)
        llama._ctx.kv_cache_seq_rm(-1, start, -1)
        started = time.perf_counter()
        status = self._decode(llama.ctx, self._batch)
        if status != 0:
            self._truncate(start)
            if self._is_cancelled():
                return False
            raise RuntimeError(f"llama_decode returned {status}")
        self.costs.record(len(tokens), time.perf_counter() - started)
        llama.input_ids[start:start + len(tokens)] = tokens
        llama.n_tokens = start + len(tokens)
        return True

    def _truncate(self, n_tokens: int) -> None:
        """Forget positions from `n_tokens` on: rejected drafts leave the KV cache here."""
        llama = self._llama
        llama.n_tokens = min(n_tokens, llama.n_tokens)
        llama._ctx.kv_cache_seq_rm(-1, llama.n_tokens, -1)
