"""Recommendation slates published on ``recommendations.<surface>`` topics."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    model_validator,
)
from pydantic_core import CoreSchema, core_schema

from schemas.events import EventType, Id, SchemaVersion, WireInt, WireTime

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


class _AsString:
    """Serialize a ``StrEnum`` member as the string it already is.

    The JSON is the same as pydantic's enum serializer writes, but that
    serializer reads each member's ``value``, a Python-level property, which
    costs as much as the rest of a slate item's serialization together.
    Validation, ``model_dump()`` (members stay members) and the JSON Schema
    are unchanged.
    """

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        # A copy, because the enum's own schema is shared with other models.
        schema = dict(handler(source))
        schema["serialization"] = core_schema.simple_ser_schema("str")
        return schema


_TaskName = Annotated[EventType, _AsString()]
_Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class SlateItem(BaseModel):
    """One ranked entry of a slate.

    ``item_id`` names the product on every surface. On the promotions surface
    ``promotion_id`` names the promotion, and ``item_id`` the user's best
    eligible item; on the reviews surface ``review_id`` names the review of the
    trigger item.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: Id
    rank: Annotated[int, Field(ge=1), WireInt]
    score: Annotated[float, Field(allow_inf_nan=False)]
    task_probs: dict[_TaskName, _Probability] = Field(default_factory=dict)
    source: Annotated[CandidateSource, _AsString()]
    promotion_id: Id | None = None
    review_id: Id | None = None


class Slate(BaseModel):
    """The ordered recommendations published for one triggering event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: SchemaVersion = SLATE_SCHEMA_VERSION
    recommendation_id: Id
    surface: Annotated[Surface, _AsString()]
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
        # Products and bundles need no id besides item_id, so their items are
        # not walked again.
        if self.surface is Surface.PROMOTIONS:
            for entry in self.items:
                if entry.promotion_id is None:
                    raise ValueError(
                        f"promotions slate entry {entry.rank} has no promotion_id"
                    )
        elif self.surface is Surface.REVIEWS:
            for entry in self.items:
                if entry.review_id is None:
                    raise ValueError(
                        f"reviews slate entry {entry.rank} has no review_id"
                    )
        return self
