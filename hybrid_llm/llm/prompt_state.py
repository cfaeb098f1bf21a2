"""The system prompt's KV state on disk, so a new process does not process it again.

Every request starts with the same system prompt. The REPL processes it right after loading,
while the user types, but `hybrid-llm ask` in a script pays for it on every call (~130 tokens,
about 3 s on 2 cores). So after the first warm-up the llama.cpp context state (the KV cache of
those tokens) is saved under `HYBRID_LLM_HOME/prompt-states/`, owner-only, and later processes
load it in milliseconds.

A state is only valid for the exact model file, adapter, context size, engine version and
settings, and prompt tokens that produced it; loading another model's state would be garbage or a native
crash. So the file records that identity (and a checksum of its payload), and a state whose
identity or checksum differs is rejected, and rebuilt by the caller. One file per model and
adapter: a rebuilt state replaces the old one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hybrid_llm.config import hybrid_home

log = logging.getLogger(__name__)

_MAGIC = b"hybrid-llm prompt state 1\n"
_DIRECTORY = "prompt-states"


def _file_identity(path: Path | None) -> dict | None:
    if path is None:
        return None
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class PromptStateCache:
    """Saves and restores one `llama_cpp.Llama`'s state for a given prompt."""

    def __init__(self, model_path: Path, *, adapter_path: Path | None, n_ctx: int,
                 engine_settings: dict | None = None, directory: Path | None = None) -> None:
        """`engine_settings`: how the model is loaded (e.g. flash attention, which changes the
        KV cache's layout), so that a state saved under other settings is never loaded."""
        import llama_cpp

        self.identity = {
            "model": _file_identity(model_path),
            "adapter": _file_identity(adapter_path),
            "n_ctx": n_ctx,
            "engine": f"llama-cpp-python {llama_cpp.__version__}",
            "engine_settings": engine_settings,
        }
        slot = json.dumps([str(model_path.resolve()), str(adapter_path.resolve()) if adapter_path else None])
        name = f"{model_path.stem}-{hashlib.sha256(slot.encode()).hexdigest()[:16]}.state"
        self.path = (directory or hybrid_home() / _DIRECTORY) / name

    def restore(self, llama, prompt: Sequence[int]) -> bool:
        """Load the saved state of `prompt` into `llama`; False (and nothing changed) when there
        is none, or it was made for another model, adapter, n_ctx, engine or prompt, or is damaged."""
        loaded = self._read(prompt)
        if loaded is None:
            return False
        tokens, state = loaded
        from llama_cpp.llama import LlamaState

        input_ids = np.zeros(llama.n_ctx(), dtype=np.intc)
        input_ids[: len(tokens)] = tokens
        try:
            llama.load_state(LlamaState(
                input_ids=input_ids,
                scores=np.zeros((1, llama.n_vocab()), dtype=np.single),  # logits are not reused
                n_tokens=len(tokens),
                llama_state=state,
                llama_state_size=len(state),
                seed=llama._seed,
            ))
        except RuntimeError as exc:
            log.warning("saved prompt state %s not accepted by llama.cpp: %s", self.path, exc)
            llama.reset()
            return False
        return True

    def save(self, llama, prompt: Sequence[int]) -> None:
        """Save `llama`'s state, which must hold `prompt` (and maybe more, which is cut off)."""
        import llama_cpp

        cached = list(llama._input_ids[: len(prompt)])
        if cached != list(prompt):
            log.warning("not saving the prompt state: the KV cache does not hold the prompt")
            return
        llama._ctx.kv_cache_seq_rm(-1, len(prompt), -1)
        llama.n_tokens = len(prompt)
        size = llama_cpp.llama_state_get_size(llama.ctx)
        buffer = (llama_cpp.ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_get_data(llama.ctx, buffer, size)
        state = bytes(buffer)[:written]
        tokens = np.asarray(prompt, dtype=np.int32).tobytes()
        header = {
            "identity": self._identity(prompt),
            "n_tokens": len(prompt),
            "sha256": hashlib.sha256(tokens + state).hexdigest(),
        }
        try:
            self._write(json.dumps(header).encode() + b"\n" + tokens + state)
        except OSError as exc:  # a full disk costs the next process 3 s, nothing more
            log.warning("cannot save the prompt state to %s: %s", self.path, exc)

    def _identity(self, prompt: Sequence[int]) -> dict:
        tokens = np.asarray(prompt, dtype=np.int32).tobytes()
        return {**self.identity, "prompt_sha256": hashlib.sha256(tokens).hexdigest()}

    def _read(self, prompt: Sequence[int]) -> tuple[np.ndarray, bytes] | None:
        try:
            data = self.path.read_bytes()
        except OSError:
            return None
        reason = None
        if not data.startswith(_MAGIC) or b"\n" not in data[len(_MAGIC):]:
            reason = "not a prompt state file"
        else:
            line, _, payload = data[len(_MAGIC):].partition(b"\n")
            try:
                header = json.loads(line)
                n_tokens = int(header["n_tokens"])
            except (ValueError, KeyError, TypeError):
                header, n_tokens = {}, 0
            if header.get("identity") != self._identity(prompt):
                reason = "made for another model, adapter, n_ctx, engine or system prompt"
            elif hashlib.sha256(payload).hexdigest() != header.get("sha256"):
                reason = "damaged (checksum)"
        if reason:
            log.info("saved prompt state %s rejected: %s; rebuilding it", self.path, reason)
            return None
        tokens = np.frombuffer(payload[: 4 * n_tokens], dtype=np.int32)
        return tokens, payload[4 * n_tokens:]

    def _write(self, content: bytes) -> None:
        """Owner-only, and atomic: a reader never sees half a file."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".state-")
        try:
            with os.fdopen(handle, "wb") as out:  # mkstemp creates it with mode 0600
                out.write(_MAGIC + content)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
