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
- the system prompt is processed right after loading (`warm`), before the first request;
- prompt-lookup decoding is available but off by default (see PROMPT_LOOKUP_DEFAULT).
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.llm.base import Message, configured_adapter, register_backend
from hybrid_llm.llm.engine_info import active_engine
from hybrid_llm.llm.openai_backend import OpenAICompatibleBackend

GGUF_MAGIC = b"GGUF"
# Off (bench/llm_bench.py, issue note): prompt-lookup drafting needs the logits of every
# position, an n_ctx x vocabulary float buffer (2.5 GB for Qwen2.5 at 4096) filled during
# prefill, which costs more memory and prefill time than it saves in decode on 2 cores.
PROMPT_LOOKUP_DEFAULT = False
PROMPT_LOOKUP_TOKENS = 10
# Tokens per compute graph while a prompt is processed. An abort can only land between graph
# nodes, and a node's matrix product grows with the micro-batch: at llama.cpp's 512 the stream
# ended up to 131 ms after a cancel on 2 cores (227 ms on a slower CI machine); at 128 at most
# 32 ms, with no loss of prefill speed (bench/llm_bench.py --only cancel).
PREFILL_UBATCH = 128


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
        prompt_lookup: bool = PROMPT_LOOKUP_DEFAULT,
        lora_path: Path | None = None,
        prefill_ubatch: int = PREFILL_UBATCH,
    ) -> None:
        import llama_cpp
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        threads = threads or physical_cores()
        draft = LlamaPromptLookupDecoding(num_pred_tokens=PROMPT_LOOKUP_TOKENS) if prompt_lookup else None
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_ubatch=prefill_ubatch,
                draft_model=draft,
                # Drafting verifies several tokens per step, so it needs the logits of every
                # position; llama-cpp-python sizes its buffer by this flag, not by the draft model.
                logits_all=prompt_lookup,
                lora_path=str(lora_path) if lora_path else None,
                verbose=False,
            )
        except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
            raise UserError(f"llama.cpp cannot load {model_path} ({exc}): run `hybrid-llm models pull`") from None
        # verbose=False still lets llama.cpp's error-level lines through, and it logs one when a
        # decode is aborted: a cancelled request must not print anything.
        logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)
        self.name = f"llama.cpp:{model_path.stem}" + (f"+{lora_path.stem}" if lora_path else "")
        self.context_length = self._llama.n_ctx()
        self.threads = threads
        self._cancelled = _AbortFlag(llama_cpp.ggml_abort_callback)
        llama_cpp.llama_set_abort_callback(self._llama.ctx, self._cancelled.callback, self._cancelled.data)

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
        chunks = self._llama.create_chat_completion(
            messages=list(messages),
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            stop=list(stop) or None,
            stream=True,
        )
        try:
            for chunk in chunks:
                if self._cancelled.is_set():
                    return
                text = chunk["choices"][0]["delta"].get("content")
                if text:
                    yield text
        except RuntimeError:
            # llama_decode reports an abort as an error; the KV cache stays consistent up to
            # the last finished batch, so the next call reuses it.
            if not self._cancelled.is_set():
                raise
        finally:
            chunks.close()

    def warm(self, system_prompt: str) -> None:
        """Process the system prompt now, while the user is still typing.

        llama-cpp-python keeps the KV cache of the last prompt and evaluates only what follows
        the longest common prefix, so after a one-token answer to [system prompt, empty user
        turn] the first real request pays only for its own tokens (~130 fewer, ~3 s on 2 cores).
        """
        warm_up = [{"role": "system", "content": system_prompt}, {"role": "user", "content": ""}]
        for _ in self.stream(warm_up, max_tokens=1, temperature=0.0, top_p=1.0, top_k=1):
            pass

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def cancel(self) -> None:
        self._cancelled.set()

    def close(self) -> None:
        self._llama.close()


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
        return LlamaCppBackend(
            model_path,
            n_ctx=config.model.n_ctx,
            threads=config.model.threads,
            lora_path=adapter.gguf_path if adapter else None,
        )
    if adapter is not None:
        raise UserError("LoRA adapters need llama-cpp-python: run the install script")
    if binding == "xllamacpp":
        return XllamacppBackend(model_path, n_ctx=config.model.n_ctx, threads=config.model.threads)
    raise UserError(
        "no llama.cpp binding is installed: run the install script "
        "(or `pip install llama-cpp-python`, or `pip install xllamacpp` without a compiler)"
    )
