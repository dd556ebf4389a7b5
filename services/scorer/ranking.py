"""Ranking: task probabilities per candidate, combined with online signals into a score.

Shapes: C candidates, T = 3 tasks in the order click, cart_add, purchase.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from schemas.features import CandidateMatrix
from services.scorer.settings import ScoreWeights

__all__ = [
    "HEURISTIC_MODEL_VERSION",
    "SOURCE_SCORE_FEATURE",
    "TASKS",
    "HeuristicFeatureNames",
    "SIGNALS",
    "HeuristicRanker",
    "combine_scores",
    "combine_signal_matrix",
    "filled_prices",
    "score_signal_matrix",
    "zero_nan",
]

HEURISTIC_MODEL_VERSION = "heuristic-v1"

# Candidate feature that carries the merged candidate-source score into the
# heuristic ranker; the trained ranker never sees it.
SOURCE_SCORE_FEATURE = "candidate_source_score"

TASKS = ("click", "cart_add", "purchase")

SIGNALS = ("online_cart_prob", "online_purchase_prob", "online_affinity")
"""The online signals that scores blend in, in the column order of a signal matrix."""


@dataclass(frozen=True)
class HeuristicFeatureNames:
    """Item features that the heuristic ranker reads, by name."""

    views: str = "item_click_count_24h"
    view_to_cart_rate: str = "item_view_to_cart_rate_7d"
    cart_to_purchase_rate: str = "item_cart_to_purchase_rate_7d"
    category_affinity: str = "pair_category_affinity"
    brand_affinity: str = "pair_brand_affinity"


class HeuristicRanker:
    """Rank from candidate-source strength, popularity and conversion rates.

    It ranks alone until the first trained model exists, and is blended with
    the model's probabilities afterwards. The click probability is a
    logistic function of the candidate-source score, the item's recent views
    and the user's affinity to the item's category and brand. Cart and purchase
    chain the item's smoothed conversion rates, so p(cart) = p(click) *
    rate(view->cart) and p(purchase) = p(cart) * rate(cart->purchase). Items
    without rates fall back to the priors.

    Args:
        names: which item features hold views and conversion rates.
        view_to_cart_prior: rate used for items without a view->cart rate.
        cart_to_purchase_prior: rate used for items without a cart->purchase rate.
        popularity_weight: weight of log(1 + views) in the click logit.
    """

    model_version = HEURISTIC_MODEL_VERSION

    def __init__(
        self,
        names: HeuristicFeatureNames | None = None,
        view_to_cart_prior: float = 0.05,
        cart_to_purchase_prior: float = 0.3,
        popularity_weight: float = 0.0,
    ) -> None:
        self._names = names or HeuristicFeatureNames()
        self._view_to_cart_prior = view_to_cart_prior
        self._cart_to_purchase_prior = cart_to_purchase_prior
        self._popularity_weight = popularity_weight

    def predict(
        self,
        user_id: str,
        user_features: Mapping[str, float],
        candidates: Sequence[tuple[str, Mapping[str, float]]],
    ) -> np.ndarray:
        """Return a (C, 3) array of click, cart_add and purchase probabilities."""
        names = self._names
        rows = [
            (
                features.get(SOURCE_SCORE_FEATURE, 0.0),
                features.get(names.views, 0.0),
                features.get(names.category_affinity, 0.0)
                + 0.5 * features.get(names.brand_affinity, 0.0),
                features.get(names.view_to_cart_rate, math.nan),
                features.get(names.cart_to_purchase_rate, math.nan),
            )
            for _, features in candidates
        ]
        if not rows:
            return np.zeros((0, len(TASKS)))
        source, views, affinity, to_cart, to_purchase = np.array(
            rows, dtype=np.float64
        ).T
        return self._probabilities(source, views, affinity, to_cart, to_purchase)

    def predict_matrix(
        self, candidates: CandidateMatrix, source_scores: np.ndarray
    ) -> np.ndarray:
        """Do what :meth:`predict` does, with the features as one matrix.

        Args:
            candidates: the candidates' features; NaN reads as absent.
            source_scores: (C,) merged candidate-source score per row.
        """
        return self.predict_array(candidates.array, source_scores)

    def predict_array(
        self, values: np.ndarray, source_scores: np.ndarray
    ) -> np.ndarray:
        """Do what :meth:`predict_matrix` does, with the features as a bare array.

        The candidates of several events can be stacked into one array, so a
        batch costs one call instead of one per event.

        Args:
            values: (C, F) features in the column order of
                :attr:`CandidateMatrix.names`; NaN reads as absent.
            source_scores: (C,) merged candidate-source score per row.
        """
        if len(values) == 0:
            return np.zeros((0, len(TASKS)))
        names = self._names
        column = CandidateMatrix.names.index
        affinity = zero_nan(values[:, column(names.category_affinity)]) + (
            0.5 * zero_nan(values[:, column(names.brand_affinity)])
        )
        return self._probabilities(
            np.asarray(source_scores, dtype=np.float64),
            zero_nan(values[:, column(names.views)]),
            affinity,
            values[:, column(names.view_to_cart_rate)],
            values[:, column(names.cart_to_purchase_rate)],
        )

    def _probabilities(
        self,
        source: np.ndarray,
        views: np.ndarray,
        affinity: np.ndarray,
        to_cart: np.ndarray,
        to_purchase: np.ndarray,
    ) -> np.ndarray:
        logit = (
            -3.0
            + 2.0 * np.minimum(source, 2.0)
            + self._popularity_weight * np.log1p(np.maximum(views, 0.0))
            + 1.0 * np.minimum(affinity, 1.5)
        )
        click = 1.0 / (1.0 + np.exp(-logit))
        cart_add = click * _rates(to_cart, self._view_to_cart_prior)
        purchase = cart_add * _rates(to_purchase, self._cart_to_purchase_prior)
        return np.column_stack((click, cart_add, purchase))


def zero_nan(values: np.ndarray) -> np.ndarray:
    """Return ``values`` with NaN replaced by 0.

    Does what ``np.nan_to_num`` does to NaN, at a fraction of its cost on the
    short arrays of one event, and leaves infinities alone.
    """
    return np.where(np.isnan(values), 0.0, values)


def _rates(values: np.ndarray, prior: float) -> np.ndarray:
    return np.where(np.isfinite(values), np.clip(values, 0.0, 1.0), prior)


def combine_scores(
    probs: np.ndarray,
    signals: Sequence[Mapping[str, float]],
    prices: Sequence[float | None],
    weights: ScoreWeights,
) -> tuple[np.ndarray, np.ndarray]:
    """Blend online signals into the task probabilities and score each candidate.

    Args:
        probs: (C, 3) ranker probabilities for click, cart_add and purchase.
        signals: C dicts with ``online_cart_prob``, ``online_purchase_prob`` and
            ``online_affinity``; missing keys leave the ranker's value alone.
        prices: C item prices; a missing price counts as the median known price.
        weights: the objective and its weights.

    Returns:
        The (C, 3) blended probabilities and the (C,) scores.
    """
    matrix = np.array(
        [[signal.get(name, math.nan) for name in SIGNALS] for signal in signals],
        dtype=np.float64,
    ).reshape(len(signals), len(SIGNALS))
    return combine_signal_matrix(probs, matrix, prices, weights)


def combine_signal_matrix(
    probs: np.ndarray,
    signals: np.ndarray,
    prices: Sequence[float | None],
    weights: ScoreWeights,
) -> tuple[np.ndarray, np.ndarray]:
    """Do what :func:`combine_scores` does, with the signals as one matrix.

    Args:
        probs: (C, 3) ranker probabilities for click, cart_add and purchase.
        signals: (C, 3) online signals in the order of :data:`SIGNALS`; NaN
            marks a missing signal, which leaves the ranker's value alone.
        prices: C item prices; a missing price counts as the median known price.
        weights: the objective and its weights.

    Returns:
        The (C, 3) blended probabilities and the (C,) scores.
    """
    item_values = None
    if weights.objective == "expected_value":
        item_values = filled_prices(prices)
    return score_signal_matrix(probs, signals, item_values, weights)


def score_signal_matrix(
    probs: np.ndarray,
    signals: np.ndarray,
    item_values: np.ndarray | None,
    weights: ScoreWeights,
) -> tuple[np.ndarray, np.ndarray]:
    """Do what :func:`combine_signal_matrix` does, given each item's value.

    Every step works row by row, so the candidates of several events can be
    stacked and scored in one call.

    Args:
        probs: (C, 3) ranker probabilities for click, cart_add and purchase.
        signals: (C, 3) online signals in the order of :data:`SIGNALS`.
        item_values: (C,) item values, as :func:`filled_prices` returns them;
            read only by the expected-value objective.
        weights: the objective and its weights.

    Returns:
        The (C, 3) blended probabilities and the (C,) scores.

    Raises:
        ValueError: if the objective is expected value and ``item_values`` is None.
    """
    if weights.objective == "expected_value" and item_values is None:
        raise ValueError(
            "the expected_value objective needs item values; pass filled_prices()"
        )
    blended = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
    online = np.array(signals, dtype=np.float64)
    online[np.isinf(online)] = 0.0
    online = np.clip(online, 0.0, 1.0)
    share = weights.online_blend
    for column in (1, 2):
        values = online[:, column - 1]
        blended[:, column] = np.where(
            np.isnan(values),
            blended[:, column],
            (1 - share) * blended[:, column] + share * zero_nan(values),
        )
    affinity = zero_nan(online[:, 2])

    if item_values is not None and weights.objective == "expected_value":
        scores = blended[:, 2] * item_values + weights.affinity * affinity
    else:
        scores = (
            weights.click * blended[:, 0]
            + weights.cart_add * blended[:, 1]
            + weights.purchase * blended[:, 2]
            + weights.affinity * affinity
        )
    return blended, scores


def filled_prices(prices: Sequence[float | None]) -> np.ndarray:
    """Return the prices of one event's items, a missing one as the median known.

    An event without any known price counts each item as 1.
    """
    known = [price for price in prices if price is not None and price >= 0.0]
    fallback = float(np.median(known)) if known else 1.0
    return np.array(
        [price if price is not None and price >= 0.0 else fallback for price in prices]
    )
