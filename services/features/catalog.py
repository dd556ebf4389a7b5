"""Catalog records in Redis: items, promotions and reviews from the ``catalog`` topic.

Items go to the item's catalog hash, where the feature store reads category,
brand, price, stock and the review summary. Promotions go to one hash of
promotion JSON, reviews to one hash per item plus an index from review id to
item id (a review tombstone carries no item id). A record with a null value
deletes its entity.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, cast

import redis

from schemas.catalog import (
    RECORD_MODELS,
    CatalogRecord,
    ItemRecord,
    PromotionRecord,
    ReviewRecord,
    catalog_key,
)
from schemas.features import FeatureKeys
from schemas.validation import Rejection, parse_catalog_record
from services.features.errors import CatalogKeyError, CatalogRecordError

__all__ = ["CatalogWriter", "parse_catalog_key", "parse_catalog_message"]

logger = logging.getLogger(__name__)

# KEYS[1] the item's review hash, KEYS[2] the item's catalog hash.
# ARGV[1] review id, ARGV[2] review JSON or '' to delete it, ARGV[3] TTL.
# Stores or deletes the review and recomputes the item's review count and
# rating sum, atomically.
_REVIEW_SCRIPT = """
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
local count, total = 0, 0
for _, raw in ipairs(redis.call('HVALS', KEYS[1])) do
  count = count + 1
  total = total + cjson.decode(raw)['rating']
end
if count == 0 then
  redis.call('HDEL', KEYS[2], 'rn', 'rs')
else
  redis.call('HSET', KEYS[2], 'rn', count, 'rs', total)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return count
"""


def parse_catalog_key(key: bytes | str | None) -> tuple[str, str]:
    """Split a catalog key such as ``item:42`` into its kind and entity id.

    Raises:
        CatalogKeyError: the key is missing or its kind is not item,
            promotion or review.
    """
    text = key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key
    kind, _, entity_id = (text or "").partition(":")
    if kind not in RECORD_MODELS or not entity_id:
        raise CatalogKeyError(
            f"catalog key {text!r} is invalid; expected 'item:<id>', "
            "'promotion:<id>' or 'review:<id>'"
        )
    return kind, entity_id


def parse_catalog_message(
    key: bytes | str | None, value: bytes | str | None
) -> tuple[str, str, CatalogRecord | None]:
    """Validate one ``catalog`` message against the record that its key names.

    Returns:
        The key's kind and entity id, and the record; None for a tombstone.

    Raises:
        CatalogKeyError: the key is invalid, or names another record than the
            value holds.
        CatalogRecordError: the value is not a valid record of the key's kind.
    """
    kind, entity_id = parse_catalog_key(key)
    if value is None:
        return kind, entity_id, None
    record = parse_catalog_record(kind, value)
    if isinstance(record, Rejection):
        raise CatalogRecordError(record)
    # A compacted topic keeps the newest record per key, so a record under
    # another entity's key would come back on every re-read of the topic.
    expected_key = catalog_key(record)
    if expected_key != f"{kind}:{entity_id}":
        raise CatalogKeyError(
            f"catalog key {kind}:{entity_id} contains the record of "
            f"{expected_key!r}; expected the key to name the record's id"
        )
    return kind, entity_id, record


class CatalogWriter:
    """Stores catalog records in Redis under the feature store's key layout.

    Args:
        client: a Redis client.
        key_prefix: the prefix of every key.
        ttl_seconds: how long a record lives after its last update; the
            feature store renews item records on every event of the item.
    """

    def __init__(
        self, client: redis.Redis, key_prefix: str, ttl_seconds: int = 30 * 86_400
    ) -> None:
        self.client = client
        self.keys = FeatureKeys(key_prefix)
        self.ttl_seconds = ttl_seconds
        self._review_script = client.register_script(_REVIEW_SCRIPT)

    def apply(self, key: bytes | str | None, value: bytes | str | None) -> None:
        """Store one catalog message, or delete its entity when ``value`` is None.

        Raises:
            CatalogKeyError: the key is invalid or names another record.
            CatalogRecordError: the value is not a valid record of the key's
                kind; its ``rejection`` names the fault.
        """
        kind, entity_id, record = parse_catalog_message(key, value)
        if record is None:
            self.delete(kind, entity_id)
        else:
            self.write(record)

    def write(self, record: CatalogRecord) -> None:
        """Store one record, replacing the previous version of its entity."""
        if isinstance(record, ItemRecord):
            self._write_item(record)
        elif isinstance(record, PromotionRecord):
            self._write_promotion(record)
        else:
            self._write_review(record)

    def delete(self, kind: str, entity_id: str) -> None:
        """Delete an item, promotion or review (a tombstone on the topic)."""
        if kind == "item":
            self.client.delete(self.keys.item_catalog(entity_id))
        elif kind == "promotion":
            self.client.hdel(self.keys.promotions(), entity_id)
        else:
            item_id = self.client.hget(self._review_index(), entity_id)
            if item_id is not None:
                self._run_review(_text(item_id), entity_id, "")
                self.client.hdel(self._review_index(), entity_id)
        logger.debug("catalog entity deleted kind=%s id=%s", kind, entity_id)

    def _write_promotion(self, record: PromotionRecord) -> None:
        # All promotions share one hash. It lives for the TTL after the last
        # write and at least until the latest ends_at written to it, so a
        # promotion that runs for months does not vanish with the TTL.
        key = self.keys.promotions()
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, record.promotion_id, record.model_dump_json())
        pipe.ttl(key)
        _, remaining = pipe.execute()
        until_end = math.ceil(record.ends_at.timestamp() - time.time())
        self.client.expire(key, max(self.ttl_seconds, until_end, int(remaining)))

    def _write_item(self, record: ItemRecord) -> None:
        values: dict[str, str | int | None] = {
            "category": record.category_id,
            "brand": record.brand,
            "price": None if record.price is None else repr(record.price),
            "stock": record.stock,
            "consumable": "1" if record.is_consumable else "0",
        }
        key = self.keys.item_catalog(record.item_id)
        pipe = self.client.pipeline(transaction=True)
        present: dict[str | bytes, str | int] = {
            name: value for name, value in values.items() if value is not None
        }
        absent = [name for name, value in values.items() if value is None]
        pipe.hset(key, mapping=cast(Any, present))
        if absent:
            pipe.hdel(key, *absent)
        pipe.expire(key, self.ttl_seconds)
        pipe.execute()

    def _write_review(self, record: ReviewRecord) -> None:
        index = self._review_index()
        previous = self.client.hget(index, record.review_id)
        if previous is not None and _text(previous) != record.item_id:
            self._run_review(_text(previous), record.review_id, "")
        self._run_review(record.item_id, record.review_id, record.model_dump_json())
        self.client.hset(index, record.review_id, record.item_id)
        self.client.expire(index, self.ttl_seconds)

    def _run_review(self, item_id: str, review_id: str, value: str) -> None:
        self._review_script(
            keys=[self.keys.item_reviews(item_id), self.keys.item_catalog(item_id)],
            args=[review_id, value, self.ttl_seconds],
        )

    def _review_index(self) -> str:
        return self.keys.review_items()


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
