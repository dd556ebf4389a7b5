from __future__ import annotations

import numpy as np

from schemas.features import CandidateMatrix, FeatureVectors, UserProfile
from services.scorer.batch_ranker import BatchRanker
from services.scorer.ranking import HEURISTIC_MODEL_VERSION
from services.scorer.settings import ScoreWeights


def _request(
    user_id: str, item_ids: list[str]
) -> tuple[tuple[str, list[str]], FeatureVectors, CandidateMatrix]:
    matrix = CandidateMatrix(
        item_ids, np.full((len(item_ids), len(CandidateMatrix.names)), np.nan)
    )
    vectors = FeatureVectors(
        user={},
        items=matrix,
        attributes={},
        profile=UserProfile(user_id),
        reference_time=0.0,
    )
    return (user_id, item_ids), vectors, matrix


def test_batch_ranker_scores_every_candidate() -> None:
    requests, vectors, matrices = zip(
        _request("u1", ["a", "b"]),
        _request("u2", []),
        _request("u3", ["c"]),
        strict=True,
    )

    batch = BatchRanker(ScoreWeights()).score(
        requests, vectors, matrices, np.array([1.0, 0.5, 0.2])
    )

    assert batch.task_probs.shape == (3, 3)
    assert batch.scores.shape == (3,)
    assert batch.model_version == HEURISTIC_MODEL_VERSION


def test_batch_ranker_prefers_stronger_source() -> None:
    requests, vectors, matrices = zip(_request("u1", ["a", "b"]), strict=True)

    batch = BatchRanker(ScoreWeights()).score(
        requests, vectors, matrices, np.array([0.2, 1.0])
    )

    assert batch.scores[1] > batch.scores[0]


def test_batch_ranker_without_signals_reads_nan() -> None:
    requests, vectors, matrices = zip(_request("u1", ["a"]), strict=True)

    batch = BatchRanker(ScoreWeights()).score(
        requests, vectors, matrices, np.array([1.0])
    )

    assert np.isnan(batch.signals).all()
