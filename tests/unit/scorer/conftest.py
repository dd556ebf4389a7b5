"""In-memory stand-ins for the feature store, ranker and learner, and factories."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from models.multitask.ranker import (
    CandidateColumns,
    CandidateInput,
    CandidateLike,
    RankRequest,
)
from schemas.catalog import PromotionRecord, ReviewRecord
from schemas.events import Event, EventType
from schemas.features import FeatureVectors, ItemAttributes, UserProfile
from services.hotpath.stages import AppliedEvent
from services.scorer.protocols import Relation, UserHistory


@dataclass
class FakeStore:
    """A CandidateStore backed by dicts; counts the reads it serves."""

    histories: dict[str, UserHistory] = field(default_factory=dict)
    relations: dict[Relation, dict[str, list[tuple[str, float]]]] = field(
        default_factory=dict
    )
    trends: dict[str | None, list[tuple[str, float]]] = field(default_factory=dict)
    attributes: dict[str, ItemAttributes] = field(default_factory=dict)
    item_features: dict[str, dict[str, float]] = field(default_factory=dict)
    known_promotions: list[PromotionRecord] = field(default_factory=list)
    batch_times: list[float] = field(default_factory=list)
    item_reviews: dict[str, list[ReviewRecord]] = field(default_factory=dict)
    feature_reads: int = 0

    def begin_batch(self, at: float) -> None:
        self.batch_times.append(at)

    def user_histories(self, user_ids: Sequence[str]) -> dict[str, UserHistory]:
        return {
            user_id: self.histories.get(user_id, UserHistory()) for user_id in user_ids
        }

    def neighbours(
        self, relation: Relation, item_ids: Sequence[str], limit: int
    ) -> dict[str, list[tuple[str, float]]]:
        table = self.relations.get(relation, {})
        return {item_id: table.get(item_id, [])[:limit] for item_id in item_ids}

    def trending(
        self, category_ids: Sequence[str | None], limit: int
    ) -> dict[str | None, list[tuple[str, float]]]:
        return {
            category: self.trends.get(category, [])[:limit] for category in category_ids
        }

    def item_attributes(self, item_ids: Sequence[str]) -> dict[str, ItemAttributes]:
        return {
            item_id: self.attributes[item_id]
            for item_id in item_ids
            if item_id in self.attributes
        }

    def read_features(
        self, requests: Sequence[tuple[str, Sequence[str]]]
    ) -> list[FeatureVectors]:
        self.feature_reads += 1
        return [
            FeatureVectors(
                user={"user_event_count": 1.0},
                items={
                    item_id: dict(self.item_features.get(item_id, {}))
                    for item_id in item_ids
                },
                attributes=self.item_attributes(item_ids),
                profile=UserProfile(user_id=user_id),
                reference_time=0.0,
            )
            for user_id, item_ids in requests
        ]

    def promotions(self) -> list[PromotionRecord]:
        return list(self.known_promotions)

    def reviews(self, item_ids: Sequence[str]) -> dict[str, list[ReviewRecord]]:
        return {item_id: self.item_reviews.get(item_id, []) for item_id in item_ids}


class TableRanker:
    """A ranker that returns fixed probabilities per item id."""

    def __init__(
        self, table: Mapping[str, tuple[float, float, float]], version: str
    ) -> None:
        self.table = table
        self.model_version = version
        self.calls = 0

    def predict_many(self, requests: Sequence[RankRequest]) -> list[np.ndarray]:
        self.calls += 1
        return [
            np.array(
                [
                    self.table.get(item_id, (0.01, 0.001, 0.0001))
                    for item_id in _item_ids(request.candidates)
                ]
            ).reshape(len(request.candidates), 3)
            for request in requests
        ]


def _item_ids(candidates: Sequence[CandidateLike] | CandidateColumns) -> list[str]:
    if isinstance(candidates, CandidateColumns):
        return list(candidates.item_ids)
    return [
        candidate.item_id if isinstance(candidate, CandidateInput) else candidate[0]
        for candidate in candidates
    ]


class FixedModels:
    """A ModelSource that returns whatever ranker it holds."""

    def __init__(self, ranker: TableRanker | None) -> None:
        self.ranker = ranker

    def current(self) -> TableRanker | None:
        return self.ranker


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def make_ranker() -> Callable[..., TableRanker]:
    def make(
        table: Mapping[str, tuple[float, float, float]] | None = None,
        version: str = "mtl-20261204-abc1234",
    ) -> TableRanker:
        return TableRanker(table or {}, version)

    return make


@pytest.fixture
def make_models() -> Callable[[TableRanker | None], FixedModels]:
    return FixedModels


@pytest.fixture
def make_promotion() -> Callable[..., PromotionRecord]:
    def make(**overrides: Any) -> PromotionRecord:
        fields: dict[str, Any] = {
            "promotion_id": "p1",
            "title": "Autumn sale",
            "discount_percent": 10.0,
            "starts_at": _time("2019-10-01T00:00:00"),
            "ends_at": _time("2019-10-08T00:00:00"),
            "updated_at": _time("2019-09-30T00:00:00"),
        }
        fields.update(overrides)
        return PromotionRecord(**fields)

    return make


@pytest.fixture
def make_review() -> Callable[..., ReviewRecord]:
    def make(**overrides: Any) -> ReviewRecord:
        fields: dict[str, Any] = {
            "review_id": "r1",
            "item_id": "i1",
            "rating": 5,
            "created_at": _time("2019-09-01T00:00:00"),
            "updated_at": _time("2019-09-01T00:00:00"),
        }
        fields.update(overrides)
        return ReviewRecord(**fields)

    return make


@pytest.fixture
def make_event() -> Callable[..., Event]:
    counter = iter(range(1_000_000))

    def make(**overrides: Any) -> Event:
        fields: dict[str, Any] = {
            "event_id": f"e{next(counter)}",
            "event_type": EventType.CLICK,
            "user_id": "u1",
            "item_id": "i1",
            "event_time": _time("2019-10-01T12:00:00"),
            "session_id": "s1",
        }
        fields.update(overrides)
        return Event(**fields)

    return make


@pytest.fixture
def make_applied() -> Callable[..., AppliedEvent]:
    def make(
        event: Event, received_at: float = 1000.0, offset: int = 0
    ) -> AppliedEvent:
        return AppliedEvent(
            event=event,
            user_features={},
            item_features={},
            received_at=received_at,
            partition=0,
            offset=offset,
        )

    return make
