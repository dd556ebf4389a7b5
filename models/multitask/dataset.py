"""Training rows for the ranker, built from a window of point-in-time examples.

Every training example (one per event) becomes a positive row: the user
interacted with the item, so its click label is 1. Its cart_add and purchase
labels come from the event itself and from later events of the same user on the
same item within the label horizon. Each positive gets sampled negatives, the
items the system would have proposed at that moment: popular items in the
window and items co-visited in sessions with the user's previous item. A
negative row pairs the same user's point-in-time features with the negative
item's most recent item features from strictly before the event. All sampling
state is built in event time order, so no row sees anything from its own future.
"""

from __future__ import annotations

import random
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.multitask.features import (
    PAIR_FEATURE_PREFIX,
    PRICE_FEATURE,
    SPARSE_FIELDS,
    TASKS,
    IdHasher,
)
from schemas.events import EventType
from schemas.training import TrainingExample

__all__ = ["DatasetConfig", "TrainingSet", "build_training_set"]

_CLICK, _CART, _PURCHASE = 0, 1, 2


@dataclass(frozen=True)
class DatasetConfig:
    """Labelling and negative-sampling settings.

    Attributes:
        negatives_per_positive: sampled negatives per event.
        label_horizon_seconds: how long after an event a cart add or purchase
            of the same item still labels it.
        popular_share: share of each event's negatives drawn by popularity;
            the rest come from session co-visitation.
        covisit_neighbours: co-visited items remembered per item (most recent).
        max_lookahead_events: later events of a user scanned for labels.
        seed: seed of the negative sampler.
    """

    negatives_per_positive: int = 4
    label_horizon_seconds: float = 3600.0
    popular_share: float = 0.5
    covisit_neighbours: int = 50
    max_lookahead_events: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.negatives_per_positive < 0:
            raise ValueError(
                f"negatives_per_positive={self.negatives_per_positive}; expected >= 0"
            )
        if not 0.0 <= self.popular_share <= 1.0:
            raise ValueError(f"popular_share={self.popular_share}; expected 0 to 1")
        if self.label_horizon_seconds <= 0:
            raise ValueError(
                f"label_horizon_seconds={self.label_horizon_seconds}; expected > 0"
            )


@dataclass(frozen=True)
class TrainingSet:
    """Rows of (user, item) pairs with their inputs and labels, as arrays.

    Attributes:
        ids: sparse id hashes, shape (B, S) int64, fields in SPARSE_FIELDS order.
        numeric: raw numeric features, shape (B, F') float32.
        numeric_names: column names of ``numeric``.
        user_feature_names: the user features among ``numeric_names``.
        item_feature_names: the item features among ``numeric_names``.
        labels: shape (B, T) float32, tasks in TASKS order, nested so that
            purchase <= cart_add <= click.
        groups: shape (B,) int64, the event each row belongs to; the positive
            and its negatives share a group.
        is_positive: shape (B,) bool, True for the event's own item.
        event_times: shape (B,) float64 Unix seconds of the event.
    """

    ids: np.ndarray
    numeric: np.ndarray
    numeric_names: tuple[str, ...]
    user_feature_names: tuple[str, ...]
    item_feature_names: tuple[str, ...]
    labels: np.ndarray
    groups: np.ndarray
    is_positive: np.ndarray
    event_times: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, mask: np.ndarray) -> TrainingSet:
        """Return the rows selected by a boolean mask of shape (B,)."""
        return TrainingSet(
            ids=self.ids[mask],
            numeric=self.numeric[mask],
            numeric_names=self.numeric_names,
            user_feature_names=self.user_feature_names,
            item_feature_names=self.item_feature_names,
            labels=self.labels[mask],
            groups=self.groups[mask],
            is_positive=self.is_positive[mask],
            event_times=self.event_times[mask],
        )

    def with_labels(self, labels: np.ndarray) -> TrainingSet:
        """Return the same rows with other labels, shape (B, T)."""
        if labels.shape != self.labels.shape:
            raise ValueError(
                f"labels have shape {labels.shape}; expected {self.labels.shape}"
            )
        return TrainingSet(
            ids=self.ids,
            numeric=self.numeric,
            numeric_names=self.numeric_names,
            user_feature_names=self.user_feature_names,
            item_feature_names=self.item_feature_names,
            labels=labels.astype(np.float32),
            groups=self.groups,
            is_positive=self.is_positive,
            event_times=self.event_times,
        )

    def split_by_time(self, holdout_fraction: float) -> tuple[TrainingSet, TrainingSet]:
        """Split into older training rows and the most recent held-out rows.

        Whole events move together, so a positive and its negatives never sit
        on both sides.

        Args:
            holdout_fraction: share of events, the latest ones, to hold out.

        Returns:
            (train, holdout).
        """
        if not 0.0 < holdout_fraction < 1.0:
            raise ValueError(
                f"holdout_fraction={holdout_fraction}; expected between 0 and 1"
            )
        group_ids = np.unique(self.groups)
        if group_ids.size < 2:
            raise ValueError(
                f"cannot split {group_ids.size} event(s); expected at least 2"
            )
        # Groups are numbered in event time order, so the last ones are the newest.
        cut_index = int(round(group_ids.size * (1.0 - holdout_fraction)))
        cut_index = min(max(cut_index, 1), group_ids.size - 1)
        is_train = self.groups < group_ids[cut_index]
        return self.subset(is_train), self.subset(~is_train)


@dataclass
class _ItemSnapshot:
    category_id: str | None
    brand: str | None
    price: float | None
    features: dict[str, float]


def build_training_set(
    examples: Sequence[TrainingExample], config: DatasetConfig | None = None
) -> TrainingSet:
    """Label the examples, sample negatives and return the rows as arrays.

    Examples are sorted by event time (ties by ``event_id``) and duplicates of
    an ``event_id`` are dropped, so the result does not depend on arrival order.
    The same examples and seed give the same rows.

    Args:
        examples: point-in-time snapshots, one per event, in any order.
        config: labelling and sampling settings; defaults when None.

    Returns:
        The rows, grouped by event, with groups numbered in event time order.
    """
    config = config or DatasetConfig()
    ordered = _ordered_unique(examples)
    labels, future_items = _label_events(ordered, config)
    user_names = sorted({name for ex in ordered for name in ex.user_features})
    item_names = sorted(
        {
            name
            for ex in ordered
            for name in ex.item_features
            if not name.startswith(PAIR_FEATURE_PREFIX)
        }
    )
    builder = _RowBuilder(user_names, item_names)
    sampler = _NegativeSampler(config)
    pending: list[TrainingExample] = []
    pending_time = None
    for index, example in enumerate(ordered):
        # Examples at one timestamp must not see each other, so state updates
        # wait until event time moves on.
        if pending and example.event_time != pending_time:
            sampler.observe_all(pending)
            pending.clear()
        pending_time = example.event_time
        pending.append(example)
        builder.add(
            example, example.item_id, _snapshot_of(example), index, labels[index]
        )
        for item_id in sampler.sample(example, future_items[index]):
            builder.add(example, item_id, sampler.snapshot(item_id), index, None)
    return builder.build(user_names, item_names)


def _ordered_unique(examples: Sequence[TrainingExample]) -> list[TrainingExample]:
    seen: set[str] = set()
    unique = []
    for example in examples:
        if example.event_id not in seen:
            seen.add(example.event_id)
            unique.append(example)
    unique.sort(key=lambda ex: (ex.event_time, ex.event_id))
    return unique


def _label_events(
    ordered: Sequence[TrainingExample], config: DatasetConfig
) -> tuple[list[tuple[float, float, float]], list[set[str]]]:
    """Return the labels of each event and the items its user touches in the horizon."""
    by_user: dict[str, list[int]] = defaultdict(list)
    for index, example in enumerate(ordered):
        by_user[example.user_id].append(index)
    labels: list[tuple[float, float, float]] = [(1.0, 0.0, 0.0)] * len(ordered)
    future_items: list[set[str]] = [set()] * len(ordered)
    for indices in by_user.values():
        for position, index in enumerate(indices):
            anchor = ordered[index]
            end_time = anchor.event_time.timestamp() + config.label_horizon_seconds
            outcome = [1.0, 0.0, 0.0]
            _apply_outcome(outcome, anchor.event_type)
            touched = {anchor.item_id}
            later = indices[position + 1 : position + 1 + config.max_lookahead_events]
            for next_index in later:
                following = ordered[next_index]
                if following.event_time.timestamp() > end_time:
                    break
                touched.add(following.item_id)
                if following.item_id == anchor.item_id:
                    _apply_outcome(outcome, following.event_type)
            labels[index] = (outcome[_CLICK], outcome[_CART], outcome[_PURCHASE])
            future_items[index] = touched
    return labels, future_items


def _apply_outcome(outcome: list[float], event_type: EventType) -> None:
    # A purchase also counts as a cart add: the chain p(purchase) =
    # p(cart_add) * p(purchase | cart_add) needs nested labels, and shops often
    # log a direct buy without a cart event.
    if event_type in (EventType.CART_ADD, EventType.PURCHASE):
        outcome[_CART] = 1.0
    if event_type == EventType.PURCHASE:
        outcome[_PURCHASE] = 1.0


def _snapshot_of(example: TrainingExample) -> _ItemSnapshot:
    return _ItemSnapshot(
        example.category_id, example.brand, example.price, example.item_features
    )


# LIMITATION(L-45): negatives come only from items seen earlier in the window;
# catalog items without events are never shown to the model as negatives.
class _NegativeSampler:
    """Popularity and co-visitation state of the window, updated in event time."""

    def __init__(self, config: DatasetConfig) -> None:
        self._config = config
        self._random = random.Random(config.seed)
        # One entry per event, so a uniform draw is a popularity-weighted draw.
        self._occurrences: list[str] = []
        self._snapshots: dict[str, _ItemSnapshot] = {}
        self._covisits: dict[str, deque[str]] = {}
        self._last_item: dict[str, str] = {}

    def snapshot(self, item_id: str) -> _ItemSnapshot:
        return self._snapshots[item_id]

    def observe_all(self, examples: Sequence[TrainingExample]) -> None:
        for example in examples:
            self._observe(example)

    def _observe(self, example: TrainingExample) -> None:
        item_id = example.item_id
        self._occurrences.append(item_id)
        self._snapshots[item_id] = _snapshot_of(example)
        context = example.session_id or f"user:{example.user_id}"
        previous = self._last_item.get(context)
        if previous is not None and previous != item_id:
            self._neighbours(previous).append(item_id)
            self._neighbours(item_id).append(previous)
        self._last_item[context] = item_id

    def _neighbours(self, item_id: str) -> deque[str]:
        found = self._covisits.get(item_id)
        if found is None:
            found = deque(maxlen=self._config.covisit_neighbours)
            self._covisits[item_id] = found
        return found

    def sample(self, example: TrainingExample, excluded: set[str]) -> list[str]:
        """Draw distinct negatives that the user does not touch within the horizon."""
        wanted = self._config.negatives_per_positive
        if wanted == 0 or not self._occurrences:
            return []
        context = example.session_id or f"user:{example.user_id}"
        previous = self._last_item.get(context)
        covisited = self._covisits.get(previous) if previous is not None else None
        covisit_wanted = 0
        if covisited:
            covisit_wanted = wanted - int(round(wanted * self._config.popular_share))
        chosen: list[str] = []
        self._draw(chosen, list(covisited or ()), covisit_wanted, excluded)
        self._draw(chosen, self._occurrences, wanted - len(chosen), excluded)
        return chosen

    def _draw(
        self, chosen: list[str], pool: Sequence[str], count: int, excluded: set[str]
    ) -> None:
        goal = len(chosen) + count
        for _ in range(4 * count):
            if len(chosen) >= goal or not pool:
                return
            item_id = pool[self._random.randrange(len(pool))]
            if item_id not in excluded and item_id not in chosen:
                chosen.append(item_id)


class _RowBuilder:
    """Collects rows in Python lists and turns them into arrays once."""

    def __init__(self, user_names: Sequence[str], item_names: Sequence[str]) -> None:
        self._user_names = list(user_names)
        self._item_names = list(item_names)
        self._hasher = IdHasher()
        self._ids: list[tuple[int, int, int, int]] = []
        self._numeric: list[list[float]] = []
        self._labels: list[tuple[float, float, float]] = []
        self._groups: list[int] = []
        self._is_positive: list[bool] = []
        self._times: list[float] = []

    def add(
        self,
        example: TrainingExample,
        item_id: str,
        item: _ItemSnapshot,
        group: int,
        labels: tuple[float, float, float] | None,
    ) -> None:
        """Add one row; ``labels`` None marks a sampled negative."""
        hasher = self._hasher
        self._ids.append(
            (
                hasher.hash("user_id", example.user_id),
                hasher.hash("item_id", item_id),
                hasher.hash("category_id", item.category_id),
                hasher.hash("brand", item.brand),
            )
        )
        user_features = example.user_features
        item_features = item.features
        row = [user_features.get(name, 0.0) for name in self._user_names]
        row.extend([item_features.get(name, 0.0) for name in self._item_names])
        row.append(item.price if item.price is not None else 0.0)
        self._numeric.append(row)
        self._labels.append(labels if labels is not None else (0.0, 0.0, 0.0))
        self._groups.append(group)
        self._is_positive.append(labels is not None)
        self._times.append(example.event_time.timestamp())

    def build(
        self, user_names: Sequence[str], item_names: Sequence[str]
    ) -> TrainingSet:
        width = len(user_names) + len(item_names) + 1
        return TrainingSet(
            ids=np.asarray(self._ids, dtype=np.int64).reshape(-1, len(SPARSE_FIELDS)),
            numeric=np.asarray(self._numeric, dtype=np.float32).reshape(-1, width),
            numeric_names=(*user_names, *item_names, PRICE_FEATURE),
            user_feature_names=tuple(user_names),
            item_feature_names=tuple(item_names),
            labels=np.asarray(self._labels, dtype=np.float32).reshape(-1, len(TASKS)),
            groups=np.asarray(self._groups, dtype=np.int64),
            is_positive=np.asarray(self._is_positive, dtype=bool),
            event_times=np.asarray(self._times, dtype=np.float64),
        )
