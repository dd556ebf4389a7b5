"""The event-by-event part of the prequential evaluation: products lists.

For each event of a user after the first, the system's products slate for the
previous event and each baseline's list after the previous event are scored
against it. Baselines then learn from the event and propose their next list,
but only for users who have a later event, because no other list is scored.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np

from schemas.events import EventType
from schemas.recommendations import Surface
from services.evaluation.baselines import build_baselines
from services.evaluation.catalog import CatalogView
from services.evaluation.metrics import ListStatistics, RankingAccumulator, first_rank
from services.evaluation.records import EventRecord, SlateRecord
from services.evaluation.results import SYSTEM_NAME, BeyondAccuracy, Timeline
from services.evaluation.settings import EvaluationSettings

__all__ = ["ProductsReplay", "UserTimelines"]


class _TargetFlags(NamedTuple):
    """Subsets a scored event belongs to.

    Attributes:
        is_new_item: its item differs from the previous event's item.
        is_unseen: the system had not read it when it published the slate.
    """

    is_new_item: bool
    is_unseen: bool


class UserTimelines:
    """Each user's events in event-time order, and where each event sits."""

    def __init__(self, events: Sequence[EventRecord]) -> None:
        self.by_user: dict[str, list[EventRecord]] = {}
        self._location: dict[str, tuple[str, int]] = {}
        for event in events:
            user_events = self.by_user.setdefault(event.user_id, [])
            self._location[event.event_id] = (event.user_id, len(user_events))
            user_events.append(event)

    @property
    def users(self) -> int:
        return len(self.by_user)

    @property
    def single_event_users(self) -> int:
        return sum(1 for events in self.by_user.values() if len(events) == 1)

    def locate(self, event_id: str) -> tuple[list[EventRecord], int] | None:
        """Return the user's events and the event's index in them, or None."""
        location = self._location.get(event_id)
        if location is None:
            return None
        user_id, position = location
        return self.by_user[user_id], position


class ProductsReplay:
    """Scores the system's products slates and the baselines, event by event.

    Args:
        settings: cutoffs, baseline parameters and trigger-item exclusion.
        slates: the kept slate per (surface, trigger event id).
        catalog: item categories for diversity and the item universe.
    """

    def __init__(
        self,
        settings: EvaluationSettings,
        slates: Mapping[tuple[Surface, str], SlateRecord],
        catalog: CatalogView,
    ) -> None:
        self._max_k = settings.cutoffs[-1]
        self._score_from = (
            settings.score_from.timestamp() if settings.score_from else -math.inf
        )
        self._exclude_trigger_item = settings.exclude_trigger_item
        self._slates = slates
        self._catalog = catalog

        # LIMITATION(L-64): baselines exist for the products surface only, so
        # bundles, promotions and reviews slates have no baseline beside them.
        self._baselines = build_baselines(self._max_k, settings.baselines)
        names = [SYSTEM_NAME, *(baseline.name for baseline in self._baselines)]

        self.overall = {name: RankingAccumulator(settings.cutoffs) for name in names}
        self.new_items = {name: RankingAccumulator(settings.cutoffs) for name in names}
        self.without_lookahead = {
            name: RankingAccumulator(settings.cutoffs) for name in names
        }
        self.by_event_type = {
            name: {t.value: RankingAccumulator(settings.cutoffs) for t in EventType}
            for name in names
        }

        self.by_model_version: dict[str, RankingAccumulator] = {}
        self._cutoffs = settings.cutoffs

        self._lists = {name: ListStatistics(catalog.categories) for name in names}
        self._hits: dict[str, list[bool]] = {name: [] for name in names}
        self._target_times: list[float] = []
        self._pending: dict[str, dict[str, list[str]]] = {n: {} for n in names}
        self._last_slate: dict[str, SlateRecord] = {}

        self.own_slates = 0
        self.stale_slates = 0
        self.missing_slates = 0
        self.repeat_targets = 0
        self.lookahead_targets = 0

    def step(self, event: EventRecord, timelines: UserTimelines) -> None:
        """Score the lists that precede ``event``, then learn from it."""
        located = timelines.locate(event.event_id)
        if located is None:
            raise ValueError(f"event {event.event_id!r} is not in the timelines")
        user_events, position = located
        if position > 0:
            self._score(event, user_events[position - 1])

        for baseline in self._baselines:
            baseline.update(event)
        slate = self._slates.get((Surface.PRODUCTS, event.event_id))
        if slate is not None:
            self._last_slate[event.user_id] = slate

        if position + 1 < len(user_events):
            exclude = (
                frozenset((event.item_id,))
                if self._exclude_trigger_item
                else frozenset()
            )
            for baseline in self._baselines:
                listed = baseline.recommend(event, self._max_k, exclude)
                self._pending[baseline.name][event.user_id] = listed

    def beyond_accuracy(
        self, events: Sequence[EventRecord]
    ) -> dict[str, BeyondAccuracy]:
        """Return coverage, diversity and novelty per recommender."""
        popularity = Counter(event.item_id for event in events)
        universe = self._catalog.items or set(popularity)
        size = len(universe)
        result = {}
        for name, lists in self._lists.items():
            recommended = lists.count_recommended(universe)
            result[name] = BeyondAccuracy(
                lists=lists.lists,
                recommended_items=recommended,
                catalog_items=size,
                coverage=recommended / size if size else None,
                diversity=lists.diversity(),
                novelty=lists.novelty(popularity, len(events), max(size, 1)),
            )
        return result

    def timeline(self, buckets: int) -> Timeline:
        """Return HR at the largest cutoff over consecutive, equal-size buckets."""
        count = len(self._target_times)
        if count == 0:
            return Timeline([], [], {name: [] for name in self._hits})
        chunks = np.array_split(np.arange(count), min(buckets, count))
        end_times = [
            datetime.fromtimestamp(self._target_times[int(chunk[-1])], UTC).isoformat()
            for chunk in chunks
        ]
        hit_rates = {}
        for name, hits in self._hits.items():
            flags = np.asarray(hits, dtype=np.float64)
            hit_rates[name] = [float(flags[chunk].mean()) for chunk in chunks]
        return Timeline(end_times, [len(chunk) for chunk in chunks], hit_rates)

    def _score(self, target: EventRecord, previous: EventRecord) -> None:
        if target.timestamp < self._score_from:
            for lists in self._pending.values():
                lists.pop(target.user_id, None)
            return
        own = self._slates.get((Surface.PRODUCTS, previous.event_id))
        slate = own or self._last_slate.get(target.user_id)
        if own is not None:
            self.own_slates += 1
        elif slate is not None:
            self.stale_slates += 1
        else:
            self.missing_slates += 1
        flags = _TargetFlags(
            is_new_item=target.item_id != previous.item_id,
            is_unseen=not self._is_lookahead(slate, target),
        )
        self.repeat_targets += not flags.is_new_item
        self.lookahead_targets += not flags.is_unseen
        self._target_times.append(target.timestamp)

        rank = self._record(SYSTEM_NAME, slate.item_ids if slate else (), target, flags)
        if slate is not None:
            version = self.by_model_version.get(slate.model_version)
            if version is None:
                version = RankingAccumulator(self._cutoffs)
                self.by_model_version[slate.model_version] = version
            version.add(rank)
        for baseline in self._baselines:
            listed = self._pending[baseline.name].pop(target.user_id, [])
            self._record(baseline.name, listed, target, flags)

    def _is_lookahead(self, slate: SlateRecord | None, target: EventRecord) -> bool:
        """Tell whether the system read the target before it published the slate.

        The target's own slate gives the moment the system read the target:
        its generated_at minus its latency. The hot path reads whole batches,
        so a target can be read before the earlier slate is built. It applies
        the target only after scoring that slate, but the slate may use other
        users' events read in the same batch.
        """
        target_slate = self._slates.get((Surface.PRODUCTS, target.event_id))
        if slate is None or target_slate is None:
            return False
        read_at = target_slate.generated_at - target_slate.latency_ms / 1000.0
        return read_at < slate.generated_at

    def _record(
        self,
        name: str,
        items: Sequence[str],
        target: EventRecord,
        flags: _TargetFlags,
    ) -> int | None:
        listed = items[: self._max_k]
        rank = first_rank(listed, target.item_id)
        self.overall[name].add(rank)
        if flags.is_new_item:
            self.new_items[name].add(rank)
        if flags.is_unseen:
            self.without_lookahead[name].add(rank)
        self.by_event_type[name][target.event_type.value].add(rank)
        self._lists[name].add(listed)
        self._hits[name].append(rank is not None)
        return rank
