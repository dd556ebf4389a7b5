"""Recommendation slates published on ``recommendations.<surface>`` topics."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.events import EventType, Id, WireTime

__all__ = [
    "SLATE_SCHEMA_VERSION",
    "CandidateSource",
    "Slate",
    "SlateItem",
    "Surface",
]

SLATE_SCHEMA_VERSION: Literal[1] = 1


class Surface(StrEnum):
    """A place on the site that shows recommendations; one topic each."""

    PRODUCTS = "products"
    BUNDLES = "bundles"
    PROMOTIONS = "promotions"
    REVIEWS = "reviews"

    @property
    def topic_suffix(self) -> str:
        return self.value


class CandidateSource(StrEnum):
    """Origin of a candidate before ranking."""

    COVISITATION = "covisitation"
    SESSION_KNN = "session_knn"
    CO_CART = "co_cart"
    CO_PURCHASE = "co_purchase"
    CATEGORY_TRENDING = "category_trending"
    TRENDING = "trending"
    PROMOTION = "promotion"
    REVIEW = "review"


class SlateItem(BaseModel):
    """One ranked entry of a slate.

    ``item_id`` names the product on every surface. On the promotions surface
    ``promotion_id`` names the promotion, and ``item_id`` the user's best
    eligible item; on the reviews surface ``review_id`` names the review of the
    trigger item.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: Id
    rank: Annotated[int, Field(ge=1)]
    score: Annotated[float, Field(allow_inf_nan=False)]
    task_probs: dict[EventType, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=dict
    )
    source: CandidateSource
    promotion_id: Id | None = None
    review_id: Id | None = None


class Slate(BaseModel):
    """The ordered recommendations published for one triggering event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SLATE_SCHEMA_VERSION
    recommendation_id: Id
    surface: Surface
    user_id: Id
    trigger_event_id: Id
    context_item_id: Id | None = None
    items: list[SlateItem] = Field(max_length=200)
    model_version: Annotated[str, Field(min_length=1, max_length=128)]
    generated_at: WireTime
    latency_ms: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]

    @model_validator(mode="after")
    def _check_items(self) -> Slate:
        ranks = [entry.rank for entry in self.items]
        if ranks != list(range(1, len(ranks) + 1)):
            raise ValueError(
                f"slate ranks must be 1..{len(ranks)} in order, got {ranks}"
            )
        for entry in self.items:
            if self.surface is Surface.PROMOTIONS and entry.promotion_id is None:
                raise ValueError(
                    f"promotions slate entry {entry.rank} has no promotion_id"
                )
            if self.surface is Surface.REVIEWS and entry.review_id is None:
                raise ValueError(f"reviews slate entry {entry.rank} has no review_id")
        return self
