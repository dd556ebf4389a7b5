"""What the scoring stage needs from the feature store, the ranker and the learner.

The stage codes against these small protocols, so unit tests can drive it with
in-memory fakes; :mod:`services.scorer.store` adapts the Redis feature store
to :class:`CandidateStore`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

import numpy as np

from models.multitask.ranker import RankRequest
from schemas.catalog import PromotionRecord, ReviewRecord
from schemas.features import (
    CandidateMatrix,
    FeatureVectors,
    ItemAttributes,
    RecentItem,
)

__all__ = [
    "CandidateStore",
    "FollowedModelSource",
    "ItemAttributes",
    "ModelSource",
    "Ranker",
    "RecentItem",
    "Relation",
    "SignalSource",
    "UserHistory",
]

Features = Mapping[str, float]


class Relation(StrEnum):
    """An item-to-item neighbour list kept by the feature store."""

    COVISITATION = "covisitation"
    CO_CART = "co_cart"
    CO_PURCHASE = "co_purchase"


@dataclass(frozen=True)
class UserHistory:
    """A user's recent items and purchases as the candidate sources need them.

    Attributes:
        recent: latest interactions, newest first.
        purchased: ids of items the user bought recently.
        category_affinity: decayed weight per category id, strongest first.
        last_event_time: Unix seconds of the user's newest event, if any.
    """

    recent: Sequence[RecentItem] = ()
    purchased: frozenset[str] = frozenset()
    category_affinity: Mapping[str, float] = field(default_factory=dict)
    last_event_time: float | None = None


class CandidateStore(Protocol):
    """Batch reads of the state that candidate sources, rules and ranking use."""

    def begin_batch(self, at: float) -> None:
        """Set the event time (Unix s) that decays and windows are evaluated at."""
        ...

    def user_histories(self, user_ids: Sequence[str]) -> dict[str, UserHistory]:
        """Return the history of each user; unknown users get an empty one."""
        ...

    def neighbours(
        self, relation: Relation, item_ids: Sequence[str], limit: int
    ) -> dict[str, list[tuple[str, float]]]:
        """Return each item's top neighbours with their weights, best first."""
        ...

    def trending(
        self, category_ids: Sequence[str | None], limit: int
    ) -> dict[str | None, list[tuple[str, float]]]:
        """Return trending items per category; ``None`` means the whole shop."""
        ...

    def item_attributes(self, item_ids: Sequence[str]) -> dict[str, ItemAttributes]:
        """Return catalog attributes of the items that have a catalog record."""
        ...

    def read_features(
        self, requests: Sequence[tuple[str, Sequence[str]]]
    ) -> list[FeatureVectors]:
        """Return user and candidate item features for each ``(user_id, item_ids)``.

        The whole batch is read in one pipelined round trip.
        """
        ...

    def promotions(self) -> list[PromotionRecord]:
        """Return every known promotion; callers check the validity windows."""
        ...

    def reviews(self, item_ids: Sequence[str]) -> dict[str, list[ReviewRecord]]:
        """Return the reviews of each item."""
        ...


class Ranker(Protocol):
    """A trained model that predicts task probabilities for candidates."""

    model_version: str

    def predict_many(self, requests: Sequence[RankRequest]) -> list[np.ndarray]:
        """Return one (C, 3) array of click, cart_add and purchase per request."""
        ...


class ModelSource(Protocol):
    """A source of the current ranker (``None`` before the first model)."""

    def current(self) -> Ranker | None:
        """Return the ranker to use for the next batch."""
        ...


@runtime_checkable
class FollowedModelSource(ModelSource, Protocol):
    """A model source that follows announcements once started (``ModelWatcher``)."""

    def start(self) -> None:
        """Start following the announcements."""
        ...


class SignalSource(Protocol):
    """Online-learning signals per candidate (River models)."""

    def signal_matrix(
        self,
        requests: Sequence[
            tuple[str, Features, Sequence[tuple[str, Features]] | CandidateMatrix]
        ],
    ) -> np.ndarray:
        """Return the signals of all candidates of several users as one matrix.

        Args:
            requests: ``(user_id, user_features, candidates)`` per user, with
                candidates as ``(item_id, item_features)`` pairs or one matrix.

        Returns:
            Shape (N, 3) for the N candidates of all requests in order, with
            the columns online cart probability, online purchase probability
            and online affinity; NaN marks a missing signal.
        """
        ...
