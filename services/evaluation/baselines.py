"""Baseline recommenders that the evaluator replays beside the system.

Each baseline learns from one event at a time (``update``) and then proposes a
list for the user who produced it (``recommend``). The evaluator calls
``update`` with event N before ``recommend`` for event N, and scores that list
against the user's event N+1, so a baseline never learns from the event it is scored
on. Ties are broken by the order in which items first appeared (popularity
baselines) or by item id (neighbourhood baselines), so a replay gives the same
lists every time.

The neighbourhood baselines (co-visitation, session-kNN) fill a short list
with the most popular items, as a shop would rather show something than
nothing.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Protocol

from services.evaluation.records import EventRecord
from services.evaluation.settings import BaselineSettings

__all__ = [
    "Baseline",
    "CoVisitation",
    "MostPopular",
    "SessionKnn",
    "Trending",
    "build_baselines",
]

# Above this exponent the decayed scores are rescaled, far below float overflow.
_MAX_EXPONENT = 300.0


class Baseline(Protocol):
    """A recommender learned online from the replayed events."""

    name: str

    def update(self, event: EventRecord) -> None:
        """Learn from one event."""
        ...

    def recommend(
        self, event: EventRecord, k: int, exclude: frozenset[str]
    ) -> list[str]:
        """Return up to ``k`` items for the user of ``event``, best first."""
        ...


class _GrowingScores:
    """Item scores that only grow, with the best ``capacity`` kept in order.

    Because a score only grows, an item outside the kept list can enter it
    only when its own score changes, so checking that one item per update
    keeps the list exact.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._scores: dict[str, float] = {}
        self._first_seen: dict[str, int] = {}
        # Entries are (-score, first seen, item_id), so the best comes first.
        self._top: list[tuple[float, int, str]] = []
        self._top_items: set[str] = set()

    def add(self, item_id: str, amount: float) -> None:
        score = self._scores.get(item_id, 0.0) + amount
        self._scores[item_id] = score
        order = self._first_seen.setdefault(item_id, len(self._first_seen))
        entry = (-score, order, item_id)
        if item_id in self._top_items:
            index = next(i for i, kept in enumerate(self._top) if kept[2] == item_id)
            del self._top[index]
            bisect.insort(self._top, entry)
        elif len(self._top) < self._capacity or entry < self._top[-1]:
            bisect.insort(self._top, entry)
            self._top_items.add(item_id)
            if len(self._top) > self._capacity:
                _, _, dropped = self._top.pop()
                self._top_items.discard(dropped)

    def scale(self, factor: float) -> None:
        """Multiply every score by ``factor`` (> 0), which keeps their order."""
        self._scores = {item: score * factor for item, score in self._scores.items()}
        self._top = [(score * factor, order, item) for score, order, item in self._top]

    def best(self, k: int, exclude: Iterable[str]) -> list[str]:
        excluded = set(exclude)
        chosen = []
        for _, _, item_id in self._top:
            if item_id not in excluded:
                chosen.append(item_id)
                if len(chosen) == k:
                    break
        return chosen


class MostPopular:
    """Items with the most events so far, the same list for every user."""

    name = "most_popular"

    def __init__(self, max_k: int) -> None:
        self._counts = _GrowingScores(capacity=2 * max_k + 1)

    def update(self, event: EventRecord) -> None:
        self._counts.add(event.item_id, 1.0)

    def recommend(
        self, event: EventRecord, k: int, exclude: frozenset[str]
    ) -> list[str]:
        return self._counts.best(k, exclude)


class Trending:
    """Items with the most events, each weighted down by its age.

    An event of age ``a`` seconds weighs ``2 ** (-a / half_life)``. Scores are
    stored relative to a reference time, so an update touches one item only.
    """

    name = "trending"

    def __init__(self, max_k: int, half_life_seconds: float) -> None:
        self._scores = _GrowingScores(capacity=2 * max_k + 1)
        self._time_constant = half_life_seconds / math.log(2)
        self._reference_time: float | None = None

    def update(self, event: EventRecord) -> None:
        if self._reference_time is None:
            self._reference_time = event.timestamp
        exponent = (event.timestamp - self._reference_time) / self._time_constant
        if exponent > _MAX_EXPONENT:
            self._scores.scale(math.exp(-exponent))
            self._reference_time = event.timestamp
            exponent = 0.0
        self._scores.add(event.item_id, math.exp(exponent))

    def recommend(
        self, event: EventRecord, k: int, exclude: frozenset[str]
    ) -> list[str]:
        return self._scores.best(k, exclude)


class CoVisitation:
    """Items seen in the same sessions as the user's latest items.

    Each new item of a session forms a pair with each of the previous
    ``window`` distinct items of that session, counted both ways. A list sums
    the pair counts of the ``context_items`` latest session items, the latest
    weighted 1, the one before 1/2, and so on.
    """

    name = "covisitation"

    def __init__(self, max_k: int, window: int, context_items: int) -> None:
        self._window = window
        self._context_items = context_items
        self._pairs: dict[str, dict[str, float]] = {}
        self._recent: dict[str, list[str]] = {}
        self._popularity = _GrowingScores(capacity=2 * max_k + 1)

    def update(self, event: EventRecord) -> None:
        item_id = event.item_id
        recent = self._recent.setdefault(event.session_key, [])
        for other in recent:
            if other != item_id:
                _increment(self._pairs, item_id, other)
                _increment(self._pairs, other, item_id)
        _move_to_end(recent, item_id, self._window)
        self._popularity.add(item_id, 1.0)

    def recommend(
        self, event: EventRecord, k: int, exclude: frozenset[str]
    ) -> list[str]:
        recent = self._recent.get(event.session_key, [])
        context = recent[-self._context_items :][::-1]
        scores: dict[str, float] = {}
        for distance, item_id in enumerate(context):
            weight = 1.0 / (distance + 1)
            for other, count in self._pairs.get(item_id, {}).items():
                scores[other] = scores.get(other, 0.0) + weight * count
        return _fill(_best(scores, k, exclude), self._popularity, k, exclude)


class SessionKnn:
    """Session-based k nearest neighbours with recency weights (V-SKNN, STAN).

    The current session is a vector over its latest items, where the item at
    distance ``d`` from the end weighs ``exp(-d / position_decay)``. A past
    session that shares items is a neighbour candidate; its similarity is the
    weighted overlap divided by ``sqrt(len(current) * len(neighbour))`` and
    multiplied by ``exp(-age / recency_decay)``. The ``neighbors`` most similar
    sessions vote for their items, each vote weighted by the similarity and by
    ``exp(-|distance to the latest shared item| / neighbor_position_decay)``.
    Only the ``sample_size`` most recent sessions of each item are searched,
    which bounds the cost of one list.
    """

    name = "session_knn"

    def __init__(self, max_k: int, settings: BaselineSettings) -> None:
        self._settings = settings
        self._items: dict[str, list[str]] = {}
        self._last_seen: dict[str, float] = {}
        self._sessions_of_item: dict[str, deque[str]] = {}
        self._popularity = _GrowingScores(capacity=2 * max_k + 1)

    def update(self, event: EventRecord) -> None:
        key, item_id = event.session_key, event.item_id
        items = self._items.setdefault(key, [])
        _move_to_end(items, item_id, self._settings.knn_session_items)
        self._last_seen[key] = event.timestamp
        sessions = self._sessions_of_item.get(item_id)
        if sessions is None:
            sessions = deque(maxlen=self._settings.knn_sample_size)
            self._sessions_of_item[item_id] = sessions
        if not sessions or sessions[-1] != key:
            if key in sessions:
                sessions.remove(key)
            sessions.append(key)
        self._popularity.add(item_id, 1.0)

    def recommend(
        self, event: EventRecord, k: int, exclude: frozenset[str]
    ) -> list[str]:
        current = self._items.get(event.session_key, [])
        neighbors = self._neighbors(event, current)
        current_items = set(current)
        scores: dict[str, float] = {}
        decay = self._settings.knn_neighbor_position_decay
        for session_key, similarity in neighbors:
            items = self._items[session_key]
            # The shared item may have left a long neighbour's kept tail.
            shared = max(
                (i for i, item in enumerate(items) if item in current_items),
                default=len(items) - 1,
            )
            for position, item_id in enumerate(items):
                vote = similarity * math.exp(-abs(position - shared) / decay)
                scores[item_id] = scores.get(item_id, 0.0) + vote
        return _fill(_best(scores, k, exclude), self._popularity, k, exclude)

    def _neighbors(
        self, event: EventRecord, current: list[str]
    ) -> list[tuple[str, float]]:
        settings = self._settings
        length = len(current)
        overlap: dict[str, float] = {}
        for position, item_id in enumerate(current):
            weight = math.exp((position + 1 - length) / settings.knn_position_decay)
            for session_key in self._sessions_of_item.get(item_id, ()):
                if session_key != event.session_key:
                    overlap[session_key] = overlap.get(session_key, 0.0) + weight
        similarities = {}
        for session_key, shared_weight in overlap.items():
            age = max(0.0, event.timestamp - self._last_seen[session_key])
            norm = math.sqrt(length * len(self._items[session_key]))
            recency = math.exp(-age / settings.knn_recency_decay_seconds)
            similarities[session_key] = shared_weight / norm * recency
        return heapq.nsmallest(
            settings.knn_neighbors,
            similarities.items(),
            key=lambda pair: (-pair[1], pair[0]),
        )


def build_baselines(max_k: int, settings: BaselineSettings) -> list[Baseline]:
    """Return one fresh instance of every baseline, in report order."""
    return [
        MostPopular(max_k),
        Trending(max_k, settings.trending_half_life_seconds),
        CoVisitation(
            max_k, settings.covisitation_window, settings.covisitation_context_items
        ),
        SessionKnn(max_k, settings),
    ]


def _increment(pairs: dict[str, dict[str, float]], item_id: str, other: str) -> None:
    neighbours = pairs.setdefault(item_id, {})
    neighbours[other] = neighbours.get(other, 0.0) + 1.0


def _move_to_end(items: list[str], item_id: str, capacity: int) -> None:
    if item_id in items:
        items.remove(item_id)
    items.append(item_id)
    if len(items) > capacity:
        del items[0]


def _best(scores: Mapping[str, float], k: int, exclude: frozenset[str]) -> list[str]:
    candidates = (pair for pair in scores.items() if pair[0] not in exclude)
    best = heapq.nsmallest(k, candidates, key=lambda pair: (-pair[1], pair[0]))
    return [item_id for item_id, _ in best]


def _fill(
    chosen: list[str], popularity: _GrowingScores, k: int, exclude: frozenset[str]
) -> list[str]:
    if len(chosen) >= k:
        return chosen
    extra = popularity.best(k - len(chosen), exclude | set(chosen))
    return chosen + extra
