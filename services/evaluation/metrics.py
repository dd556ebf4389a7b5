"""Ranking and beyond-accuracy metrics of recommendation lists.

Every ranking metric here scores one list against one target item, the
item of the user's next event, so relevance is binary and there is a single
relevant item. With ``rank`` the 1-based position of the target's first
occurrence in the list:

- HR@K (hit rate) is 1 when ``rank <= K``, else 0;
- MRR@K (mean reciprocal rank) is ``1 / rank`` when ``rank <= K``, else 0;
- NDCG@K is ``1 / log2(rank + 1)`` when ``rank <= K``, else 0, because the
  ideal list puts the single relevant item first and its DCG is 1.

An empty list, or one without the target, scores 0 on every metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "LatencySummary",
    "ListStatistics",
    "RankingAccumulator",
    "RankingScores",
    "first_rank",
    "hit_at",
    "intra_list_diversity",
    "ndcg_at",
    "rank_by_score",
    "reciprocal_rank_at",
    "self_information",
    "summarize_latency",
]


def first_rank(item_ids: Sequence[str], target_item_id: str) -> int | None:
    """Return the 1-based rank of the target's first occurrence, or None."""
    for position, item_id in enumerate(item_ids, start=1):
        if item_id == target_item_id:
            return position
    return None


def hit_at(rank: int | None, k: int) -> float:
    """Return HR@K of one list: 1.0 when the target is within the top ``k``."""
    return 1.0 if rank is not None and rank <= k else 0.0


def reciprocal_rank_at(rank: int | None, k: int) -> float:
    """Return the reciprocal rank cut at ``k``: ``1 / rank`` or 0.0."""
    return 1.0 / rank if rank is not None and rank <= k else 0.0


def ndcg_at(rank: int | None, k: int) -> float:
    """Return NDCG@K of one list with one relevant item."""
    return 1.0 / math.log2(rank + 1) if rank is not None and rank <= k else 0.0


def rank_by_score(scores: Mapping[str, float], k: int) -> list[str]:
    """Return the ``k`` best items, highest score first.

    Equal scores are ordered by item id, so a tie never depends on the order in
    which the scores were collected.
    """
    ordered = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
    return [item_id for item_id, _ in ordered[:k]]


@dataclass(frozen=True)
class RankingScores:
    """Mean ranking metrics at one cutoff over ``count`` scored lists.

    The means are None when no list was scored.
    """

    count: int
    hit_rate: float | None
    mrr: float | None
    ndcg: float | None


@dataclass
class RankingAccumulator:
    """Running sums of HR, MRR and NDCG at several cutoffs."""

    cutoffs: tuple[int, ...]
    count: int = 0
    _hits: dict[int, float] = field(default_factory=dict)
    _reciprocal_ranks: dict[int, float] = field(default_factory=dict)
    _gains: dict[int, float] = field(default_factory=dict)

    def add(self, rank: int | None) -> None:
        """Score one list whose target sits at ``rank`` (None: not in the list)."""
        self.count += 1
        if rank is None:
            return
        for k in self.cutoffs:
            if rank <= k:
                self._hits[k] = self._hits.get(k, 0.0) + 1.0
                self._reciprocal_ranks[k] = (
                    self._reciprocal_ranks.get(k, 0.0) + 1.0 / rank
                )
                self._gains[k] = self._gains.get(k, 0.0) + 1.0 / math.log2(rank + 1)

    def scores(self) -> dict[int, RankingScores]:
        """Return the means per cutoff."""
        return {k: self._scores_at(k) for k in self.cutoffs}

    def _scores_at(self, k: int) -> RankingScores:
        if self.count == 0:
            return RankingScores(0, None, None, None)
        return RankingScores(
            count=self.count,
            hit_rate=self._hits.get(k, 0.0) / self.count,
            mrr=self._reciprocal_ranks.get(k, 0.0) / self.count,
            ndcg=self._gains.get(k, 0.0) / self.count,
        )


def intra_list_diversity(
    item_ids: Sequence[str], categories: Mapping[str, str]
) -> float | None:
    """Return the share of item pairs in the list whose categories differ.

    Items without a known category are left out. Returns None when fewer than
    two items of the list have one, because no pair can be compared.
    """
    counts: dict[str, int] = {}
    for item_id in item_ids:
        category = categories.get(item_id)
        if category is not None:
            counts[category] = counts.get(category, 0) + 1
    known = sum(counts.values())
    if known < 2:
        return None
    same_category_pairs = sum(n * (n - 1) for n in counts.values()) / 2
    all_pairs = known * (known - 1) / 2
    return 1.0 - same_category_pairs / all_pairs


def self_information(item_count: int, total_count: int, item_universe: int) -> float:
    """Return ``-log2 p(item)`` in bits, with add-one smoothing.

    ``p(item) = (item_count + 1) / (total_count + item_universe)``, so an item
    that no event touched still gets a finite, high novelty.
    """
    if item_universe < 1:
        raise ValueError(f"item_universe must be at least 1, got {item_universe}")
    probability = (item_count + 1) / (total_count + item_universe)
    return -math.log2(probability)


@dataclass(frozen=True)
class LatencySummary:
    """Event-to-slate latency in milliseconds over ``count`` slates."""

    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    max_ms: float | None


def summarize_latency(latencies_ms: Iterable[float]) -> LatencySummary:
    """Return percentiles (linear interpolation), mean and maximum."""
    values = np.fromiter(latencies_ms, dtype=np.float64)
    if values.size == 0:
        return LatencySummary(0, None, None, None, None, None)
    p50, p95, p99 = (float(v) for v in np.percentile(values, [50, 95, 99]))
    return LatencySummary(
        count=int(values.size),
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        mean_ms=float(values.mean()),
        max_ms=float(values.max()),
    )


class ListStatistics:
    """Running coverage, diversity and novelty inputs of many lists.

    Novelty needs the popularity of the whole replay, so the lists only add
    up per-item weights here and :meth:`novelty` applies the popularity once.
    """

    def __init__(self, categories: Mapping[str, str]) -> None:
        self.lists = 0
        self._categories = categories
        self._item_weights: dict[str, float] = {}
        self._non_empty_lists = 0
        self._diversity_sum = 0.0
        self._diversity_lists = 0

    def add(self, item_ids: Sequence[str]) -> None:
        """Count one list, already cut at the cutoff."""
        self.lists += 1
        if not item_ids:
            return
        self._non_empty_lists += 1
        share = 1.0 / len(item_ids)
        for item_id in item_ids:
            self._item_weights[item_id] = self._item_weights.get(item_id, 0.0) + share
        diversity = intra_list_diversity(item_ids, self._categories)
        if diversity is not None:
            self._diversity_sum += diversity
            self._diversity_lists += 1

    def count_recommended(self, universe: Set[str]) -> int:
        """Return how many distinct listed items belong to ``universe``."""
        return sum(1 for item_id in self._item_weights if item_id in universe)

    def diversity(self) -> float | None:
        """Return the mean intra-list diversity over lists with two known categories."""
        if self._diversity_lists == 0:
            return None
        return self._diversity_sum / self._diversity_lists

    def novelty(
        self, popularity: Mapping[str, int], total_count: int, item_universe: int
    ) -> float | None:
        """Return the mean self-information of the items, averaged per list."""
        if self._non_empty_lists == 0:
            return None
        total = sum(
            weight
            * self_information(popularity.get(item_id, 0), total_count, item_universe)
            for item_id, weight in sorted(self._item_weights.items())
        )
        return total / self._non_empty_lists
