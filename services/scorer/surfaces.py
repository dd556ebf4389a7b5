"""Promotions and reviews: the surfaces that rank something other than items.

Products and bundles rank items directly (see :mod:`services.scorer.stage`).
Promotions rank active promotions by the user's best eligible item; reviews
rank the reviews of the clicked item for this user.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from schemas.catalog import PromotionRecord, ReviewRecord
from services.scorer.protocols import ItemAttributes
from services.scorer.rules import RankedCandidate, ScoredCandidates

__all__ = [
    "PromotionIndex",
    "RankedPromotion",
    "RankedReview",
    "is_eligible",
    "promotion_item_seeds",
    "rank_promotions",
    "rank_reviews",
]

_SECONDS_PER_DAY = 86_400.0

# A review counts as detailed when its body reaches this many characters.
_DETAILED_BODY_CHARS = 800.0


@dataclass(frozen=True)
class RankedPromotion:
    """A promotion with the eligible item that represents it for this user."""

    promotion: PromotionRecord
    item: RankedCandidate
    score: float


@dataclass(frozen=True)
class RankedReview:
    """A review with its score for this user."""

    review: ReviewRecord
    score: float


def is_eligible(promotion: PromotionRecord, attributes: ItemAttributes) -> bool:
    """Return whether an item qualifies for a promotion.

    Each non-empty list (items, categories, brands) must contain the item's
    value; empty lists do not restrict.
    """
    return _Eligibility.of(promotion).admits(attributes)


@dataclass(frozen=True)
class _Eligibility:
    """A promotion's eligibility lists as sets, for fast membership tests."""

    item_ids: frozenset[str]
    category_ids: frozenset[str]
    brands: frozenset[str]

    @classmethod
    def of(cls, promotion: PromotionRecord) -> _Eligibility:
        return cls(
            frozenset(promotion.item_ids),
            frozenset(promotion.category_ids),
            frozenset(promotion.brands),
        )

    def admits(self, attributes: ItemAttributes) -> bool:
        if self.item_ids and attributes.item_id not in self.item_ids:
            return False
        if self.category_ids and attributes.category_id not in self.category_ids:
            return False
        return not (self.brands and attributes.brand not in self.brands)


def promotion_item_seeds(
    promotions: Sequence[PromotionRecord], per_promotion: int
) -> tuple[list[str], list[str]]:
    """Return items named by promotions and categories to read trending items of.

    Together with the user's own candidates, these make sure a promotion on a
    category or a list of items has something to show even when the user's
    candidates miss it.
    """
    items: list[str] = []
    categories: list[str] = []
    for promotion in promotions:
        items += promotion.item_ids[:per_promotion]
        categories += promotion.category_ids[:per_promotion]
    return sorted(set(items)), sorted(set(categories))


def rank_promotions(
    promotions: Sequence[PromotionRecord],
    pool: Sequence[RankedCandidate],
    attributes: Mapping[str, ItemAttributes],
    affinity_weight: float,
    size: int,
) -> list[RankedPromotion]:
    """Rank active promotions for one user, best first.

    A promotion's score is that of its best eligible item in ``pool``: the
    item's purchase probability plus ``affinity_weight`` times the user's
    online affinity to it, raised by the discount. Each item represents at
    most one promotion, so promotions are taken in order of their best score
    and each gets its best item that no earlier promotion took. Promotions
    left without an eligible item are dropped, because there is nothing to show.

    Args:
        promotions: promotions active at the event time.
        pool: the user's scored candidates that passed the exclusion rules.
        attributes: catalog attributes of the pool's items.
        affinity_weight: weight of the online affinity against p(purchase).
        size: the maximum number of promotions to return.
    """
    index = PromotionIndex(promotions)
    return index.rank(range(len(promotions)), pool, attributes, affinity_weight, size)


class PromotionIndex:
    """Known promotions prepared once per catalog change, for many events.

    Validity windows are kept as Unix seconds and eligibility lists as sets,
    and the promotions each item qualifies for are remembered per item, so an
    event costs one lookup per candidate instead of one test per candidate
    and promotion.

    Args:
        promotions: every known promotion; positions in this sequence name them.
        max_items: items whose eligibility is remembered before the memo restarts.
    """

    def __init__(
        self, promotions: Sequence[PromotionRecord], max_items: int = 200_000
    ) -> None:
        self.promotions = tuple(promotions)
        self._windows = [
            (promotion.starts_at.timestamp(), promotion.ends_at.timestamp())
            for promotion in self.promotions
        ]
        self._rules = [_Eligibility.of(promotion) for promotion in self.promotions]
        self._max_items = max_items
        self._eligible: dict[tuple[str, str | None, str | None], tuple[int, ...]] = {}
        self._matching_positions: tuple[int, ...] = ()
        self._matching_set: frozenset[int] = frozenset()
        self._matches: dict[str, _Matches] = {}

    def active(self, at: float) -> list[int]:
        """Return the positions of the promotions valid at ``at`` (Unix s)."""
        return [
            position
            for position, (starts, ends) in enumerate(self._windows)
            if starts <= at < ends
        ]

    def eligible(self, attributes: ItemAttributes) -> tuple[int, ...]:
        """Return the positions of the promotions an item qualifies for."""
        key = (attributes.item_id, attributes.category_id, attributes.brand)
        found = self._eligible.get(key)
        if found is None:
            found = tuple(
                position
                for position, rule in enumerate(self._rules)
                if rule.admits(attributes)
            )
            if len(self._eligible) >= self._max_items:
                self._eligible.clear()
            self._eligible[key] = found
        return found

    def rank(
        self,
        positions: Sequence[int],
        pool: Sequence[RankedCandidate],
        attributes: Mapping[str, ItemAttributes],
        affinity_weight: float,
        size: int,
    ) -> list[RankedPromotion]:
        """Rank the promotions at ``positions`` as :func:`rank_promotions` does."""
        if not positions:
            return []
        return self.rank_rows(
            positions,
            ScoredCandidates.of(pool),
            range(len(pool)),
            attributes,
            affinity_weight,
            size,
        )

    def rank_rows(
        self,
        positions: Sequence[int],
        candidates: ScoredCandidates,
        rows: Sequence[int],
        attributes: Mapping[str, ItemAttributes],
        affinity_weight: float,
        size: int,
    ) -> list[RankedPromotion]:
        """Rank the promotions at ``positions`` by the candidates in ``rows``.

        The ranking is that of :func:`rank_promotions` with the pool made of
        ``rows``. Only the candidates that represent a promotion are built.
        """
        if not positions:
            return []
        # Candidates that no requested promotion admits are dropped before the
        # one sort per user. Each promotion then takes its items from the top.
        values = self._values(positions, candidates, rows, attributes, affinity_weight)
        first: dict[int, int] = {}
        for index, (_, _, _, matches) in enumerate(values):
            for position in matches:
                first.setdefault(position, index)
            if len(first) == len(positions):
                break
        options = sorted(
            [position for position in positions if position in first],
            key=lambda position: (
                values[first[position]][0],
                self.promotions[position].promotion_id,
            ),
        )

        ranked = []
        taken: set[str] = set()
        for position in options:
            for index in range(first[position], len(values)):
                negated, item_id, row, matches = values[index]
                if position in matches and item_id not in taken:
                    break
            else:
                continue
            taken.add(item_id)
            promotion = self.promotions[position]
            score = -negated * (1.0 + promotion.discount_percent / 100.0)
            ranked.append(RankedPromotion(promotion, candidates.candidate(row), score))
        ranked.sort(key=lambda entry: (-entry.score, entry.promotion.promotion_id))
        return ranked[:size]

    def _values(
        self,
        positions: Sequence[int],
        candidates: ScoredCandidates,
        rows: Sequence[int],
        attributes: Mapping[str, ItemAttributes],
        affinity_weight: float,
    ) -> list[tuple[float, str, int, tuple[int, ...]]]:
        """Return the rows that a promotion at ``positions`` admits, best first.

        Each entry is (-value, item id, row, positions of the promotions that
        admit the item), so that tuples compare in C, and the row keeps equal
        entries in pool order.
        """
        matching = self._matching(positions)
        item_ids = candidates.item_ids
        task_probs = candidates.task_probs
        affinity = candidates.affinity
        values = []
        for row in rows:
            item_id = item_ids[row]
            found = attributes.get(item_id)
            if found is None:
                continue
            # The triggers of a batch share their attributes objects, so one
            # identity test usually finds the item's matches.
            remembered = matching.get(item_id)
            if remembered is not None and remembered[0] is found:
                matches = remembered[1]
            else:
                matches = self._remember(matching, item_id, found)
            # Most items qualify for no promotion at all.
            if matches:
                value = task_probs[row][2] + affinity_weight * affinity[row]
                values.append((-value, item_id, row, matches))
        values.sort()
        return values

    def _matching(self, positions: Sequence[int]) -> dict[str, _Matches]:
        """Return the memo of matching promotions among ``positions``.

        Events close in time share their active promotions, so the memo lasts
        until another set of positions is requested.
        """
        requested = tuple(positions)
        if requested != self._matching_positions:
            self._matching_positions = requested
            self._matching_set = frozenset(requested)
            self._matches = {}
        return self._matches

    def _remember(
        self,
        matching: dict[str, _Matches],
        item_id: str,
        attributes: ItemAttributes,
    ) -> tuple[int, ...]:
        active = self._matching_set
        found = tuple(
            position for position in self.eligible(attributes) if position in active
        )
        if len(matching) >= self._max_items:
            matching.clear()
        matching[item_id] = (attributes, found)
        return found


# An item's attributes and the positions of the active promotions it qualifies for.
_Matches = tuple[ItemAttributes, tuple[int, ...]]


def _helpfulness(review: ReviewRecord) -> float:
    # Laplace smoothing keeps a review with one vote from beating one with fifty.
    votes = review.helpful_votes + review.unhelpful_votes
    return (review.helpful_votes + 1.0) / (votes + 2.0)


def rank_reviews(
    reviews: Sequence[ReviewRecord],
    event_time: float,
    interest: float,
    half_life_days: float,
    size: int,
) -> list[RankedReview]:
    """Rank the reviews of one item for one user, best first.

    The base score mixes helpfulness (smoothed vote share), recency (halving
    every ``half_life_days``) and match to the user's interest: a user deeply
    interested in the item's category (``interest`` near 1) gets detailed
    reviews first, a casual visitor short ones. The order then balances
    ratings, so critical reviews (3 stars or fewer) take about their share of
    the item's reviews among the first slots.

    Args:
        reviews: the item's reviews; those written after ``event_time`` are ignored.
        event_time: the click's event time (Unix s).
        interest: the user's interest in the item's category, from 0 to 1.
        half_life_days: age at which the recency term halves.
        size: the maximum number of reviews to return.
    """
    interest = min(1.0, max(0.0, interest))
    scored = []
    for review in reviews:
        created = review.created_at.timestamp()
        if created > event_time:
            continue
        age_days = (event_time - created) / _SECONDS_PER_DAY
        recency = 0.5 ** (age_days / half_life_days)
        detail = min(1.0, review.body_length / _DETAILED_BODY_CHARS)
        match = interest * detail + (1.0 - interest) * (1.0 - detail)
        score = 0.5 * _helpfulness(review) + 0.3 * recency + 0.2 * match
        scored.append(RankedReview(review, score))
    scored.sort(key=lambda entry: (-entry.score, entry.review.review_id))
    return _balance_ratings(scored, size)


def _balance_ratings(scored: list[RankedReview], size: int) -> list[RankedReview]:
    critical = [entry for entry in scored if entry.review.rating <= 3]
    positive = [entry for entry in scored if entry.review.rating > 3]
    if not critical or not positive:
        return scored[:size]
    critical_share = len(critical) / len(scored)
    ordered: list[RankedReview] = []
    taken_critical = 0
    while len(ordered) < size and (critical or positive):
        # Take a critical review whenever the slate has fewer than its share.
        is_short = taken_critical < math.floor(critical_share * (len(ordered) + 1))
        if critical and (is_short or not positive):
            ordered.append(critical.pop(0))
            taken_critical += 1
        else:
            ordered.append(positive.pop(0))
    return ordered
