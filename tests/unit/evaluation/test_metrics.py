from __future__ import annotations

import math

import pytest

from services.evaluation.metrics import (
    ListStatistics,
    RankingAccumulator,
    first_rank,
    hit_at,
    intra_list_diversity,
    ndcg_at,
    rank_by_score,
    reciprocal_rank_at,
    self_information,
    summarize_latency,
)


def test_first_rank_counts_from_one() -> None:
    assert first_rank(["a", "b", "c"], "c") == 3


def test_first_rank_uses_first_occurrence_of_duplicate() -> None:
    assert first_rank(["a", "b", "a"], "a") == 1


def test_first_rank_is_none_for_empty_list() -> None:
    assert first_rank([], "a") is None


@pytest.mark.parametrize(
    ("rank", "k", "hit", "reciprocal_rank", "ndcg"),
    [
        (1, 5, 1.0, 1.0, 1.0),
        (3, 5, 1.0, 1 / 3, 0.5),
        (5, 5, 1.0, 0.2, 1 / math.log2(6)),
        (6, 5, 0.0, 0.0, 0.0),
        (None, 5, 0.0, 0.0, 0.0),
    ],
)
def test_single_list_metrics_match_hand_values(
    rank: int | None, k: int, hit: float, reciprocal_rank: float, ndcg: float
) -> None:
    assert hit_at(rank, k) == hit
    assert reciprocal_rank_at(rank, k) == pytest.approx(reciprocal_rank)
    assert ndcg_at(rank, k) == pytest.approx(ndcg)


def test_accumulator_averages_over_every_list() -> None:
    accumulator = RankingAccumulator((1, 3))

    for rank in (1, 3, None, 4):
        accumulator.add(rank)
    scores = accumulator.scores()

    assert scores[1].count == 4
    assert scores[1].hit_rate == pytest.approx(1 / 4)
    assert scores[3].hit_rate == pytest.approx(2 / 4)
    assert scores[3].mrr == pytest.approx((1 + 1 / 3) / 4)
    assert scores[3].ndcg == pytest.approx((1 + 0.5) / 4)


def test_accumulator_reports_none_without_lists() -> None:
    scores = RankingAccumulator((5,)).scores()

    assert scores[5].count == 0
    assert scores[5].hit_rate is None
    assert scores[5].mrr is None


def test_rank_by_score_breaks_ties_by_item_id() -> None:
    ranked = rank_by_score({"c": 1.0, "a": 2.0, "b": 1.0, "d": 0.5}, 3)

    assert ranked == ["a", "b", "c"]


def test_tied_target_rank_is_stable() -> None:
    scores = {"x": 1.0, "target": 1.0, "y": 1.0}

    first = first_rank(rank_by_score(scores, 3), "target")
    second = first_rank(rank_by_score(dict(reversed(scores.items())), 3), "target")

    assert first == 1
    assert second == 1


def test_intra_list_diversity_counts_pairs_of_distinct_categories() -> None:
    categories = {"a": "shoes", "b": "shoes", "c": "hats", "d": "bags"}

    # Six pairs, one of them (a, b) within one category.
    assert intra_list_diversity(["a", "b", "c", "d"], categories) == pytest.approx(
        5 / 6
    )


def test_intra_list_diversity_skips_items_without_category() -> None:
    categories = {"a": "shoes", "b": "hats"}

    assert intra_list_diversity(["a", "unknown", "b"], categories) == 1.0


def test_diversity_undefined_below_two_items() -> None:
    assert intra_list_diversity(["a", "b"], {"a": "shoes"}) is None


def test_self_information_smooths_unseen_items() -> None:
    assert self_information(0, 6, 2) == pytest.approx(3.0)
    assert self_information(3, 6, 2) == pytest.approx(1.0)


def test_self_information_rejects_empty_universe() -> None:
    with pytest.raises(ValueError, match="item_universe"):
        self_information(0, 0, 0)


def test_summarize_latency_interpolates_percentiles() -> None:
    summary = summarize_latency(float(v) for v in range(1, 101))

    assert summary.count == 100
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p99_ms == pytest.approx(99.01)
    assert summary.max_ms == 100.0


def test_summarize_latency_of_nothing_is_empty() -> None:
    summary = summarize_latency([])

    assert summary.count == 0
    assert summary.p50_ms is None


def test_list_statistics_average_novelty_per_list() -> None:
    statistics = ListStatistics({"a": "shoes", "b": "hats"})

    statistics.add(["a", "b"])
    statistics.add(["a"])
    statistics.add([])
    # Popularity: a 3 of 6 events, b unseen; universe of 2 items.
    novelty = statistics.novelty({"a": 3}, 6, 2)

    assert statistics.lists == 3
    assert statistics.count_recommended({"a", "b", "c"}) == 2
    assert statistics.diversity() == 1.0
    assert novelty == pytest.approx(((1.0 + 3.0) / 2 + 1.0) / 2)
