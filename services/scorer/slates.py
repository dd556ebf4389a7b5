"""Slates for a batch of triggers: candidates, features, ranking, rules, surfaces.

:class:`SlateBuilder` turns each trigger (an applied event, or an on-demand
request from the HTTP API) into its slates: products always, bundles on cart
adds, promotions on the configured event types, reviews on clicks of items
that have reviews. Reads cover the whole batch at each step, so a batch costs
a fixed number of Redis round trips, and the trained ranker scores the whole
batch in one call.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import numpy as np

from schemas.catalog import PromotionRecord, ReviewRecord
from schemas.events import EventType
from schemas.features import CandidateMatrix, FeatureVectors, RecentItem
from schemas.recommendations import CandidateSource, Slate, Surface
from services.scorer.batch_ranker import BatchRanker
from services.scorer.candidates import Candidate, CandidateGenerator, EventContext
from services.scorer.metrics import CANDIDATES_PER_EVENT
from services.scorer.protocols import CandidateStore, ModelSource, SignalSource
from services.scorer.ranking import zero_nan
from services.scorer.rules import (
    RuleContext,
    ScoredCandidates,
    excluded_items,
    select_rows,
)
from services.scorer.session_knn import SessionIndex
from services.scorer.settings import ScorerSettings
from services.scorer.surfaces import (
    PromotionIndex,
    promotion_item_seeds,
    rank_reviews,
)

__all__ = ["REVIEWS_MODEL_VERSION", "SlateBuilder", "Trigger", "recommendation_id"]

logger = logging.getLogger(__name__)

REVIEWS_MODEL_VERSION = "review-heuristic-v1"

# Recent views, which tell new items apart.
_VIEWS_FEATURE = "item_click_count_7d"
_NO_CANDIDATES = ScoredCandidates([], [], [], [], [])
# The fields of one SlateItem, validated together with its slate.
_ItemFields = dict[str, Any]
_SLATE_NAMESPACE = uuid.UUID("6f1c9a52-3b7e-4c1d-9a0e-2f3d4b5c6a7e")
_SLATE_NAMESPACE_BYTES = _SLATE_NAMESPACE.bytes
_SURFACE_SUFFIXES = {surface: f"/{surface.value}".encode() for surface in Surface}


def recommendation_id(trigger_event_id: str, surface: Surface) -> str:
    """Return the slate id for a trigger and surface, the same on every replay.

    The id is the hex of ``uuid.uuid5(namespace, "<trigger>/<surface>")``,
    computed without building a ``UUID``, which costs more than the hash.
    """
    name = (
        _SLATE_NAMESPACE_BYTES + trigger_event_id.encode() + _SURFACE_SUFFIXES[surface]
    )
    digest = bytearray(hashlib.sha1(name, usedforsecurity=False).digest())
    # The version (5) and variant (RFC 4122) bits, as uuid.uuid5 sets them.
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return digest[:16].hex()


@dataclass(frozen=True)
class Trigger:
    """The cause of a slate: an applied event or an on-demand request.

    Attributes:
        event_id: the trigger's id, the slate's ``trigger_event_id``.
        user_id: the user.
        item_id: the trigger item.
        event_type: the trigger's type.
        event_time: the trigger's event time (Unix s).
        session_key: the key of the user's session in the session index.
        received_at: wall-clock Unix seconds when the event was read.
    """

    event_id: str
    user_id: str
    item_id: str
    event_type: EventType
    event_time: float
    session_key: str
    received_at: float


@dataclass
class _Work:
    """Per-trigger state carried between the batch steps."""

    trigger: Trigger
    context: EventContext
    products: list[Candidate] = field(default_factory=list)
    bundles: list[Candidate] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)
    promotions: list[PromotionRecord] = field(default_factory=list)
    active_promotions: list[int] = field(default_factory=list)
    scored: ScoredCandidates = field(default_factory=lambda: _NO_CANDIDATES)
    views: dict[str, float] = field(default_factory=dict)
    vectors: FeatureVectors | None = None
    model_version: str = ""


class SlateBuilder:
    """Build the slates of a batch of triggers.

    Args:
        store: batch reads of Redis state.
        sessions: the session-kNN index; the caller adds events to it.
        settings: the scorer settings.
        models: the trained ranker, if any; the heuristic ranks until it has one.
        signals: online-learning signals, if the learner runs.
        clock: wall-clock Unix seconds, for ``generated_at`` and latencies.
    """

    def __init__(
        self,
        store: CandidateStore,
        sessions: SessionIndex,
        settings: ScorerSettings,
        *,
        models: ModelSource | None = None,
        signals: SignalSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._settings = settings
        self._generator = CandidateGenerator(store, sessions, settings.candidates)
        self._ranker = BatchRanker(settings.weights, models=models, signals=signals)
        self._clock = clock
        self._promotion_index = PromotionIndex([])
        self._promotions_read: list[PromotionRecord] | None = None

    def build(self, triggers: Sequence[Trigger]) -> list[list[Slate]]:
        """Return the slates of each trigger, in trigger order."""
        if not triggers:
            return []
        self._store.begin_batch(max(trigger.event_time for trigger in triggers))
        work = self._contexts(triggers)
        contexts = [entry.context for entry in work]
        for entry, candidates in zip(
            work, self._generator.products(contexts), strict=True
        ):
            entry.products = candidates
        carts = [
            entry for entry in work if entry.trigger.event_type is EventType.CART_ADD
        ]
        for entry, candidates in zip(
            carts,
            self._generator.bundles([entry.context for entry in carts]),
            strict=True,
        ):
            entry.bundles = candidates
        self._add_promotion_items(work)
        self._score(work)
        reviews = self._reviews(work)
        return [self._slates(entry, reviews) for entry in work]

    def _contexts(self, triggers: Sequence[Trigger]) -> list[_Work]:
        histories = self._store.user_histories(
            sorted({trigger.user_id for trigger in triggers})
        )
        # Walking the triggers backwards collects each user's later triggers
        # in one pass. The hot path has none, so its histories stay as read.
        later: dict[str, list[tuple[str, EventType]]] = {}
        work = []
        for trigger in reversed(triggers):
            history = histories[trigger.user_id]
            user_later = later.setdefault(trigger.user_id, [])
            if user_later:
                recent = _before_later_events(history.recent, user_later)
                history = replace(history, recent=recent)
            user_later.insert(0, (trigger.item_id, trigger.event_type))
            context = EventContext(
                user_id=trigger.user_id,
                item_id=trigger.item_id,
                event_type=trigger.event_type,
                event_time=trigger.event_time,
                session_key=trigger.session_key,
                history=history,
            )
            work.append(_Work(trigger, context))
        work.reverse()
        return work

    def _add_promotion_items(self, work: Sequence[_Work]) -> None:
        events = self._settings.surfaces.promotion_events
        eligible = [entry for entry in work if entry.trigger.event_type in events]
        if not eligible:
            return
        index = self._promotions_index()
        per_rule = self._settings.surfaces.promotion_items_per_rule
        for entry in eligible:
            entry.active_promotions = index.active(entry.trigger.event_time)
            entry.promotions = [
                index.promotions[position] for position in entry.active_promotions
            ]
        # Triggers close in time share their active promotions, so each
        # promotion and each set of active promotions is handled once.
        active = {
            position: index.promotions[position]
            for entry in eligible
            for position in entry.active_promotions
        }
        items, categories = promotion_item_seeds(list(active.values()), per_rule)
        trending = self._store.trending(list(categories), per_rule)
        extras: dict[tuple[int, ...], list[str]] = {}
        for entry in eligible:
            key = tuple(entry.active_promotions)
            if key not in extras:
                wanted = set(items) if entry.promotions else set()
                for promotion in entry.promotions:
                    for category in promotion.category_ids[:per_rule]:
                        wanted.update(
                            item_id for item_id, _ in trending.get(category, [])
                        )
                extras[key] = sorted(wanted)
            entry.extras = list(extras[key])

    def _promotions_index(self) -> PromotionIndex:
        """Return the promotion index, rebuilt only when the promotions change."""
        known = self._store.promotions()
        if known is not self._promotions_read:
            self._promotions_read = known
            if tuple(known) != self._promotion_index.promotions:
                self._promotion_index = PromotionIndex(known)
        return self._promotion_index

    def _score(self, work: Sequence[_Work]) -> None:
        # LIMITATION(L-53): scoring runs once per batch, but candidate
        # generation, feature decoding and slate validation still cost Python
        # per candidate, and on two cores the local broker takes about one
        # core at 1,000 events/s (docs/benchmarks/hotpath.md).
        requests = [(entry.trigger.user_id, _pool(entry)) for entry in work]
        vectors = self._store.read_features(requests)
        matrices = [
            CandidateMatrix.from_mappings(features.items, item_ids)
            for features, (_, item_ids) in zip(vectors, requests, strict=True)
        ]
        for entry, features, candidates in zip(work, vectors, matrices, strict=True):
            entry.vectors = features
            CANDIDATES_PER_EVENT.observe(len(candidates))
        sources = [
            _sources(entry, item_ids)
            for entry, (_, item_ids) in zip(work, requests, strict=True)
        ]
        source_scores = np.array(
            [score for _, scores in sources for score in scores], dtype=np.float64
        )
        batch = self._ranker.score(requests, vectors, matrices, source_scores)

        # The batch is converted to Python floats once, and each trigger keeps
        # its slice of the rows.
        score_rows = batch.scores.tolist()
        prob_rows = batch.task_probs.tolist()
        affinity = zero_nan(batch.signals[:, 2]).tolist()
        start = 0
        for entry, (_, item_ids), (kinds, _), candidates in zip(
            work, requests, sources, matrices, strict=True
        ):
            stop = start + len(item_ids)
            entry.model_version = batch.model_version
            entry.scored = ScoredCandidates(
                item_ids,
                score_rows[start:stop],
                prob_rows[start:stop],
                kinds,
                affinity[start:stop],
            )
            views = zero_nan(candidates.column(_VIEWS_FEATURE)).tolist()
            entry.views = dict(zip(item_ids, views, strict=True))
            start = stop

    def _reviews(self, work: Sequence[_Work]) -> dict[str, list[ReviewRecord]]:
        clicked = sorted(
            {
                entry.trigger.item_id
                for entry in work
                if entry.trigger.event_type is EventType.CLICK
            }
        )
        return self._store.reviews(clicked) if clicked else {}

    def _slates(
        self, entry: _Work, reviews: Mapping[str, list[ReviewRecord]]
    ) -> list[Slate]:
        trigger = entry.trigger
        vectors = entry.vectors
        if vectors is None:
            raise RuntimeError(f"trigger {trigger.event_id!r} was not scored")
        context = RuleContext(
            trigger_item_id=trigger.item_id,
            purchased=dict.fromkeys(entry.context.history.purchased, 0.0),
            attributes=vectors.attributes,
            item_views=entry.views,
        )
        # One exclusion set serves every surface of the trigger.
        excluded = excluded_items(context, self._settings.rules)
        sizes = self._settings.surfaces
        slates = [
            self._item_slate(
                entry,
                Surface.PRODUCTS,
                entry.products,
                context,
                excluded,
                sizes.products_size,
            )
        ]
        if trigger.event_type is EventType.CART_ADD:
            cart = {trigger.item_id} | {
                item.item_id
                for item in entry.context.history.recent
                if item.event_type is EventType.CART_ADD
            }
            slates.append(
                self._item_slate(
                    entry,
                    Surface.BUNDLES,
                    entry.bundles,
                    context,
                    excluded | cart,
                    sizes.bundles_size,
                )
            )
        if trigger.event_type in sizes.promotion_events:
            slates.append(self._promotion_slate(entry, vectors, excluded))
        item_reviews = reviews.get(trigger.item_id, [])
        if trigger.event_type is EventType.CLICK and item_reviews:
            slates.append(self._review_slate(entry, item_reviews, vectors))
        return slates

    def _item_slate(
        self,
        entry: _Work,
        surface: Surface,
        candidates: Sequence[Candidate],
        context: RuleContext,
        excluded: Collection[str],
        size: int,
    ) -> Slate:
        sources = {item_id: source for item_id, source, _ in candidates}
        scored = entry.scored
        item_ids = scored.item_ids
        allowed = sources.keys() - excluded
        rows = [row for row in scored.order if item_ids[row] in allowed]
        kept = select_rows(scored, rows, context, self._settings.rules, size)
        scores = scored.scores
        task_probs = scored.task_probs
        items = [
            {
                "item_id": item_ids[row],
                "rank": rank,
                "score": scores[row],
                "task_probs": _task_probs(task_probs[row]),
                "source": sources[item_ids[row]],
            }
            for rank, row in enumerate(kept, start=1)
        ]
        return self._slate(entry, surface, items, entry.model_version)

    def _promotion_slate(
        self, entry: _Work, vectors: FeatureVectors, excluded: Collection[str]
    ) -> Slate:
        scored = entry.scored
        rows: list[int] = []
        if entry.active_promotions:
            rows = [
                row
                for row, item_id in enumerate(scored.item_ids)
                if item_id not in excluded
            ]
        sizes = self._settings.surfaces
        ranked = self._promotion_index.rank_rows(
            entry.active_promotions,
            scored,
            rows,
            vectors.attributes,
            self._settings.weights.promotion_affinity,
            sizes.promotions_size,
        )
        items = [
            {
                "item_id": promotion.item.item_id,
                "rank": rank,
                "score": promotion.score,
                "task_probs": _task_probs(promotion.item.task_probs),
                "source": CandidateSource.PROMOTION,
                "promotion_id": promotion.promotion.promotion_id,
            }
            for rank, promotion in enumerate(ranked, start=1)
        ]
        return self._slate(entry, Surface.PROMOTIONS, items, entry.model_version)

    def _review_slate(
        self, entry: _Work, reviews: Sequence[ReviewRecord], vectors: FeatureVectors
    ) -> Slate:
        trigger = entry.trigger
        interest = vectors.items.get(trigger.item_id, {}).get(
            "pair_category_affinity", 0.0
        )
        ranked = rank_reviews(
            reviews,
            trigger.event_time,
            interest,
            self._settings.surfaces.review_half_life_days,
            self._settings.surfaces.reviews_size,
        )
        items = [
            {
                "item_id": trigger.item_id,
                "rank": rank,
                "score": review.score,
                "source": CandidateSource.REVIEW,
                "review_id": review.review.review_id,
            }
            for rank, review in enumerate(ranked, start=1)
        ]
        return self._slate(entry, Surface.REVIEWS, items, REVIEWS_MODEL_VERSION)

    def _slate(
        self,
        entry: _Work,
        surface: Surface,
        items: list[_ItemFields],
        model_version: str,
    ) -> Slate:
        """Validate the slate and its items in one call.

        The items come as the fields of each ``SlateItem``. One validation
        of the whole slate checks exactly what constructing each item would.
        It costs about 60 % as much, since most of a model's construction
        cost is fixed per call.
        """
        trigger = entry.trigger
        now = self._clock()
        has_context_item = surface in (Surface.BUNDLES, Surface.REVIEWS)
        return Slate.model_validate(
            {
                "recommendation_id": recommendation_id(trigger.event_id, surface),
                "surface": surface,
                "user_id": trigger.user_id,
                "trigger_event_id": trigger.event_id,
                "context_item_id": trigger.item_id if has_context_item else None,
                "items": items,
                "model_version": model_version,
                "generated_at": datetime.fromtimestamp(now, UTC),
                "latency_ms": max(0.0, (now - trigger.received_at) * 1000.0),
            }
        )


def _before_later_events(
    recent: Sequence[RecentItem], later: Sequence[tuple[str, EventType]]
) -> tuple[RecentItem, ...]:
    """Drop the newest history entries that later triggers of the same user added.

    The hot path never passes one user twice in a batch, because it applies
    and scores its batches in waves. A caller that does has applied the whole
    batch before scoring, so the history read for an early trigger already
    contains the user's later events. Only that history is rewound, not the
    item-to-item lists, trending or the session-kNN index.
    """
    entries = list(recent)
    for item_id, event_type in reversed(later):
        if entries and (entries[0].item_id, entries[0].event_type) == (
            item_id,
            event_type,
        ):
            entries.pop(0)
    return tuple(entries)


def _pool(entry: _Work) -> list[str]:
    seen: dict[str, None] = {}
    for candidate in (*entry.products, *entry.bundles):
        seen[candidate.item_id] = None
    for item_id in entry.extras:
        seen[item_id] = None
    return list(seen)


def _sources(
    entry: _Work, item_ids: Sequence[str]
) -> tuple[list[CandidateSource], list[float]]:
    """Return the source and the source score of each item of the pool.

    An item proposed twice keeps its strongest source. Items that only
    promotions brought in score 0.
    """
    products = entry.products
    if products and not entry.bundles:
        # Usually the pool starts with the products, each once, and promotion
        # items follow, so each product row keeps its product's fields.
        product_ids, product_kinds, product_scores = zip(*products, strict=True)
        count = len(products)
        if product_ids == tuple(item_ids[:count]) and min(product_scores) > -1.0:
            added = len(item_ids) - count
            return (
                [*product_kinds, *[CandidateSource.PROMOTION] * added],
                [*product_scores, *[0.0] * added],
            )
    kinds: dict[str, CandidateSource] = {}
    scores: dict[str, float] = {}
    for item_id, source, score in chain(products, entry.bundles):
        if score > scores.get(item_id, -1.0):
            kinds[item_id] = source
            scores[item_id] = score
    return (
        [kinds.get(item_id, CandidateSource.PROMOTION) for item_id in item_ids],
        [scores.get(item_id, 0.0) for item_id in item_ids],
    )


# Enum members read through the class are slow enough to show per slate item.
_CLICK, _CART_ADD, _PURCHASE = EventType.CLICK, EventType.CART_ADD, EventType.PURCHASE


def _task_probs(probs: Sequence[float]) -> dict[EventType, float]:
    click, cart_add, purchase = probs
    return {_CLICK: click, _CART_ADD: cart_add, _PURCHASE: purchase}
