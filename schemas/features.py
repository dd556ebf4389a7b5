"""Feature names, windows and the Redis key layout: the one definition.

Every service that writes or reads features in Redis takes names and key
names from this module, so scoring, online learning and training cannot
drift apart.

Numeric features are flat ``dict[str, float]`` per entity, named
``<entity>_<measure>[_<window>]``:

- ``user_*``: the user's own history (counts per event type and window,
  recency, session, price level).
- ``item_*``: the item's popularity and conversion per window, catalog
  numbers (price, stock) and its decayed trending score.
- ``pair_*``: the user and the item together (affinity of the user for the
  item's category and brand, how the price compares with the user's usual
  price). They travel with the item's vector because they exist once per
  candidate.

Categorical ids (category, brand, session id) are never encoded as numbers
here; they are exposed on :class:`ItemAttributes` and :class:`UserProfile`.

Windowed counts use event time. A window of length W with buckets of width B
counts the events in the W / B buckets that end with the bucket of the
reference time. So the 1 h window is the current 5-minute bucket and the 11
before it, the 24 h window is 24 hour buckets, and the 7 d window 7 UTC days.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from schemas.events import EventType

__all__ = [
    "CANDIDATE_FEATURES",
    "EVENT_TYPE_CODES",
    "ITEM_FEATURES",
    "MAX_RECENT_ITEMS",
    "PAIR_FEATURES",
    "SESSION_IDLE_SECONDS",
    "USER_FEATURES",
    "WINDOWS",
    "FeatureKeys",
    "FeatureVectors",
    "CandidateMatrix",
    "ItemAttributes",
    "RecentItem",
    "UserProfile",
    "Window",
    "count_feature",
]

SESSION_IDLE_SECONDS = 30 * 60
"""A gap of more than this between two events of a user starts a new session."""

MAX_RECENT_ITEMS = 50
"""How many of the user's latest (item, event type) pairs are kept."""

EVENT_TYPE_CODES: dict[EventType, str] = {
    EventType.CLICK: "c",
    EventType.CART_ADD: "a",
    EventType.PURCHASE: "p",
}
"""One-letter codes of event types inside Redis values, to keep them small."""


@dataclass(frozen=True)
class Window:
    """A rolling event-time window made of fixed buckets.

    Attributes:
        name: suffix of the feature names, e.g. ``"1h"``.
        seconds: length of the window.
        bucket_seconds: width of one bucket; ``seconds`` is a multiple of it.
        code: one letter that marks this window's bucket fields in Redis.
    """

    name: str
    seconds: int
    bucket_seconds: int
    code: str

    @property
    def bucket_count(self) -> int:
        return self.seconds // self.bucket_seconds

    def bucket(self, timestamp: float) -> int:
        """Return the index of the bucket holding Unix time ``timestamp``."""
        return int(timestamp // self.bucket_seconds)


WINDOWS: tuple[Window, ...] = (
    Window("1h", 3600, 300, "m"),
    Window("24h", 86_400, 3600, "h"),
    Window("7d", 7 * 86_400, 86_400, "d"),
)
"""The rolling windows, shortest first. The last one is the longest."""


def count_feature(entity: str, event_type: EventType, window: Window) -> str:
    """Return the name of a windowed count, e.g. ``user_click_count_1h``."""
    return f"{entity}_{event_type.value}_count_{window.name}"


def _counts(entity: str) -> tuple[str, ...]:
    return tuple(
        count_feature(entity, event_type, window)
        for event_type in EventType
        for window in WINDOWS
    )


USER_FEATURES: tuple[str, ...] = (
    *_counts("user"),
    "user_event_count",
    "user_seconds_since_last_event",
    "user_session_event_count",
    "user_session_duration_seconds",
    "user_price_mean",
    "user_price_std",
    "user_purchased_item_count",
    "user_recent_item_count",
)
"""Numeric user features, in a fixed order (model input order)."""

ITEM_FEATURES: tuple[str, ...] = (
    *_counts("item"),
    "item_view_to_cart_rate_7d",
    "item_cart_to_purchase_rate_7d",
    "item_trending_score",
    "item_price",
    "item_stock",
    "item_is_in_stock",
    "item_is_consumable",
    "item_has_catalog",
    "item_review_count",
    "item_rating_mean",
)
"""Numeric item features, in a fixed order.

``item_view_to_cart_rate_7d`` is (cart adds + s * p) / (views + s). Here p is
the shop-wide rate over the same window and s the prior strength, so an item
without history gets the shop's rate instead of 0 or 1. Views are click events.
Catalog numbers without a catalog record are 0 and ``item_has_catalog`` is 0.
"""

PAIR_FEATURES: tuple[str, ...] = (
    "pair_category_affinity",
    "pair_brand_affinity",
    "pair_price_zscore",
    "pair_recent_event_count",
    "pair_is_purchased",
)
"""Numeric features of one user and one item, stored in the item's vector.

Affinities are the user's decayed event weights for the item's category and
brand divided by the user's strongest category (brand), so they lie in [0, 1].
"""

CANDIDATE_FEATURES: tuple[str, ...] = (*ITEM_FEATURES, *PAIR_FEATURES)
"""The numeric features of one candidate item for one user, in column order."""


class CandidateMatrix(Mapping[str, dict[str, float]]):
    """The numeric features of several candidates as one (C, F) array.

    Row ``r`` contains the features of ``item_ids[r]``, columns follow
    :data:`CANDIDATE_FEATURES`, and NaN marks a value that is missing. Scoring
    reads whole columns; reading it as a mapping builds one item's named
    features on access, for callers that want a dict.

    Args:
        item_ids: the candidates, without duplicates.
        values: shape (len(item_ids), len(CANDIDATE_FEATURES)), float64; kept
            as :attr:`array`.
    """

    names: tuple[str, ...] = CANDIDATE_FEATURES

    def __init__(self, item_ids: Sequence[str], values: np.ndarray) -> None:
        if values.shape != (len(item_ids), len(CANDIDATE_FEATURES)):
            raise ValueError(
                f"candidate values have shape {values.shape}; expected "
                f"({len(item_ids)}, {len(CANDIDATE_FEATURES)})"
            )
        self.item_ids: tuple[str, ...] = tuple(item_ids)
        self.array = values
        self._rows = {item_id: row for row, item_id in enumerate(self.item_ids)}
        if len(self._rows) != len(self.item_ids):
            raise ValueError("candidate item ids must be unique")

    @classmethod
    def from_mappings(
        cls, items: Mapping[str, Mapping[str, float]], item_ids: Sequence[str]
    ) -> CandidateMatrix:
        """Build the matrix of ``item_ids`` from per-item feature mappings.

        Returns ``items`` itself when it already is a matrix of those ids.
        Names outside :data:`CANDIDATE_FEATURES` are ignored and absent ones
        read NaN.
        """
        if isinstance(items, CandidateMatrix) and items.item_ids == tuple(item_ids):
            return items
        values = np.array(
            [
                [items[item_id].get(name, np.nan) for name in CANDIDATE_FEATURES]
                for item_id in item_ids
            ],
            dtype=np.float64,
        ).reshape(len(item_ids), len(CANDIDATE_FEATURES))
        return cls(item_ids, values)

    def column(self, name: str) -> np.ndarray:
        """Return one feature of every candidate, shape (C,)."""
        return self.array[:, _CANDIDATE_COLUMNS[name]]

    def __getitem__(self, item_id: str) -> dict[str, float]:
        row = self.array[self._rows[item_id]].tolist()
        return dict(zip(CANDIDATE_FEATURES, row, strict=True))

    def __iter__(self) -> Iterator[str]:
        return iter(self.item_ids)

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows


_CANDIDATE_COLUMNS = {name: column for column, name in enumerate(CANDIDATE_FEATURES)}


@dataclass(frozen=True)
class RecentItem:
    """One of the user's latest interactions, newest first in lists."""

    item_id: str
    event_type: EventType


@dataclass(frozen=True)
class UserProfile:
    """Categorical and list-valued user state that is not a number.

    Attributes:
        user_id: the user.
        session_id: ``"<user_id>:<session start Unix seconds>"``, or None
            before the first event.
        last_event_time: Unix seconds of the newest event applied.
        category_affinity: decayed weight per category id, strongest first,
            at most a few entries.
        brand_affinity: decayed weight per brand, strongest first.
        recent_items: latest interactions, newest first.
        purchased_items: ids of items bought, newest first.
    """

    user_id: str
    session_id: str | None = None
    last_event_time: float | None = None
    category_affinity: dict[str, float] = field(default_factory=dict)
    brand_affinity: dict[str, float] = field(default_factory=dict)
    recent_items: tuple[RecentItem, ...] = ()
    purchased_items: tuple[str, ...] = ()


@dataclass(frozen=True)
class ItemAttributes:
    """Catalog attributes of an item; None where the catalog has no value."""

    item_id: str
    category_id: str | None = None
    brand: str | None = None
    price: float | None = None
    stock: int | None = None
    is_consumable: bool = False

    @property
    def is_in_stock(self) -> bool:
        """True unless the catalog reports a stock of 0 (unknown counts as in stock)."""
        return self.stock is None or self.stock > 0


@dataclass(frozen=True)
class FeatureVectors:
    """Features of one user and a list of candidate items at one moment.

    Attributes:
        user: numeric user features, keys from :data:`USER_FEATURES`.
        items: per item id, numeric item features (:data:`ITEM_FEATURES`)
            plus the pair features (:data:`PAIR_FEATURES`); the scorer's
            store returns a :class:`CandidateMatrix`.
        attributes: per item id, its catalog attributes.
        profile: the user's categorical state.
        reference_time: Unix seconds the windows were computed at.
    """

    user: dict[str, float]
    items: Mapping[str, Mapping[str, float]]
    attributes: dict[str, ItemAttributes]
    profile: UserProfile
    reference_time: float


class FeatureKeys:
    """Redis key names, all under one prefix.

    Keys of one user share the hash tag ``{u:<user_id>}``, keys of one item
    ``{i:<item_id>}``, and global keys ``{g}``, so each entity maps to one
    Redis Cluster slot.

    Args:
        prefix: the configured key prefix, e.g. ``"cw"``.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def user(self, user_id: str) -> str:
        """Hash with the state of one user (counts, session, recent items, dedupe)."""
        return f"{self.prefix}:{{u:{user_id}}}"

    def user_outbox(self, user_id: str) -> str:
        """String with the user's item and global updates not yet applied.

        It exists only between the two steps of applying a batch, or after a
        crash between them.
        """
        return f"{self.prefix}:{{u:{user_id}}}:outbox"

    def item(self, item_id: str) -> str:
        """Hash with the event-driven state of one item (counts, trending)."""
        return f"{self.prefix}:{{i:{item_id}}}"

    def item_catalog(self, item_id: str) -> str:
        """Hash with the catalog attributes of one item."""
        return f"{self.prefix}:{{i:{item_id}}}:cat"

    def item_reviews(self, item_id: str) -> str:
        """Hash of review id to review JSON for one item."""
        return f"{self.prefix}:{{i:{item_id}}}:rev"

    def covisited(self, item_id: str) -> str:
        """Sorted set of items viewed in the same sessions as this one."""
        return f"{self.prefix}:{{i:{item_id}}}:cv"

    def co_cart(self, item_id: str) -> str:
        """Sorted set of items added to the cart in the same sessions."""
        return f"{self.prefix}:{{i:{item_id}}}:cc"

    def co_purchase(self, item_id: str) -> str:
        """Sorted set of items bought in the same sessions."""
        return f"{self.prefix}:{{i:{item_id}}}:cp"

    def trending(self) -> str:
        """Sorted set of items by decayed, weighted event count, shop-wide."""
        return f"{self.prefix}:{{g}}:trend"

    def trending_in_category(self, category_id: str) -> str:
        """Sorted set of the items of one category by decayed event count."""
        return f"{self.prefix}:{{g}}:trend:{category_id}"

    def totals(self) -> str:
        """Hash of shop-wide event counts per bucket (the smoothing priors)."""
        return f"{self.prefix}:{{g}}:totals"

    def promotions(self) -> str:
        """Hash of promotion id to promotion JSON."""
        return f"{self.prefix}:{{g}}:promotions"

    def review_items(self) -> str:
        """Hash of review id to item id, to find a review from its tombstone."""
        return f"{self.prefix}:{{g}}:review-items"

    def catalog_loaded(self) -> str:
        """Hash of ``<topic>:<partition>`` to the partition's catalog state.

        The hash has no TTL, so it vanishes only with the rest of the data,
        as after a FLUSHALL or a restart without persistence. The catalog
        consumer then reads its partitions again from the start.
        """
        return f"{self.prefix}:{{g}}:catalog:loaded"

    def pattern(self) -> str:
        """Glob pattern matching every key under the prefix (for SCAN)."""
        return f"{self.prefix}:*"
