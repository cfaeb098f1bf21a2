"""llama.cpp on a GGUF file: the default engine, built for CPUs.

`llama-cpp-python` (compiled for the machine by the install script) is preferred. Where it is
not importable, the prebuilt `xllamacpp` wheel runs the same model through llama.cpp's own
server code; that server also listens on a loopback TCP port, which the network guard allows
when `network.allow_loopback` is true (the default).

What matters on a 2-core laptop (bench/llm_bench.py measures it, the slow tests check it):
- prefix KV reuse: the same `Llama` object keeps the previous prompt's KV cache and
  llama-cpp-python re-evaluates only the tokens after the longest common prefix, so the
  system prompt and earlier turns are not processed again;
- cancellation within 200 ms: the flag is checked between tokens, and llama.cpp's abort
  callback reads it between graph nodes, which stops a long prompt (seconds) or a token that a
  busy CPU makes slow; prompts are processed in micro-batches of PREFILL_UBATCH tokens so that
  no single node runs long;
- the system prompt is processed right after loading (`warm`), before the first request, or
  its saved state is loaded (hybrid_llm/llm/prompt_state.py);
- `prefill` processes a prompt without answering (the REPL's type-ahead), in micro-batch
  slices that a request interrupts at once, so the request then finds it in the KV cache;
- speculative decoding (`generation.speculative`, hybrid_llm/llm/speculative.py): drafts from
  prompt lookup or a draft model are verified in one batch, and the answer does not change.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.llm.base import Message, configured_adapter, register_backend
from hybrid_llm.llm.engine_info import active_engine
from hybrid_llm.llm.models import draft_model_path
from hybrid_llm.llm.openai_backend import OpenAICompatibleBackend
from hybrid_llm.llm.prompt_state import PromptStateCache
from hybrid_llm.llm.speculative import (
    ChatPrompt,
    Sampling,
    SpeculativeDecoder,
    common_prefix_length,
    describe_mode,
    drafter_names,
    make_drafters,
)

GGUF_MAGIC = b"GGUF"
# Tokens per compute graph while a prompt is processed. An abort can only land between graph
# nodes, and a node's matrix product grows with the micro-batch: at llama.cpp's 512 the stream
# ended up to 131 ms after a cancel on 2 cores (227 ms on a slower CI machine); at 128 at most
# 32 ms, with no loss of prefill speed (bench/llm_bench.py --only cancel).
PREFILL_UBATCH = 128
# How llama.cpp computes, chosen so that a position decoded in a batch of up to
# speculative.SHORT_VERIFY_BATCH tokens gets exactly the logits it gets alone: speculative decoding verifies
# drafts in batches and plain decoding goes one token at a time, so anything else lets a near-tie
# flip the answer. With llama.cpp's defaults they differ by up to 0.70 here, because
# - weight repacking ("extra buffer types") multiplies groups of 4 rows with a kernel that rounds
#   otherwise than its one-row kernel;
# - without flash attention, attention products of 2+ rows go through llamafile's sgemm, one row
#   through ggml's dot products;
# - flash attention over an F16/F32 KV cache splits one row's keys among the threads (for 512+
#   cached tokens) and merges the parts in another order than a batch row; a Q8_0 cache takes the
#   one-row-at-a-time kernel for every batch size (and halves the cache's memory);
# - the K-quant matrix product switches to a tiled kernel at 8 rows (which is what makes prompt
#   processing fast, so batches stay below it, unless our engine patch moved the switch).
# Measured by bench/kernels_bench.py (2-core Xeon). Any llama.cpp build is exact with these:
BATCH_INVARIANT_SETTINGS = {"flash_attention": True, "repack_weights": False, "kv_cache": "q8_0"}
# Our engine patch (engine_patch.py) mends the first, third and fourth causes, so the engine it
# built is exact with repacked weights and an F16 cache too, in batches of up to
# speculative.MAX_VERIFY_BATCH: one-token decoding 1.17x faster, a batch of 4 tokens 1.7x one
# token instead of 2.3x, 1,000-token prompts 1.05x (250-token ones 0.80x). Used where the install
# measured it exact (see `kernel_settings`).
PATCHED_ENGINE_SETTINGS = {"flash_attention": True, "repack_weights": True, "kv_cache": "f16"}
# `prefill` works in slices this long: a request that interrupts it loses at most one slice of
# prepared tokens (~1.4 s on 2 cores), and a changed retrieval is noticed between slices.
PREFILL_SLICE = 64


def physical_cores() -> int:
    """Physical cores: llama.cpp decode is memory-bound, and hyper-threads only add contention."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def is_gguf(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(4) == GGUF_MAGIC


class LlamaCppBackend:
    """A GGUF model loaded with llama-cpp-python, streamed token by token."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int,
        threads: int | None = None,
        lora_path: Path | None = None,
        prefill_ubatch: int = PREFILL_UBATCH,
        speculative: str = "auto",
        draft_model_path: Path | None = None,
        prompt_state: PromptStateCache | None = None,
        kernels: dict | None = None,
    ) -> None:
        import llama_cpp

        threads = threads or physical_cores()
        kernels = kernels or kernel_settings(model_path)
        settings = {"n_ctx": n_ctx, "threads": threads, "ubatch": prefill_ubatch, "kernels": kernels}
        self._prefill_slice = min(prefill_ubatch, PREFILL_SLICE)
        self._llama = load_llama(model_path, lora_path=lora_path, **settings)
        # verbose=False still lets llama.cpp's error-level lines through, and it logs one when a
        # decode is aborted: a cancelled request must not print anything.
        logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)
        self.name = f"llama.cpp:{model_path.stem}" + (f"+{lora_path.stem}" if lora_path else "")
        self.context_length = self._llama.n_ctx()
        self.threads = threads
        self._cancelled = _AbortFlag(llama_cpp.ggml_abort_callback)
        exact = speculative == "auto" and settings_exact(kernels) and runs_batch_invariant(self._llama, kernels)
        names = drafter_names(speculative, draft_model_path is not None, exact)
        if "draft" in names and draft_model_path is None:
            raise UserError("generation.speculative is 'draft' but the draft model is missing: "
                            "run `hybrid-llm models pull qwen2.5-coder-0.5b-instruct-q4_k_m`")
        self._draft_llama = load_llama(draft_model_path, **settings) if "draft" in names else None
        for llama in filter(None, (self._llama, self._draft_llama)):
            llama_cpp.llama_set_abort_callback(llama.ctx, self._cancelled.callback, self._cancelled.data)
        drafters = make_drafters(names, self._draft_llama)
        self.speculative = describe_mode(speculative, names)
        self._decoder = SpeculativeDecoder(self._llama, self.speculative, drafters, self._cancelled.is_set)
        self._chat = ChatPrompt(self._llama)
        self._prompt_state = prompt_state

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        top_p: float,
        top_k: int,
        stop: Sequence[str] = (),
    ) -> Iterator[str]:
        self._cancelled.clear()
        yield from self._decoder.generate(
            self._chat.tokens(messages),
            max_tokens=max_tokens,
            sampling=Sampling(temperature, top_p, top_k),
            stop=stop,
        )

    def warm(self, system_prompt: str) -> None:
        """Process the system prompt now, while the user is still typing.

        llama-cpp-python keeps the KV cache of the last prompt and evaluates only what follows
        the longest common prefix, so after a one-token answer to [system prompt, empty user
        turn] the first real request pays only for its own tokens (~130 fewer, ~3 s on 2 cores).
        """
        warm_up = [{"role": "system", "content": system_prompt}, {"role": "user", "content": ""}]
        prompt = self._chat.tokens(warm_up)
        if self._prompt_state is None or not self._prompt_state.restore(self._llama, prompt):
            for _ in self.stream(warm_up, max_tokens=1, temperature=0.0, top_p=1.0, top_k=1):
                pass
            if self._prompt_state is not None:
                self._prompt_state.save(self._llama, prompt)
        self._decoder.warm(prompt)

    def prefill(self, messages: Sequence[Message], *, should_stop: Callable[[], bool]) -> int:
        """Process the prompt of `messages` into the KV cache without answering, so that a
        request whose prompt starts the same way pays only for the rest; returns how many of
        its tokens are cached.

        Works in slices of PREFILL_SLICE tokens: `should_stop()` is asked before each and
        `cancel()` interrupts one, so a real request gets the model within ~30 ms, and every
        finished slice stays cached. The abort flag is cleared first and `should_stop` read after, so a caller
        that makes `should_stop` true and then calls `cancel()` is never missed.
        """
        self._cancelled.clear()
        llama = self._llama
        tokens = self._chat.tokens(messages)
        cached = common_prefix_length(llama._input_ids, tokens)
        llama.n_tokens = cached
        while cached < len(tokens) and not should_stop():
            end = min(len(tokens), cached + self._prefill_slice)
            try:
                llama.eval(tokens[cached:end])
            except RuntimeError:  # llama_decode reports an abort as an error
                if self._cancelled.is_set():
                    break
                raise
            cached = end
        return cached

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def cancel(self) -> None:
        self._cancelled.set()

    def close(self) -> None:
        self._decoder.close()
        if self._draft_llama is not None:
            self._draft_llama.close()
        self._llama.close()


def load_llama(path: Path, *, n_ctx: int, threads: int, ubatch: int = PREFILL_UBATCH, lora_path: Path | None = None,
               kernels: dict = BATCH_INVARIANT_SETTINGS):
    """A quiet `llama_cpp.Llama` with our thread, micro-batch and kernel settings; one line on
    failure. `kernels`: BATCH_INVARIANT_SETTINGS or PATCHED_ENGINE_SETTINGS (others only for
    comparisons in bench/).

    A Q8_0 KV cache needs attention heads of 32+ dimensions: a model with smaller ones gets an
    F16 cache, and `runs_batch_invariant` then says speculative decoding would not be exact.
    """
    try:
        return _load(path, n_ctx, threads, ubatch, lora_path, kernels)
    except ValueError as exc:  # "Failed to load model from file" / "Failed to create llama_context"
        if kernels["kv_cache"] != "f16" and "context" in str(exc):
            return load_llama(path, n_ctx=n_ctx, threads=threads, ubatch=ubatch, lora_path=lora_path,
                              kernels={**kernels, "kv_cache": "f16"})
        raise UserError(f"llama.cpp cannot load {path} ({exc}): run `hybrid-llm models pull`") from None


def _load(path: Path, n_ctx: int, threads: int, ubatch: int, lora_path: Path | None, kernels: dict):
    import llama_cpp

    kv_type = _ggml_type(kernels["kv_cache"])
    with _model_params(use_extra_bufts=kernels["repack_weights"]):
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_ubatch=ubatch,
            flash_attn=kernels["flash_attention"],
            type_k=kv_type,
            type_v=kv_type,
            # Repacked weights are copied out of the file: a mapping kept beside them would add
            # ~600 MB of resident pages (RSS 1,849 MB against 1,258 MB read without it).
            use_mmap=not kernels["repack_weights"],
            lora_path=str(lora_path) if lora_path else None,
            verbose=False,
        )


def kernel_settings(model_path: Path) -> dict:
    """PATCHED_ENGINE_SETTINGS for the model the install's batch check measured them exact on (our
    patched engine on x86; the patch covers the kernels of that model's quantization types),
    BATCH_INVARIANT_SETTINGS for every other model, engine and CPU."""
    smoke = _recorded_batch_check()
    patched_exact = smoke.get("patched_batch_logit_difference") == 0
    return PATCHED_ENGINE_SETTINGS if patched_exact and smoke.get("batch_check_model") == model_path.name \
        else BATCH_INVARIANT_SETTINGS


def settings_exact(kernels: dict) -> bool:
    """Whether the install's batch check found `kernels` exact; no check on record counts as exact
    for BATCH_INVARIANT_SETTINGS (any llama.cpp build we know of), never for the patched ones."""
    smoke = _recorded_batch_check()
    if kernels == PATCHED_ENGINE_SETTINGS:
        return smoke.get("patched_batch_logit_difference") == 0
    return not smoke.get("batch_logit_difference")


def verify_batch_limit() -> int:
    """The most rows speculative decoding verifies in one batch: as many as the install's batch
    check measured exact (MAX_VERIFY_BATCH with our engine patch), SHORT_VERIFY_BATCH where it did
    not record a size (checks made before there were two) or nothing was measured."""
    from hybrid_llm.llm.speculative import SHORT_VERIFY_BATCH

    return int(_recorded_batch_check().get("batch_check_rows") or SHORT_VERIFY_BATCH)


def _recorded_batch_check() -> dict:
    from hybrid_llm.llm.engine_build import read_record

    record = read_record()
    return record.smoke if record else {}


def runs_batch_invariant(llama, wanted: dict) -> bool:
    """Whether `llama` was loaded with every one of the `wanted` kernel settings (a model whose
    heads are too small for a Q8_0 cache fell back to F16)."""
    import llama_cpp

    flash = llama.context_params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
    return (flash == wanted["flash_attention"]
            and bool(llama.model_params.use_extra_bufts) == wanted["repack_weights"]
            and llama.context_params.type_k == _ggml_type(wanted["kv_cache"]))


def _ggml_type(name: str) -> int:
    import llama_cpp

    return getattr(llama_cpp, f"GGML_TYPE_{name.upper()}")


_model_params_lock = threading.Lock()


@contextlib.contextmanager
def _model_params(**fields) -> Iterator[None]:
    """Set `llama_model_params` fields that `llama_cpp.Llama` has no argument for.

    `Llama.__init__` fills its model parameters from `llama_model_default_params()` and loads
    the model at once, so the defaults themselves are amended while one `Llama` is built.
    """
    from llama_cpp import llama as binding

    defaults = binding.llama_cpp.llama_model_default_params

    def amended():
        params = defaults()
        for name, value in fields.items():
            setattr(params, name, value)
        return params

    with _model_params_lock:
        binding.llama_cpp.llama_model_default_params = amended
        try:
            yield
        finally:
            binding.llama_cpp.llama_model_default_params = defaults


class _AbortFlag:
    """A cancel flag that llama.cpp itself polls, so a running decode stops mid-computation.

    llama.cpp calls the abort callback after every node of the compute graph: thousands of
    times per token, on its own thread. A Python callback would take the GIL each time, so the
    flag is a one-byte C string read by libc's `strlen`: 0 means go on, 1 means abort (the
    callback returns bool, which the caller reads from the low byte of the return register).
    Where libc cannot be loaded by name, a Python callback does the same job, more slowly.
    """

    def __init__(self, callback_type) -> None:
        self._byte = ctypes.create_string_buffer(2)
        self.data = ctypes.cast(self._byte, ctypes.c_void_p)
        try:
            strlen = ctypes.CDLL(None).strlen
        except (OSError, AttributeError, TypeError):
            self.callback = callback_type(lambda _data: self.is_set())
        else:
            self.callback = ctypes.cast(strlen, callback_type)

    def set(self) -> None:
        self._byte[0] = b"\x01"

    def clear(self) -> None:
        self._byte[0] = b"\x00"

    def is_set(self) -> bool:
        return self._byte[0] != b"\x00"


class XllamacppBackend(OpenAICompatibleBackend):
    """The same model through the prebuilt `xllamacpp` wheel, used when llama_cpp is missing.

    xllamacpp runs llama.cpp's own C++ server in-process (with its prompt cache, so prefix
    reuse holds) and serves it on a loopback port; we talk to it as to any OpenAI-compatible
    server, and count tokens with its `/tokenize` endpoint.
    """

    def __init__(self, model_path: Path, *, n_ctx: int, threads: int | None = None) -> None:
        import xllamacpp

        threads = threads or physical_cores()
        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.n_ctx = n_ctx
        params.n_parallel = 1
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.hostnames = ["127.0.0.1"]
        self._server = xllamacpp.Server(params)
        address = self._server.listening_address.rstrip("/")
        super().__init__(
            f"{address}/v1",
            model_path.stem,
            context_length=n_ctx,
            timeout=600.0,
            tokenize_url=f"{address}/tokenize",
        )
        self.name = f"xllamacpp:{model_path.stem}"
        self.threads = threads


def _claims(path: Path) -> bool:
    return is_gguf(path)


@register_backend("llama_cpp", claims=_claims)
def create_llama_cpp_backend(config: Config, model_path: Path | None) -> LlamaCppBackend | XllamacppBackend:
    assert model_path is not None
    binding = active_engine()
    adapter = configured_adapter(config)
    if binding == "llama_cpp":
        mode = config.generation.speculative
        kernels = kernel_settings(model_path)
        return LlamaCppBackend(
            model_path,
            n_ctx=config.model.n_ctx,
            threads=config.model.threads,
            lora_path=adapter.gguf_path if adapter else None,
            speculative=mode,
            draft_model_path=draft_model_path() if "draft" in drafter_names(mode, True) else None,
            prompt_state=PromptStateCache(
                model_path, adapter_path=adapter.gguf_path if adapter else None, n_ctx=config.model.n_ctx,
                engine_settings=kernels,
            ) if config.model.prompt_state_cache else None,
            kernels=kernels,
        )
    if adapter is not None:
        raise UserError("LoRA adapters need llama-cpp-python: run the install script")
    if binding == "xllamacpp":
        return XllamacppBackend(model_path, n_ctx=config.model.n_ctx, threads=config.model.threads)
    raise UserError(
        "no llama.cpp binding is installed: run the install script "
        "(or `pip install llama-cpp-python`, or `pip install xllamacpp` without a compiler)"
    )
