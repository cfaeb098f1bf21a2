"""Learned fusion: one score per candidate from the evidence both searches found for it.

Reciprocal Rank Fusion sees only ranks, so a chunk dense search ranks 3rd by a wide margin and
one it ranks 3rd by a hair weigh the same, and a weak keyword match found by both searches
outvotes a strong dense match (measured on bench/retrieval_bench.py: dense search alone beat
RRF on click and jinja2). Here each candidate of the two pools gets a linear score over a few
signals a reader would weigh:

- `similarity`: the query's cosine similarity to the chunk (candidates only keyword search
  found get just under the dense pool's lowest);
- `keyword_share`: the chunk's BM25 score as a share of the best one for this query;
- `defines`: the chunk holds a whole function or class (requests ask for behaviour);
- `name_share`: the share of the query's words that the chunk's symbol name is made of;
- `file_similarity`: the best similarity of any candidate of the same file (a request is about
  one place; a file whose other functions match too is likelier that place).

The weights are fitted by `hybrid_llm/finetune/fusion_fit.py` (softmax over each query's
candidates, answer = the documented function) on packages that neither the code embedder was
trained on nor any benchmark uses, and stored with their provenance in `fusion_weights.json`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

import numpy as np

from hybrid_llm.rag.chunk import Chunk
from hybrid_llm.rag.keyword_store import query_terms, split_identifiers

FEATURES = ("similarity", "keyword_share", "defines", "name_share", "file_similarity")
# How many candidates each search contributes; the weights were fitted on pools of this size.
POOL = 30
WEIGHTS_FILE = Path(__file__).with_name("fusion_weights.json")
# A candidate dense search did not return ranked below all it did return: just under its lowest.
_BELOW_POOL = 0.02


def word_stem(word: str) -> str:
    """A crude suffix strip, so "parses" and "parsing" meet "parse" in a name."""
    for suffix in ("ing", "es", "ed", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def candidate_features(query: str, found: Mapping[str, Sequence[tuple[str, float]]],
                       chunks: Mapping[str, Chunk]) -> tuple[list[str], np.ndarray]:
    """The candidates (ids in first-seen order: dense, then keyword) and their FEATURES rows."""
    similarity = dict(found.get("dense", ()))
    keyword = dict(found.get("keyword", ()))
    ids = [item for item in dict.fromkeys([*similarity, *keyword]) if item in chunks]
    floor = min(similarity.values(), default=0.0) - _BELOW_POOL
    best_keyword = max(keyword.values(), default=0.0)
    words = {word_stem(term) for term in query_terms(query)}
    file_best: dict[str, float] = {}
    for item in ids:
        path = chunks[item].path
        file_best[path] = max(file_best.get(path, floor), similarity.get(item, floor))
    rows = []
    for item in ids:
        chunk = chunks[item]
        name = {word_stem(term) for term in split_identifiers(chunk.symbol or "")}
        rows.append((
            similarity.get(item, floor),
            keyword.get(item, 0.0) / best_keyword if best_keyword > 0 else 0.0,
            float(chunk.defines),
            len(words & name) / len(words) if words else 0.0,
            file_best[chunk.path],
        ))
    return ids, np.array(rows, dtype=np.float64).reshape(len(ids), len(FEATURES))


@cache
def fitted_weights() -> np.ndarray:
    """The weights of FEATURES, in that order, from WEIGHTS_FILE."""
    stored = json.loads(WEIGHTS_FILE.read_text(encoding="utf-8"))["weights"]
    return np.array([stored[name] for name in FEATURES], dtype=np.float64)


def learned_fusion(query: str, found: Mapping[str, Sequence[tuple[str, float]]],
                   chunks: Mapping[str, Chunk]) -> list[tuple[str, float, tuple[str, ...]]]:
    """Best-first (id, score, sources) over both pools, like `reciprocal_rank_fusion` returns.
    Ties keep first-seen order, so results are deterministic."""
    ids, features = candidate_features(query, found, chunks)
    scores = features @ fitted_weights()
    in_pool = {name: {item for item, _ in hits} for name, hits in found.items()}
    order = np.argsort(-scores, kind="stable")
    return [
        (ids[n], float(scores[n]), tuple(name for name, members in in_pool.items() if ids[n] in members))
        for n in order
    ]
