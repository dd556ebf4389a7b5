"""Rolling features in Redis: apply events and read feature vectors.

:class:`FeatureStore` is the one way to write and read the features named in
:mod:`schemas.features`. The hot path calls :meth:`FeatureStore.apply_batch`;
scoring and training call :meth:`FeatureStore.read` and the candidate reads.

How a batch is applied (three round trips):

1. read the catalog attributes of the batch's items and the shop-wide totals;
2. one ``apply_user.lua`` call per user (pipelined) applies that user's events
   in order, records their ids and returns the user's state before each event,
   plus an outbox of item and global updates still to do;
3. one ``fan_out.lua`` call applies every outbox entry to the items, the
   item-to-item lists and the trending lists, clears the outboxes and returns
   each item's counts before its event. A worker thread waits for it while
   the calling thread computes the user and pair features.

Exactly once in effect: for every event id, the user, item, item-to-item and
global state changes once, however often the event is delivered, as long as a
repeat arrives within the dedupe horizon (the user's last ``dedupe_size``
event ids). Step 2 is atomic per user, step 3 atomic per batch, and an entry
stays in the outbox until step 3 applied it, so a crash between the steps
loses nothing and counts nothing twice. TTLs, the before-snapshots of repeated
events and anything outside Redis are not covered.
"""

from __future__ import annotations

from services.common.redis_features.config import (
    AppliedResult,
    EventPosition,
    EventStatus,
    FeatureStoreConfig,
)
from services.common.redis_features.store import FeatureStore
from services.common.redis_features.vectors import (
    _attributes,
    _decode_map,
    _id_list,
    _profile,
    attributes_from_catalog,
    decayed,
    decode_hash,
    decode_hash_reply,
    event_digest,
    id_list,
    item_features,
    item_features_with_shop,
    pair_features,
    profile_from_hash,
    shop_counts,
    user_features,
)

# The underscored names stay importable for code written before the public
# aliases existed.
__all__ = [
    "AppliedResult",
    "EventPosition",
    "EventStatus",
    "FeatureStore",
    "FeatureStoreConfig",
    "_attributes",
    "_decode_map",
    "_id_list",
    "_profile",
    "attributes_from_catalog",
    "decayed",
    "decode_hash",
    "decode_hash_reply",
    "event_digest",
    "id_list",
    "item_features",
    "item_features_with_shop",
    "pair_features",
    "profile_from_hash",
    "shop_counts",
    "user_features",
]
