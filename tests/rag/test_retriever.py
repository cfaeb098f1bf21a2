"""HybridRetriever: fusion (RRF and learned) on hand-made searches, then on a real index of real files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hybrid_llm.config import Config
from hybrid_llm.rag.chunk import Chunk
from hybrid_llm.rag.retriever import (
    HybridRetriever,
    matches_path_glob,
    query_identifiers,
    reciprocal_rank_fusion,
)


def test_rrf_orders_by_weighted_reciprocal_rank() -> None:
    fused = reciprocal_rank_fusion(
        {"dense": ["a", "b", "c"], "keyword": ["c", "d", "a"]},
        {"dense": 1.0, "keyword": 1.0},
        k=60,
    )

    assert [item for item, _, _ in fused] == ["a", "c", "b", "d"]
    scores = {item: score for item, score, _ in fused}
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert dict((item, sources) for item, _, sources in fused)["d"] == ("keyword",)


def test_rrf_weights_and_k_change_the_order() -> None:
    rankings = {"dense": ["a", "b"], "keyword": ["b", "a"]}

    keyword_heavy = reciprocal_rank_fusion(rankings, {"dense": 1.0, "keyword": 2.0}, k=60)
    dense_only = reciprocal_rank_fusion(rankings, {"dense": 1.0, "keyword": 0.0}, k=60)

    assert [item for item, _, _ in keyword_heavy] == ["b", "a"]
    assert [item for item, _, _ in dense_only] == ["a", "b"]
    # a small k rewards being first in one list over being fourth in both
    rankings = {"d": ["x", "p", "q", "y"], "k": ["r", "s", "t", "y"]}
    assert reciprocal_rank_fusion(rankings, {}, k=1)[0][0] == "x"
    assert reciprocal_rank_fusion(rankings, {}, k=60)[0][0] == "y"


class _RankedIndex:
    """Hand-made rankings standing in for the two searches (fusion logic only, no ML); scores
    are 1.0 unless `scores` gives one (a cosine for dense, BM25 for keyword)."""

    def __init__(self, chunks: list[Chunk], dense: list[str], keyword: list[str],
                 scores: dict[str, float] | None = None):
        self.chunks = {chunk.id: chunk for chunk in chunks}
        self.dense, self.keyword = dense, keyword
        self.scores = scores or {}
        self.embedded: list[str] = []
        self.embedder = self

    def embed_query(self, text: str) -> np.ndarray:
        self.embedded.append(text)
        return np.zeros(384, dtype=np.float32)

    def dense_search(self, embedding: np.ndarray, k: int) -> list[tuple[str, float]]:
        return [(item, self.scores.get(f"dense:{item}", 1.0)) for item in self.dense[:k]]

    def keyword_search(self, query: str, k: int) -> list[tuple[str, float]]:
        return [(item, self.scores.get(f"keyword:{item}", 1.0)) for item in self.keyword[:k]]

    def rare_term_share(self, query: str) -> float | None:
        return None

    def get_chunks(self, ids: list[str]) -> dict[str, Chunk]:
        return {item: self.chunks[item] for item in ids if item in self.chunks}


def _chunk(path: str, start: int, end: int, language: str = "python") -> Chunk:
    text = "\n".join(f"line {n}" for n in range(start, end + 1))
    return Chunk(path, language, start, end, text, symbol=f"f{start}")


def _rrf_config() -> Config:
    config = Config()
    config.rag.fusion = "rrf"
    return config


def test_retrieve_fuses_merges_touching_chunks_and_caps_per_file() -> None:
    a1, a2, a3, a4 = (_chunk("a.py", s, s + 9) for s in (1, 11, 31, 51))
    b1 = _chunk("b.py", 1, 5)
    index = _RankedIndex([a1, a2, a3, a4, b1],
                         dense=[a1.id, a3.id, a4.id, b1.id], keyword=[a2.id, b1.id])
    config = _rrf_config()
    config.rag.max_chunks_per_file = 2

    results = HybridRetriever(index, config).retrieve("query", k=5)

    assert index.embedded == ["query"]  # embedded once per request
    spans = [(r.chunk.path, r.chunk.start_line, r.chunk.end_line) for r in results]
    # b1 is found by both searches; a1 and a2 touch, so they become one span; a4 is over the cap
    assert spans == [("b.py", 1, 5), ("a.py", 1, 20), ("a.py", 31, 40)]
    assert results[0].sources == ("dense", "keyword")
    assert results[1].sources == ("dense", "keyword")
    assert results[1].chunk.text.split("\n") == [f"line {n}" for n in range(1, 21)]
    assert results[2].sources == ("dense",)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


def test_filters_by_language_and_path_glob() -> None:
    py, ts, md = _chunk("src/a.py", 1, 3), _chunk("web/b.ts", 1, 3, "typescript"), _chunk("README.md", 1, 3, "markdown")
    index = _RankedIndex([py, ts, md], dense=[md.id, ts.id, py.id], keyword=[])
    retriever = HybridRetriever(index, Config())

    assert [r.chunk.path for r in retriever.retrieve("q", language="typescript")] == ["web/b.ts"]
    assert [r.chunk.path for r in retriever.retrieve("q", path_glob="src/*")] == ["src/a.py"]
    assert [r.chunk.path for r in retriever.retrieve("q", path_glob="*.md")] == ["README.md"]
    assert retriever.retrieve("   ") == []


def test_zero_weight_turns_a_search_off() -> None:
    a, b = _chunk("a.py", 1, 3), _chunk("b.py", 1, 3)
    index = _RankedIndex([a, b], dense=[a.id], keyword=[b.id])
    config = Config()
    config.rag.dense_weight = 0.0

    results = HybridRetriever(index, config).retrieve("q")

    assert [(r.chunk.path, r.sources) for r in results] == [("b.py", ("keyword",))]
    assert index.embedded == []


def test_a_spelled_out_identifier_promotes_its_definition() -> None:
    user = _chunk("app/main.py", 1, 3)
    definition = Chunk("net/http.py", "python", 10, 12, "def parse_http_response(raw): ...",
                       symbol="Client.parse_http_response")
    other = _chunk("docs/notes.md", 1, 3, "markdown")
    # keyword search ranks a caller (it repeats the name) above the definition
    index = _RankedIndex([user, definition, other], dense=[other.id],
                         keyword=[user.id, definition.id])

    results = HybridRetriever(index, _rrf_config()).retrieve("parseHttpResponse", k=3)
    learned = HybridRetriever(index, Config()).retrieve("parseHttpResponse", k=3)

    assert [r.chunk.path for r in results] == ["net/http.py", "docs/notes.md", "app/main.py"]
    assert results[0].sources == ("keyword",)
    assert learned[0].chunk.path == "net/http.py"
    assert [r.score for r in learned] == sorted((r.score for r in learned), reverse=True)
    assert query_identifiers("Config.load_file and fooBar or plain words") == {"loadfile", "foobar"}
    assert query_identifiers("Returns the buffer contents.") == set()


def test_definitions_outrank_free_code_found_as_well() -> None:
    table = _chunk("lexers/ruby.py", 1, 40)  # a token table: no definition in it
    method = replace(_chunk("lexers/ruby.py", 42, 43), defines=True)
    other = replace(_chunk("lexers/lua.py", 1, 5), defines=True)
    # the table is found first by both searches, the method second by both
    index = _RankedIndex([table, method, other], dense=[table.id, method.id, other.id],
                         keyword=[table.id, method.id])

    preferred = HybridRetriever(index, _rrf_config()).retrieve("check for a ruby shebang", k=3)
    config = _rrf_config()
    config.rag.non_definition_factor = 1.0
    plain = HybridRetriever(index, config).retrieve("check for a ruby shebang", k=3)

    assert [r.chunk.start_line for r in preferred][:2] == [42, 1]
    assert preferred[0].score > preferred[1].score
    assert [r.chunk.start_line for r in plain][:2] == [1, 42]


def test_learned_fusion_weighs_how_strong_each_match_is_not_only_its_rank() -> None:
    """RRF: a chunk both searches rank near the top outvotes one that dense search ranks 1st by
    a wide margin. Learned fusion reads the margin: the clear dense match comes first."""
    strong = replace(_chunk("render/page.py", 1, 9), defines=True)
    weak = replace(_chunk("util/misc.py", 1, 9), defines=True)
    noise = replace(_chunk("util/other.py", 1, 9), defines=True)
    index = _RankedIndex([strong, weak, noise], dense=[strong.id, weak.id, noise.id],
                         keyword=[weak.id, noise.id],
                         scores={f"dense:{strong.id}": 0.71, f"dense:{weak.id}": 0.38,
                                 f"dense:{noise.id}": 0.35, f"keyword:{weak.id}": 2.0,
                                 f"keyword:{noise.id}": 1.9})

    by_rank = HybridRetriever(index, _rrf_config()).retrieve("render the page", k=3)
    learned = HybridRetriever(index, Config()).retrieve("render the page", k=3)

    assert [r.chunk.path for r in by_rank] == ["util/misc.py", "util/other.py", "render/page.py"]
    assert [r.chunk.path for r in learned] == ["render/page.py", "util/misc.py", "util/other.py"]
    assert learned[0].sources == ("dense",) and learned[1].sources == ("dense", "keyword")


def test_learned_fusion_prefers_definitions_and_names_made_of_the_request_words() -> None:
    table = _chunk("lexers/ruby.py", 1, 40)  # a token table: no definition in it
    method = replace(_chunk("lexers/ruby.py", 42, 43), defines=True)
    named = Chunk("lexers/lua.py", "python", 1, 5, "def shebang(): ...", symbol="check_shebang",
                  defines=True)
    same = {f"dense:{item.id}": 0.5 for item in (table, method, named)}
    index = _RankedIndex([table, method, named], dense=[table.id, method.id, named.id], keyword=[],
                         scores=same)

    results = HybridRetriever(index, Config()).retrieve("check for a ruby shebang", k=3)

    assert [(r.chunk.path, r.chunk.start_line) for r in results] == [
        ("lexers/lua.py", 1), ("lexers/ruby.py", 42), ("lexers/ruby.py", 1)]


def test_path_glob_semantics() -> None:
    assert matches_path_glob("src/pkg/mod.py", "src/*.py")
    assert matches_path_glob("src/pkg/mod.py", "src")
    assert matches_path_glob("src/pkg/mod.py", "mod.py")
    assert not matches_path_glob("tests/mod.py", "src/*")


# ---------------------------------------------------------------- on a real index


def _write_repo(root: Path) -> Path:
    files = {
        "net/http.py": "def parse_http_response(raw):\n    head, _, body = raw.partition('\\n\\n')\n"
                       "    return head, body\n",
        "net/retry.py": "def backoff_delays(attempts, base=0.5):\n"
                        "    return [base * 2 ** n for n in range(attempts)]\n",
        "ui/colors.py": "def blend_colors(first, second, ratio):\n"
                        "    return tuple(a + (b - a) * ratio for a, b in zip(first, second))\n",
        "docs/guide.md": "# Guide\n\nRetry failed requests with exponential backoff.\n",
        ".env": "ZQX_SECRET_TOKEN=parse_http_response\n",
        "build/generated.py": "def parse_http_response_generated():\n    pass\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def real_index(tmp_path: Path):
    from hybrid_llm.rag.index import CodeIndex

    repo = _write_repo(tmp_path / "repo")
    index = CodeIndex.open(repo, Config())
    index.update()
    yield index
    index.close()


class _DenseMisses:
    """The real index, except that dense search never returns chunks of `hidden_path`:
    it stands for an embedding model that does not recognise an identifier."""

    def __init__(self, index, hidden_path: str):
        self.index, self.hidden_path = index, hidden_path
        self.embedder = index.embedder

    def dense_search(self, embedding, k):
        found = self.index.dense_search(embedding, k)
        chunks = self.index.get_chunks([item for item, _ in found])
        return [(item, score) for item, score in found if chunks[item].path != self.hidden_path]

    def keyword_search(self, query, k):
        return self.index.keyword_search(query, k)

    def rare_term_share(self, query):
        return self.index.rare_term_share(query)

    def get_chunks(self, ids):
        return self.index.get_chunks(ids)


def test_identifier_query_is_found_by_keyword_search_when_dense_misses(real_index) -> None:
    retriever = HybridRetriever(_DenseMisses(real_index, "net/http.py"), Config())

    results = retriever.retrieve("parseHttpResponse", k=3)

    assert results[0].chunk.path == "net/http.py"
    assert results[0].chunk.symbol == "parse_http_response"
    assert results[0].sources == ("keyword",)


def test_natural_language_query_finds_code_by_meaning(real_index) -> None:
    results = HybridRetriever(real_index, Config()).retrieve("mix two colours", k=2)

    assert results[0].chunk.path == "ui/colors.py"
    assert "dense" in results[0].sources


def test_results_never_contain_skipped_or_deleted_files(real_index) -> None:
    retriever = HybridRetriever(real_index, Config())
    paths = {r.chunk.path for r in retriever.retrieve("parse http response token", k=20)}
    assert paths and not paths & {".env", "build/generated.py"}

    (real_index.repo / "net" / "http.py").unlink()
    real_index.update()

    paths = {r.chunk.path for r in retriever.retrieve("parse http response", k=20)}
    assert "net/http.py" not in paths
    assert not paths & {".env", "build/generated.py"}
