"""The learned fusion's weights: fitted the way the script says, on data no benchmark uses."""

from __future__ import annotations

import json

import numpy as np

from hybrid_llm.finetune import embedder_training, fusion_fit
from hybrid_llm.rag import fusion


def _group(rng: np.random.Generator, candidates: int = 12) -> fusion_fit.QueryCandidates:
    """A query whose answer has the best similarity and file similarity; the other features
    are noise, and keyword share favours a wrong candidate as often as not."""
    features = rng.normal(size=(candidates, len(fusion.FEATURES)))
    answer = int(rng.integers(candidates))
    features[answer, fusion.FEATURES.index("similarity")] = features[:, 0].max() + 0.5
    features[answer, fusion.FEATURES.index("file_similarity")] = features[:, 4].max() + 0.5
    answers = np.zeros(candidates, dtype=bool)
    answers[answer] = True
    order = list(range(candidates))
    return fusion_fit.QueryCandidates(features, answers, order, order)


def test_the_fit_learns_which_evidence_marks_the_answer() -> None:
    rng = np.random.default_rng(0)
    groups = [_group(rng) for _ in range(200)]

    weights = fusion_fit.fit(groups)

    named = dict(zip(fusion.FEATURES, weights))
    assert named["similarity"] > 1 and named["file_similarity"] > 1
    assert abs(named["keyword_share"]) < min(named["similarity"], named["file_similarity"]) / 3
    held_out = [_group(rng) for _ in range(100)]
    assert fusion_fit.report(held_out, weights)["learned"] > 0.95


def test_the_shipped_weights_come_from_packages_no_benchmark_or_embedder_training_uses() -> None:
    stored = json.loads(fusion.WEIGHTS_FILE.read_text(encoding="utf-8"))

    assert set(stored["weights"]) == set(fusion.FEATURES)
    assert stored["pool"] == fusion.POOL
    fitted_on = set(stored["fitted_on"])
    assert fitted_on == set(embedder_training.MORE_PYTHON_PACKAGES)
    assert not fitted_on & set(embedder_training.BENCHMARK_PACKAGES)
    assert not fitted_on & set(embedder_training.TRAIN_PACKAGES)  # the embedder's own data
    assert not fitted_on & set(embedder_training.VALIDATION_PACKAGES)
    # what it was kept for: better than RRF on the held-out packages
    figures = stored["validation_chunk_hit@5"]["mean"]
    assert figures["learned"] > figures["rrf"]
