"""The catalog facts the evaluator needs: categories, brands, promotion rules."""

from __future__ import annotations

import sys

from schemas.catalog import ItemRecord, PromotionRecord, ReviewRecord
from services.evaluation.records import PromotionRule, promotion_rule

__all__ = ["CatalogView"]


class CatalogView:
    """The latest catalog record per key, reduced to what scoring reads.

    Records are applied in topic order, so a later record of a key replaces an
    earlier one and a tombstone deletes it, as compaction would.
    """

    def __init__(self) -> None:
        self.categories: dict[str, str] = {}
        self.brands: dict[str, str] = {}
        self.items: set[str] = set()
        self.promotions: dict[str, PromotionRule] = {}

    def apply(self, record: ItemRecord | PromotionRecord | ReviewRecord) -> None:
        """Store one record, replacing an earlier record of the same key."""
        if isinstance(record, ItemRecord):
            self._apply_item(record)
        elif isinstance(record, PromotionRecord):
            self.promotions[record.promotion_id] = promotion_rule(record)
        # Reviews slates are matched on their item ids, so review records add
        # nothing that scoring needs.

    def delete(self, key: str) -> None:
        """Apply a tombstone for a compaction key such as ``item:<id>``."""
        record_type, _, entity_id = key.partition(":")
        if record_type == "item":
            self.items.discard(entity_id)
            self.categories.pop(entity_id, None)
            self.brands.pop(entity_id, None)
        elif record_type == "promotion":
            self.promotions.pop(entity_id, None)

    def _apply_item(self, record: ItemRecord) -> None:
        item_id = sys.intern(record.item_id)
        self.items.add(item_id)
        category = record.category_id or record.category_path
        if category is None:
            self.categories.pop(item_id, None)
        else:
            self.categories[item_id] = sys.intern(category)
        if record.brand is None:
            self.brands.pop(item_id, None)
        else:
            self.brands[item_id] = sys.intern(record.brand)
