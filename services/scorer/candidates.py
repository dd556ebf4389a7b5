"""Candidate generation: the items worth ranking for one event.

Sources, each normalised so that its best item scores 1 before weighting:

- co-visitation of the user's recent items, each seed weighted by recency;
- session-kNN over recent sessions that share items with the current one;
- co-cart and co-purchase of the cart (bundles);
- trending items in the user's top categories;
- trending items overall, the cold-start fallback.

An item proposed by several sources sums their weighted scores and keeps the
source that contributed most.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from schemas.events import EventType
from schemas.features import ItemAttributes, RecentItem
from schemas.recommendations import CandidateSource
from services.scorer.protocols import CandidateStore, Relation, UserHistory
from services.scorer.session_knn import SessionIndex
from services.scorer.settings import CandidateSettings

__all__ = [
    "Candidate",
    "CandidateGenerator",
    "EventContext",
    "merge_shares",
    "merge_sources",
    "recency_weighted_seeds",
    "source_shares",
    "top_categories",
]


class Candidate(NamedTuple):
    """An item proposed for ranking, with the source that proposed it.

    A named tuple, not a frozen dataclass, because every event builds about
    a hundred and a named tuple is built about twice as fast.
    """

    item_id: str
    source: CandidateSource
    source_score: float


# Builds a Candidate from its field tuple as Candidate._make does, without a
# Python call per candidate, because every event builds about fifty.
_candidate_of_fields = functools.partial(tuple.__new__, Candidate)


@dataclass(frozen=True)
class EventContext:
    """The state of one triggering event that candidate generation reads.

    Attributes:
        user_id: the user.
        item_id: the trigger item.
        event_type: the trigger's type.
        event_time: the trigger's event time (Unix s).
        session_key: the key of the user's current session in the session index.
        history: the user's history, restricted to events up to the trigger.
    """

    user_id: str
    item_id: str
    event_type: EventType
    event_time: float
    session_key: str
    history: UserHistory


def recency_weighted_seeds(
    trigger_item_id: str, recent: Sequence[RecentItem], count: int, decay: float
) -> dict[str, float]:
    """Return seed items with weights, the trigger first at weight 1.

    Each step back in the history multiplies the weight by ``decay``; an item
    seen several times keeps its newest (highest) weight.
    """
    seeds = {trigger_item_id: 1.0}
    weight = 1.0
    for entry in recent:
        if len(seeds) >= count:
            break
        if entry.item_id in seeds:
            continue
        weight *= decay
        seeds[entry.item_id] = weight
    return seeds


def top_categories(
    seeds: Mapping[str, float],
    attributes: Mapping[str, ItemAttributes],
    affinity: Mapping[str, float],
    count: int,
) -> list[str]:
    """Return the user's top categories, heaviest first.

    Categories of the seed items (the trigger and the latest items, weighted by
    recency) come first, so the slate follows the current intent; the user's
    long-term category affinity fills the remaining places.
    """
    totals: dict[str, float] = {}
    for item_id, weight in seeds.items():
        attributes_of_item = attributes.get(item_id)
        if attributes_of_item is None or attributes_of_item.category_id is None:
            continue
        category = attributes_of_item.category_id
        totals[category] = totals.get(category, 0.0) + weight
    ranked = sorted(totals.items(), key=lambda pair: (-pair[1], pair[0]))
    chosen = [category for category, _ in ranked[:count]]
    for category in affinity:
        if len(chosen) >= count:
            break
        if category not in chosen:
            chosen.append(category)
    return chosen


def source_shares(
    scored: Iterable[tuple[str, float]], weight: float
) -> list[tuple[str, float]]:
    """Scale a source's items so that its best one scores ``weight``.

    Items scoring 0 or less are dropped, and so is every item of a source of
    weight 0 or less.
    """
    pairs = [(item_id, score) for item_id, score in scored if score > 0.0]
    if not pairs or weight <= 0.0:
        return []
    top = max(score for _, score in pairs)
    return [(item_id, weight * score / top) for item_id, score in pairs]


def merge_shares(
    sources: Iterable[tuple[CandidateSource, Iterable[tuple[str, float]]]],
    exclude: Iterable[str],
    limit: int,
) -> list[Candidate]:
    """Merge scaled item lists (see :func:`source_shares`) into candidates.

    An item in several lists sums its shares, in the order of ``sources``,
    and keeps the source of its largest share (the first on a tie).
    Candidates come ordered by their combined score.
    """
    totals: dict[str, float] = {}
    best_share: dict[str, tuple[float, CandidateSource]] = {}
    for source, shares in sources:
        for item_id, share in shares:
            total = totals.get(item_id)
            if total is None:
                totals[item_id] = share
                best_share[item_id] = (share, source)
            else:
                totals[item_id] = total + share
                if share > best_share[item_id][0]:
                    best_share[item_id] = (share, source)
    for item_id in exclude:
        totals.pop(item_id, None)
    ranked = _by_score(totals)[:limit]
    fields = [(item_id, best_share[item_id][1], totals[item_id]) for item_id in ranked]
    return list(map(_candidate_of_fields, fields))


def _by_score(scores: dict[str, float]) -> list[str]:
    """Return the ids by descending score, and by id on a tie.

    Sorting the ids and then stably by score gives the order of the key
    ``(-score, id)`` without building a key tuple for every item.
    """
    ranked = sorted(scores)
    ranked.sort(key=scores.__getitem__, reverse=True)
    return ranked


def merge_sources(
    sources: Iterable[tuple[CandidateSource, Iterable[tuple[str, float]]]],
    exclude: Iterable[str],
    limit: int,
    weights: Mapping[CandidateSource, float],
) -> list[Candidate]:
    """Merge scored item lists into candidates ordered by their combined score.

    Each list is scaled so its best item scores the source's weight (1 for a
    source missing from ``weights``); an item in several lists sums its scores
    and keeps the source with the largest share. A source of weight 0 proposes
    nothing.
    """
    scaled = [
        (source, source_shares(scored, weights.get(source, 1.0)))
        for source, scored in sources
    ]
    return merge_shares(scaled, exclude, limit)


def _weighted_neighbours(
    seeds: Mapping[str, float], neighbours: Mapping[str, list[tuple[str, float]]]
) -> list[tuple[str, float]]:
    totals: dict[str, float] = {}
    for seed, seed_weight in seeds.items():
        for item_id, weight in neighbours.get(seed, ()):
            totals[item_id] = totals.get(item_id, 0.0) + seed_weight * weight
    return list(totals.items())


def _ranked_categories_trending(
    categories: Sequence[str], trending: Mapping[str | None, list[tuple[str, float]]]
) -> list[tuple[str, float]]:
    """Return the trending items of each category, scaled down by its rank."""
    in_category: list[tuple[str, float]] = []
    for rank, category in enumerate(categories):
        boost = 1.0 / (rank + 1)
        in_category += [
            (item_id, score * boost) for item_id, score in trending.get(category, [])
        ]
    return in_category


class CandidateGenerator:
    """Propose product and bundle candidates for a batch of events.

    Every store read covers the whole batch, so a batch costs a fixed number of
    round trips whatever its size.

    Args:
        store: batch reads of neighbours, trending items and attributes.
        sessions: the session-kNN index, already updated with the batch.
        settings: how many candidates each source proposes.
    """

    def __init__(
        self, store: CandidateStore, sessions: SessionIndex, settings: CandidateSettings
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._settings = settings
        self._weights = settings.source_weights()
        self._weight_of = {
            source: self._weights.get(source, 1.0) for source in CandidateSource
        }

    def products(self, contexts: Sequence[EventContext]) -> list[list[Candidate]]:
        """Return product candidates per event, in the order of ``contexts``."""
        settings = self._settings
        seeds = [
            recency_weighted_seeds(
                context.item_id,
                context.history.recent,
                settings.recent_items,
                settings.recency_decay,
            )
            for context in contexts
        ]
        all_seeds = sorted({item for seed in seeds for item in seed})
        covisited = self._store.neighbours(
            Relation.COVISITATION, all_seeds, settings.neighbours_per_item
        )
        attributes = self._store.item_attributes(all_seeds)
        categories = [
            top_categories(
                seed,
                attributes,
                context.history.category_affinity,
                settings.top_categories,
            )
            for seed, context in zip(seeds, contexts, strict=True)
        ]
        wanted: Sequence[str | None] = sorted(
            {category for group in categories for category in group}
        )
        trending = self._store.trending(wanted, settings.trending_per_category)
        overall = self._store.trending([None], settings.trending).get(None, [])

        # Trending overall is the same for every event, so it is scaled once.
        weight = self._weight_of
        overall_shares = source_shares(overall, weight[CandidateSource.TRENDING])
        results = []
        for context, seed, user_categories in zip(
            contexts, seeds, categories, strict=True
        ):
            scored = {
                CandidateSource.COVISITATION: _weighted_neighbours(seed, covisited),
                CandidateSource.SESSION_KNN: self._session_votes(context),
                CandidateSource.CATEGORY_TRENDING: _ranked_categories_trending(
                    user_categories, trending
                ),
            }
            sources = [
                (source, source_shares(items, weight[source]))
                for source, items in scored.items()
            ]
            sources.append((CandidateSource.TRENDING, overall_shares))
            results.append(
                merge_shares(sources, [context.item_id], settings.max_candidates)
            )
        return results

    def bundles(self, contexts: Sequence[EventContext]) -> list[list[Candidate]]:
        """Return complements of each cart: items carted or bought with it."""
        carts = [_cart_items(context) for context in contexts]
        all_items = sorted({item for cart in carts for item in cart})
        limit = self._settings.neighbours_per_item
        co_cart = self._store.neighbours(Relation.CO_CART, all_items, limit)
        co_purchase = self._store.neighbours(Relation.CO_PURCHASE, all_items, limit)
        results = []
        for cart in carts:
            sources = [
                (CandidateSource.CO_CART, _weighted_neighbours(cart, co_cart)),
                (CandidateSource.CO_PURCHASE, _weighted_neighbours(cart, co_purchase)),
            ]
            results.append(
                merge_sources(
                    sources, cart, self._settings.max_candidates, self._weights
                )
            )
        return results

    def _session_votes(self, context: EventContext) -> list[tuple[str, float]]:
        settings = self._settings
        return self._sessions.recommend(
            context.session_key,
            context.event_time,
            settings.session_neighbours,
            settings.session_half_life_seconds,
            position_decay=settings.session_position_decay,
            neighbour_position_decay=settings.session_neighbour_position_decay,
            limit=settings.max_candidates,
        )


def _cart_items(context: EventContext) -> dict[str, float]:
    """Return the trigger item and the user's other recent cart adds, weighted."""
    cart = {context.item_id: 1.0}
    for entry in context.history.recent:
        if entry.event_type is EventType.CART_ADD and entry.item_id not in cart:
            cart[entry.item_id] = 0.5
    return cart
