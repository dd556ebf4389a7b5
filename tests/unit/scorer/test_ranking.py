from __future__ import annotations

import numpy as np
import pytest

from schemas.features import CandidateMatrix
from services.scorer.ranking import (
    SOURCE_SCORE_FEATURE,
    HeuristicRanker,
    combine_scores,
    combine_signal_matrix,
    score_signal_matrix,
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


def test_predict_array_matches_per_event_calls() -> None:
    ranker = HeuristicRanker(popularity_weight=0.3)
    rng = np.random.default_rng(7)
    first, second = (
        CandidateMatrix([f"i{row}" for row in range(size)], values)
        for size, values in (
            (3, rng.random((3, len(CandidateMatrix.names)))),
            (4, rng.random((4, len(CandidateMatrix.names)))),
        )
    )
    first.array[0, 2] = np.nan
    sources = rng.random(7)

    stacked = ranker.predict_array(np.concatenate([first.array, second.array]), sources)

    alone = [
        ranker.predict_matrix(first, sources[:3]),
        ranker.predict_matrix(second, sources[3:]),
    ]
    np.testing.assert_array_equal(stacked, np.concatenate(alone))


def test_score_signal_matrix_matches_per_event_calls() -> None:
    weights = ScoreWeights(objective="expected_value", online_blend=0.4)
    probs = np.array([[0.9, 0.5, 0.1], [0.2, 0.1, 0.05], [0.4, 0.3, 0.2]])
    signals = np.array([[0.3, np.nan, 0.2], [np.nan, 0.6, np.inf], [0.1, 0.1, 0.1]])
    prices = [[10.0, None], [30.0]]

    blended, scores = score_signal_matrix(
        probs, signals, np.array([10.0, 10.0, 30.0]), weights
    )

    first = combine_signal_matrix(probs[:2], signals[:2], prices[0], weights)
    second = combine_signal_matrix(probs[2:], signals[2:], prices[1], weights)
    np.testing.assert_array_equal(blended, np.concatenate([first[0], second[0]]))
    np.testing.assert_array_equal(scores, np.concatenate([first[1], second[1]]))


def test_score_signal_matrix_requires_item_values() -> None:
    weights = ScoreWeights(objective="expected_value")

    with pytest.raises(ValueError, match="needs item values"):
        score_signal_matrix(np.zeros((1, 3)), np.zeros((1, 3)), None, weights)


def test_zero_nan_keeps_infinities() -> None:
    values = np.array([np.nan, 1.0, np.inf])

    assert zero_nan(values).tolist() == [0.0, 1.0, np.inf]
