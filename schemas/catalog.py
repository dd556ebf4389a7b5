"""Catalog records on the compacted ``catalog`` topic: items, promotions, reviews.

Each record is keyed by its entity key (``item:<id>``, ``promotion:<id>``,
``review:<id>``). A record with a null value (a tombstone) deletes the entity.
The key's kind picks the model: ``record_type`` is optional, as in the JSON
Schemas, and a record without it is of the kind that its key names.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.events import Id, SchemaVersion, WireInt, WireTime

__all__ = [
    "CATALOG_SCHEMA_VERSION",
    "RECORD_MODELS",
    "CatalogRecord",
    "ItemRecord",
    "PromotionRecord",
    "ReviewRecord",
    "catalog_key",
]

CATALOG_SCHEMA_VERSION: Literal[1] = 1

Price = Annotated[float, Field(ge=0.0, le=1e9, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0), WireInt]


class ItemRecord(BaseModel):
    """Catalog attributes of one item."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: SchemaVersion = CATALOG_SCHEMA_VERSION
    record_type: Literal["item"] = "item"
    item_id: Id
    category_id: Id | None = None
    category_path: Annotated[str, Field(max_length=512)] | None = None
    brand: Annotated[str, Field(max_length=128)] | None = None
    price: Price | None = None
    stock: Count | None = None
    is_consumable: bool = False
    updated_at: WireTime


class PromotionRecord(BaseModel):
    """A promotion with a validity window and an eligibility rule.

    An empty eligibility list means "no restriction on that attribute"; a
    promotion with all three lists empty applies to the whole shop.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: SchemaVersion = CATALOG_SCHEMA_VERSION
    record_type: Literal["promotion"] = "promotion"
    promotion_id: Id
    title: Annotated[str, Field(min_length=1, max_length=256)]
    discount_percent: Annotated[float, Field(gt=0.0, le=100.0)]
    starts_at: WireTime
    ends_at: WireTime
    category_ids: list[Id] = Field(default_factory=list, max_length=256)
    brands: list[Annotated[str, Field(max_length=128)]] = Field(
        default_factory=list, max_length=256
    )
    item_ids: list[Id] = Field(default_factory=list, max_length=1024)
    is_generated: bool = False
    updated_at: WireTime

    @model_validator(mode="after")
    def _check_window(self) -> PromotionRecord:
        if self.ends_at <= self.starts_at:
            raise ValueError(
                f"promotion {self.promotion_id!r} ends_at={self.ends_at.isoformat()} "
                f"is not after starts_at={self.starts_at.isoformat()}"
            )
        return self


class ReviewRecord(BaseModel):
    """A customer review of one item."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: SchemaVersion = CATALOG_SCHEMA_VERSION
    record_type: Literal["review"] = "review"
    review_id: Id
    item_id: Id
    rating: Annotated[int, Field(ge=1, le=5), WireInt]
    helpful_votes: Count = 0
    unhelpful_votes: Count = 0
    title: Annotated[str, Field(max_length=256)] | None = None
    body_length: Count = 0
    created_at: WireTime
    is_generated: bool = False
    updated_at: WireTime


CatalogRecord = ItemRecord | PromotionRecord | ReviewRecord

# The model of each key kind; schemas.validation.parse_catalog_record reads a
# message value with the model that its key names.
RECORD_MODELS: dict[str, type[CatalogRecord]] = {
    "item": ItemRecord,
    "promotion": PromotionRecord,
    "review": ReviewRecord,
}


def catalog_key(record: CatalogRecord) -> str:
    """Return the compaction key of a catalog record."""
    if isinstance(record, ItemRecord):
        return f"item:{record.item_id}"
    if isinstance(record, PromotionRecord):
        return f"promotion:{record.promotion_id}"
    return f"review:{record.review_id}"
