from __future__ import annotations

import numpy as np
import pytest

from schemas.features import CandidateMatrix
from services.scorer.ranking import (
    SOURCE_SCORE_FEATURE,
    HeuristicRanker,
    combine_scores,
    zero_nan,
)
from services.scorer.settings import ScoreWeights


def test_heuristic_ranker_is_labelled_heuristic() -> None:
    assert HeuristicRanker.model_version.startswith("heuristic-")


def test_heuristic_ranker_ranks_stronger_candidate_source_higher() -> None:
    ranker = HeuristicRanker()

    probs = ranker.predict(
        "u1",
        {},
        [
            ("weak", {SOURCE_SCORE_FEATURE: 0.1}),
            ("strong", {SOURCE_SCORE_FEATURE: 1.5}),
        ],
    )

    assert probs.shape == (2, 3)
    assert probs[1, 0] > probs[0, 0]


@pytest.mark.parametrize(("weight", "is_popular_higher"), [(0.0, False), (0.3, True)])
def test_heuristic_ranker_weighs_views_by_popularity_weight(
    weight: float, is_popular_higher: bool
) -> None:
    ranker = HeuristicRanker(popularity_weight=weight)

    probs = ranker.predict(
        "u1",
        {},
        [
            ("rare", {SOURCE_SCORE_FEATURE: 1.0, "item_click_count_24h": 1.0}),
            ("popular", {SOURCE_SCORE_FEATURE: 1.0, "item_click_count_24h": 500.0}),
        ],
    )

    assert bool(probs[1, 0] > probs[0, 0]) == is_popular_higher


def test_heuristic_ranker_chains_conversion_rates() -> None:
    ranker = HeuristicRanker()
    features = {
        SOURCE_SCORE_FEATURE: 1.0,
        "item_view_to_cart_rate_7d": 0.5,
        "item_cart_to_purchase_rate_7d": 0.2,
    }

    [(click, cart_add, purchase)] = ranker.predict("u1", {}, [("a", features)])

    assert cart_add == pytest.approx(click * 0.5)
    assert purchase == pytest.approx(click * 0.5 * 0.2)


def test_heuristic_ranker_uses_priors_for_items_without_rates() -> None:
    ranker = HeuristicRanker(view_to_cart_prior=0.1, cart_to_purchase_prior=0.5)

    [(click, cart_add, purchase)] = ranker.predict("u1", {}, [("a", {})])

    assert cart_add == pytest.approx(click * 0.1)
    assert purchase == pytest.approx(click * 0.05)


def test_combine_scores_blends_online_probabilities() -> None:
    weights = ScoreWeights(online_blend=0.5)
    probs = np.array([[0.5, 0.2, 0.1]])

    blended, _ = combine_scores(
        probs, [{"online_cart_prob": 0.4, "online_purchase_prob": 0.3}], [10.0], weights
    )

    assert blended[0].tolist() == pytest.approx([0.5, 0.3, 0.2])


def test_combine_scores_engagement_weighs_each_task() -> None:
    weights = ScoreWeights(click=1.0, cart_add=2.0, purchase=4.0, affinity=0.5)
    probs = np.array([[0.5, 0.25, 0.125]])

    _, scores = combine_scores(probs, [{"online_affinity": 0.2}], [None], weights)

    assert scores[0] == pytest.approx(0.5 + 0.5 + 0.5 + 0.1)


def test_combine_scores_expected_value_orders_by_purchase_prob_times_price() -> None:
    weights = ScoreWeights(objective="expected_value", affinity=0.0)
    probs = np.array([[0.9, 0.5, 0.10], [0.1, 0.05, 0.02]])

    _, scores = combine_scores(probs, [{}, {}], [10.0, 100.0], weights)

    assert scores.tolist() == pytest.approx([1.0, 2.0])


def test_combine_scores_uses_median_price_for_items_without_price() -> None:
    weights = ScoreWeights(objective="expected_value", affinity=0.0)
    probs = np.array([[0.0, 0.0, 0.5]] * 3)

    _, scores = combine_scores(probs, [{}, {}, {}], [10.0, 30.0, None], weights)

    assert scores[2] == pytest.approx(0.5 * 20.0)


def test_heuristic_matrix_path_equals_mapping_path() -> None:
    ranker = HeuristicRanker()
    items = {
        "a": {
            "item_click_count_24h": 40.0,
            "item_view_to_cart_rate_7d": 0.3,
            "pair_category_affinity": 0.8,
            "pair_brand_affinity": 1.0,
        },
        "b": {"item_cart_to_purchase_rate_7d": 0.6},
        "c": {},
    }
    sources = {"a": 0.4, "b": 1.7, "c": 0.0}

    by_mapping = ranker.predict(
        "u1",
        {},
        [
            (item_id, {**features, SOURCE_SCORE_FEATURE: sources[item_id]})
            for item_id, features in items.items()
        ],
    )
    by_matrix = ranker.predict_matrix(
        CandidateMatrix.from_mappings(items, list(items)),
        np.array(list(sources.values())),
    )

    np.testing.assert_array_equal(by_matrix, by_mapping)


def test_heuristic_matrix_path_accepts_no_candidates() -> None:
    empty = CandidateMatrix.from_mappings({}, [])

    assert HeuristicRanker().predict_matrix(empty, np.zeros(0)).shape == (0, 3)


def test_zero_nan_keeps_infinities() -> None:
    values = np.array([np.nan, 1.0, np.inf])

    assert zero_nan(values).tolist() == [0.0, 1.0, np.inf]
