"""Fit the weights of the retriever's learned fusion (`hybrid_llm/rag/fusion.py`).

Data: the docstring-to-code sets the retrieval benchmark builds, made from packages that the
code embedder never saw (MORE_PYTHON_PACKAGES, which the shipped model's training left out) and
that no benchmark uses; fitting on the embedder's own training packages would teach fusion to
trust similarities that are inflated there. Each package is indexed with the real `CodeIndex`
and the shipped embedder, each query searched by both searches (POOL candidates each), and every
candidate described by `fusion.candidate_features`, the code the retriever runs.

Fit: a linear score whose softmax over one query's candidates puts its probability on the
answer (the documented function), by full-batch gradient descent on standardised features with
a small L2 penalty: deterministic, no seed. The held-out VALIDATION_PACKAGES of the embedder
are reported (chunk-level hit@5 of learned fusion, RRF and dense search alone), and the weights,
their inputs and those figures go to `hybrid_llm/rag/fusion_weights.json`.

Run (about 5 minutes on 2 cores, most of it embedding):
    .venv/bin/python -m hybrid_llm.finetune.fusion_fit --work /tmp/fusion-fit
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybrid_llm.finetune.docstring_queries import DocstringQuery, is_hit
from hybrid_llm.finetune.embedder_training import (
    MORE_PYTHON_PACKAGES,
    VALIDATION_PACKAGES,
    check_packages_are_unseen,
    download_wheels,
    unpack_stripped,
    wheel_for,
)
from hybrid_llm.rag import fusion
from hybrid_llm.rag.retriever import reciprocal_rank_fusion

HYPERPARAMETERS = {"l2": 1e-3, "steps": 400, "learning_rate": 0.5}
HIT_AT = 5


@dataclass
class QueryCandidates:
    """One query's candidates: their features and which of them answer it."""

    features: np.ndarray
    answers: np.ndarray  # bool per candidate
    dense_order: list[int]  # candidate positions, dense search's order
    rrf_order: list[int]  # candidate positions, RRF's order (the retriever's `rrf` fusion)


def package_candidates(package: str, version: str, work: Path) -> list[QueryCandidates]:
    """Every usable query of the package, searched in its own index."""
    from hybrid_llm.config import Config
    from hybrid_llm.rag.chunker import CodeChunker
    from hybrid_llm.rag.embedder import CodeEmbedder
    from hybrid_llm.rag.index import CodeIndex

    repo = work / "sets" / package
    queries = unpack_stripped(wheel_for(work / "wheels", package, version), package, repo)
    config = Config()
    config.rag.index_dir = str(work / "indexes" / package)
    with CodeIndex.open(repo, config, embedder=CodeEmbedder(), chunker=CodeChunker()) as index:
        index.update()
        found = [_search(index, query) for query in queries]
        chunks = index.get_chunks(list({item for hits in found for pool in hits.values()
                                         for item, _ in pool}))
    return [_candidates(query, hits, chunks, config.rag.rrf_k) for query, hits in zip(queries, found)]


def _search(index, query: DocstringQuery) -> dict[str, list[tuple[str, float]]]:
    return {"dense": index.dense_search(index.embedder.embed_query(query.text), fusion.POOL),
            "keyword": index.keyword_search(query.text, fusion.POOL)}


def _candidates(query: DocstringQuery, found, chunks, rrf_k: int) -> QueryCandidates:
    ids, features = fusion.candidate_features(query.text, found, chunks)
    position = {item: n for n, item in enumerate(ids)}
    rankings = {name: [item for item, _ in hits if item in position] for name, hits in found.items()}
    rrf = reciprocal_rank_fusion(rankings, {}, rrf_k)
    return QueryCandidates(features, np.array([is_hit(chunks[item], query) for item in ids]),
                           [position[item] for item in rankings["dense"]],
                           [position[item] for item, _, _ in rrf])


def fit(groups: list[QueryCandidates]) -> np.ndarray:
    """Weights over fusion.FEATURES maximising the softmax probability of each query's answers."""
    answered = [group for group in groups if group.answers.any()]
    stacked = np.vstack([group.features for group in answered])
    mean, spread = stacked.mean(0), stacked.std(0) + 1e-9
    scaled = [((group.features - mean) / spread, group.answers / group.answers.sum())
              for group in answered]
    weights = np.zeros(len(fusion.FEATURES))
    for _ in range(HYPERPARAMETERS["steps"]):
        gradient = HYPERPARAMETERS["l2"] * weights
        for features, target in scaled:
            scores = features @ weights
            probabilities = np.exp(scores - scores.max())
            probabilities /= probabilities.sum()
            gradient += features.T @ (probabilities - target) / len(scaled)
        weights -= HYPERPARAMETERS["learning_rate"] * gradient
    # A per-query constant does not change a ranking, so the means can be dropped.
    return weights / spread


def hit_rate(groups: list[QueryCandidates], order_of) -> float:
    """Share of queries with an answer among the first HIT_AT candidates of `order_of(group)`."""
    return statistics.mean(bool(group.answers[order_of(group)[:HIT_AT]].any()) for group in groups)


def report(groups: list[QueryCandidates], weights: np.ndarray) -> dict[str, float]:
    return {
        "learned": round(hit_rate(groups, lambda g: list(np.argsort(-(g.features @ weights),
                                                                   kind="stable"))), 3),
        "rrf": round(hit_rate(groups, lambda g: g.rrf_order), 3),
        "dense": round(hit_rate(groups, lambda g: g.dense_order), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (not the repo)")
    parser.add_argument("--no-download", action="store_true", help="wheels are already there")
    parser.add_argument("--output", type=Path, default=fusion.WEIGHTS_FILE)
    args = parser.parse_args(argv)
    work = args.work.resolve()
    os.environ["HYBRID_LLM_HOME"] = str(work / "home")
    check_packages_are_unseen()
    if not args.no_download:
        download_wheels(work / "wheels", {**MORE_PYTHON_PACKAGES, **VALIDATION_PACKAGES})
    fitting = {package: package_candidates(package, version, work)
               for package, version in MORE_PYTHON_PACKAGES.items()}
    validation = {package: package_candidates(package, version, work)
                  for package, version in VALIDATION_PACKAGES.items()}
    weights = fit([group for groups in fitting.values() for group in groups])
    figures = {package: report(groups, weights) for package, groups in validation.items()}
    figures["mean"] = {name: round(statistics.mean(figures[p][name] for p in validation), 3)
                       for name in ("learned", "rrf", "dense")}
    args.output.write_text(json.dumps({
        "weights": {name: round(float(value), 4) for name, value in zip(fusion.FEATURES, weights)},
        "pool": fusion.POOL,
        "fitted_on": MORE_PYTHON_PACKAGES,
        "queries": sum(len(groups) for groups in fitting.values()),
        "hyperparameters": HYPERPARAMETERS,
        f"validation_chunk_hit@{HIT_AT}": figures,
        "validation_packages": VALIDATION_PACKAGES,
    }, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures["mean"]), f"-> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
