"""Factories of hand-made events, slates and catalog records."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.catalog import ItemRecord, PromotionRecord
from schemas.events import Event
from schemas.recommendations import CandidateSource, Slate, SlateItem
from services.evaluation.settings import BaselineSettings, EvaluationSettings

START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def make_event() -> Callable[..., Event]:
    """Return a factory of events; ``minute`` sets the event time after START."""

    def make(
        event_id: str,
        user_id: str,
        item_id: str,
        minute: float,
        event_type: str = "click",
        **overrides: Any,
    ) -> Event:
        return Event(
            event_id=event_id,
            event_type=event_type,
            user_id=user_id,
            item_id=item_id,
            event_time=START + timedelta(minutes=minute),
            **overrides,
        )

    return make


@pytest.fixture
def make_slate() -> Callable[..., Slate]:
    """Return a factory of slates listing ``item_ids`` in rank order."""

    def make(
        trigger: Event,
        item_ids: Sequence[str],
        surface: str = "products",
        latency_ms: float = 10.0,
        promotion_ids: Sequence[str] | None = None,
        **overrides: Any,
    ) -> Slate:
        entries = [
            SlateItem(
                item_id=item_id,
                rank=rank,
                score=1.0 / rank,
                source=CandidateSource.TRENDING,
                promotion_id=promotion_ids[rank - 1] if promotion_ids else None,
                review_id=f"rv-{item_id}-{rank}" if surface == "reviews" else None,
            )
            for rank, item_id in enumerate(item_ids, start=1)
        ]
        fields: dict[str, Any] = {
            "recommendation_id": f"{surface}-{trigger.event_id}",
            "surface": surface,
            "user_id": trigger.user_id,
            "trigger_event_id": trigger.event_id,
            "items": entries,
            "model_version": "heuristic-20240301-abcdef0",
            "generated_at": trigger.event_time + timedelta(milliseconds=latency_ms),
            "latency_ms": latency_ms,
        }
        fields.update(overrides)
        return Slate(**fields)

    return make


@pytest.fixture
def make_item() -> Callable[..., ItemRecord]:
    def make(
        item_id: str, category_id: str | None = None, **overrides: Any
    ) -> ItemRecord:
        return ItemRecord(
            item_id=item_id, category_id=category_id, updated_at=START, **overrides
        )

    return make


@pytest.fixture
def make_promotion() -> Callable[..., PromotionRecord]:
    def make(promotion_id: str, **overrides: Any) -> PromotionRecord:
        fields: dict[str, Any] = {
            "promotion_id": promotion_id,
            "title": f"promotion {promotion_id}",
            "discount_percent": 10.0,
            "starts_at": START - timedelta(days=1),
            "ends_at": START + timedelta(days=1),
            "updated_at": START,
        }
        fields.update(overrides)
        return PromotionRecord(**fields)

    return make


@pytest.fixture
def settings() -> EvaluationSettings:
    """Evaluation settings that ignore the environment's variables."""
    return EvaluationSettings(
        cutoffs=(1, 2, 3),
        timeline_buckets=2,
        baselines=BaselineSettings(),
    )
