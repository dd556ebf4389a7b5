"""Scores for the candidates of a batch of triggers, in one pass.

Shapes: N candidates of the whole batch, stacked trigger after trigger, and
3 tasks in the order click, cart_add, purchase. Every step works row by row,
so each runs once per batch instead of once per trigger, and a row's result
does not depend on the other rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from models.multitask.ranker import CandidateColumns, RankRequest
from schemas.features import CandidateMatrix, FeatureVectors
from services.scorer.protocols import ModelSource, SignalSource
from services.scorer.ranking import (
    SIGNALS,
    HeuristicRanker,
    filled_prices,
    score_signal_matrix,
)
from services.scorer.settings import ScoreWeights

__all__ = ["BatchRanker", "BatchScores"]


class BatchScores(NamedTuple):
    """The scores of a batch's N candidates.

    Attributes:
        task_probs: (N, 3) blended task probabilities.
        scores: (N,) scores, higher is better.
        signals: (N, 3) online signals in the order of :data:`SIGNALS`.
        model_version: the ranker that produced the probabilities.
    """

    task_probs: np.ndarray
    scores: np.ndarray
    signals: np.ndarray
    model_version: str


class BatchRanker:
    """Score the candidates of several triggers with one call per step.

    Args:
        weights: how task probabilities and signals combine into scores.
        models: the trained ranker, if any. The heuristic ranks until it has one.
        signals: online-learning signals, if the learner runs.
    """

    def __init__(
        self,
        weights: ScoreWeights,
        *,
        models: ModelSource | None = None,
        signals: SignalSource | None = None,
    ) -> None:
        self._weights = weights
        self._models = models
        self._signals = signals
        self._heuristic = HeuristicRanker(popularity_weight=weights.popularity)

    def score(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        vectors: Sequence[FeatureVectors],
        matrices: Sequence[CandidateMatrix],
        source_scores: np.ndarray,
    ) -> BatchScores:
        """Return the scores of every candidate of the batch.

        Args:
            requests: ``(user_id, item_ids)`` per trigger.
            vectors: the features read for each request.
            matrices: the candidates' features of each request.
            source_scores: (N,) merged candidate-source score per candidate.
        """
        probs, model_version = self._predict(requests, vectors, matrices, source_scores)
        signals = self._signal_rows(requests, vectors, matrices)
        blended, scores = score_signal_matrix(
            probs, signals, self._item_values(requests, vectors), self._weights
        )
        return BatchScores(blended, scores, signals, model_version)

    def _predict(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        vectors: Sequence[FeatureVectors],
        matrices: Sequence[CandidateMatrix],
        source_scores: np.ndarray,
    ) -> tuple[np.ndarray, str]:
        """Return the (N, 3) task probabilities of the batch and the model version.

        A trained ranker scores every candidate of the batch in one forward
        pass, and so does the heuristic, which alone ranks before the first
        model.
        """
        model = self._models.current() if self._models is not None else None
        stacked = np.concatenate([candidates.array for candidates in matrices])
        heuristic = self._heuristic.predict_array(stacked, source_scores)
        if model is None:
            return heuristic, HeuristicRanker.model_version
        rank_requests = [
            RankRequest(
                user_id, features.user, _candidate_columns(features, candidates)
            )
            for (user_id, _), features, candidates in zip(
                requests, vectors, matrices, strict=True
            )
        ]
        # LIMITATION(L-58): the trained ranker gets no candidate-source scores,
        # which the heuristic ranks by, so the two are blended per task by
        # configured weights, and by default the click column is the
        # heuristic's alone.
        weights = self._weights
        # One weight per task column: click, cart_add, purchase.
        blend = np.array(
            [weights.ranker_click_blend, weights.ranker_blend, weights.ranker_blend]
        )
        learned = np.concatenate(model.predict_many(rank_requests))
        return (1.0 - blend) * heuristic + blend * learned, model.model_version

    def _signal_rows(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        vectors: Sequence[FeatureVectors],
        matrices: Sequence[CandidateMatrix],
    ) -> np.ndarray:
        """Return the (N, 3) signals of the batch, from one call."""
        if self._signals is None:
            size = sum(len(item_ids) for _, item_ids in requests)
            return np.full((size, len(SIGNALS)), np.nan)
        return self._signals.signal_matrix(
            [
                (user_id, features.user, candidates)
                for (user_id, _), features, candidates in zip(
                    requests, vectors, matrices, strict=True
                )
            ]
        )

    def _item_values(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        vectors: Sequence[FeatureVectors],
    ) -> np.ndarray | None:
        """Return the (N,) item values the expected-value objective weighs by.

        A missing price is filled from the prices of the same trigger.
        """
        if self._weights.objective != "expected_value":
            return None
        return np.concatenate(
            [
                filled_prices([_price(features, item_id) for item_id in item_ids])
                for (_, item_ids), features in zip(requests, vectors, strict=True)
            ]
        )


def _candidate_columns(
    vectors: FeatureVectors, candidates: CandidateMatrix
) -> CandidateColumns:
    attributes = [vectors.attributes.get(item_id) for item_id in candidates.item_ids]
    return CandidateColumns(
        item_ids=candidates.item_ids,
        category_ids=[found.category_id if found else None for found in attributes],
        brands=[found.brand if found else None for found in attributes],
        prices=np.array(
            [
                found.price if found and found.price is not None else np.nan
                for found in attributes
            ],
            dtype=np.float64,
        ),
        features=candidates.array,
        feature_names=candidates.names,
    )


def _price(vectors: FeatureVectors, item_id: str) -> float | None:
    attributes = vectors.attributes.get(item_id)
    return attributes.price if attributes is not None else None
