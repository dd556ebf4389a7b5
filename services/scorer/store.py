"""The Redis feature store seen through the scoring stage's batch reads.

:class:`RedisCandidateStore` implements :class:`CandidateStore` on the keys
and feature functions of :mod:`services.common.redis_features`. Every method
reads what the whole batch needs in one pipelined round trip. Item vectors
(without the user-item pair features) and catalog attributes are cached in
process for a short TTL, because the same popular items are candidates for
many users within a second.
"""

from __future__ import annotations

import functools
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any, NamedTuple

import numpy as np
from pydantic import TypeAdapter

from schemas.catalog import PromotionRecord, ReviewRecord
from schemas.features import (
    ITEM_FEATURES,
    PAIR_FEATURES,
    CandidateMatrix,
    FeatureVectors,
    ItemAttributes,
    UserProfile,
)
from services.common.redis_features import (
    FeatureStore,
    attributes_from_catalog,
    decayed,
    decode_hash_reply,
    item_features_with_shop,
    profile_from_hash,
    shop_counts,
    user_features,
)
from services.common.redis_pipeline import Command, run_pipelined
from services.scorer.protocols import Relation, UserHistory

__all__ = ["RedisCandidateStore"]

_PROMOTIONS = TypeAdapter(PromotionRecord)
_MAX_PRICE_ZSCORE = 5.0
_REVIEWS = TypeAdapter(ReviewRecord)
_WIDTH = len(ITEM_FEATURES) + len(PAIR_FEATURES)
_ITEM_ID = attrgetter("item_id")
_CATEGORY = attrgetter("category")
_BRAND = attrgetter("brand")
# The NaN defaults of an item row, one per name in ITEM_FEATURES.
_MISSING_ITEM_FEATURES = (math.nan,) * len(ITEM_FEATURES)

State = dict[str, str]


class _CachedItem(NamedTuple):
    # A named tuple, not a frozen dataclass, because every item read builds
    # one and a named tuple is faster to build.
    vector: dict[str, float]
    catalog: State
    attributes: ItemAttributes
    expires_at: float
    row: tuple[float, ...] = ()
    price: float | None = None
    category: str | None = None
    brand: str | None = None

    @classmethod
    def of(
        cls,
        vector: dict[str, float],
        catalog: State,
        attributes: ItemAttributes,
        expires_at: float,
    ) -> _CachedItem:
        """Cache an item, parsing the catalog fields that pair features read."""
        price = float(catalog["price"]) if "price" in catalog else None
        return cls(
            vector,
            catalog,
            attributes,
            expires_at,
            tuple(map(vector.get, ITEM_FEATURES, _MISSING_ITEM_FEATURES)),
            price,
            catalog.get("category"),
            catalog.get("brand"),
        )


class _PromotionsRead(NamedTuple):
    expires_at: float
    raw: list[Any]
    promotions: list[PromotionRecord]


class _PairContext:
    """One user's state parsed once, to compute pair features for many items.

    Computes exactly what :func:`services.common.redis_features.pair_features`
    computes (a unit test keeps the two equal), without re-reading the whole
    user hash for every candidate.
    """

    def __init__(self, state: State, profile: UserProfile) -> None:
        # The profile contains the user's affinities and item lists, already
        # parsed from the same hash.
        self._categories = profile.category_affinity
        self._brands = profile.brand_affinity
        self._strongest_category = max(self._categories.values(), default=0.0)
        self._strongest_brand = max(self._brands.values(), default=0.0)
        self._recent = Counter(map(_ITEM_ID, profile.recent_items))
        self._purchased = set(profile.purchased_items)
        count = float(state.get("pn", 0.0))
        self._price_count = count
        self._price_mean = float(state.get("ps", 0.0)) / count if count else 0.0
        self._price_std = (
            math.sqrt(
                max(float(state.get("pq", 0.0)) / count - self._price_mean**2, 0.0)
            )
            if count
            else 0.0
        )

    def features(self, item_id: str, item: _CachedItem) -> dict[str, float]:
        """Return the pair features of this user and one cached item."""
        [row] = self.columns([item_id], [item]).tolist()
        return dict(zip(PAIR_FEATURES, row, strict=True))

    def columns(
        self, item_ids: Sequence[str], items: Sequence[_CachedItem]
    ) -> np.ndarray:
        """Return the (C, 5) pair features of cached items, in ``PAIR_FEATURES`` order.

        Each feature is one pass over the items, and a feature that the user's
        history leaves at 0 for every item (no affinities, fewer than two
        prices, no recent or purchased items) is not computed at all.
        """
        columns = np.zeros((len(items), len(PAIR_FEATURES)))
        # Written as "not <= 0" so that a NaN weight divides as before.
        if not self._strongest_category <= 0.0:
            columns[:, 0] = _affinities(
                self._categories,
                self._strongest_category,
                list(map(_CATEGORY, items)),
            )
        if not self._strongest_brand <= 0.0:
            columns[:, 1] = _affinities(
                self._brands, self._strongest_brand, list(map(_BRAND, items))
            )
        if self._price_count >= 2:
            mean = self._price_mean
            scale = max(self._price_std, 1e-6 + 0.01 * mean)
            zscores = [
                (item.price - mean) / scale if item.price is not None else 0.0
                for item in items
            ]
            # fmin and fmax return the bound for a NaN, as min and max do here.
            columns[:, 2] = np.fmax(
                np.fmin(zscores, _MAX_PRICE_ZSCORE), -_MAX_PRICE_ZSCORE
            )
        if self._recent:
            columns[:, 3] = list(map(self._recent.get, item_ids, repeat(0)))
        if self._purchased:
            columns[:, 4] = list(map(self._purchased.__contains__, item_ids))
        return columns


def _affinities(
    weights: Mapping[str, float], strongest: float, names: Sequence[str | None]
) -> list[float]:
    return [weights.get(name, 0.0) / strongest if name else 0.0 for name in names]


class RedisCandidateStore:
    """Batch reads of candidate sources and features from the Redis feature store.

    Args:
        features: the feature store (its client, key layout and tuning).
        cache_ttl_seconds: how long an item's vector and catalog stay cached;
            0 turns the cache off.
        cache_size: the maximum number of cached items; the oldest is evicted first.
        clock: monotonic seconds for cache expiry.
    """

    def __init__(
        self,
        features: FeatureStore,
        *,
        cache_ttl_seconds: float = 5.0,
        cache_size: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._features = features
        self._client = features.client
        self._keys = features.keys
        self._config = features.config
        self._ttl = cache_ttl_seconds
        self._cache_size = cache_size
        self._clock = clock
        self._items: OrderedDict[str, _CachedItem] = OrderedDict()
        self._promotions: _PromotionsRead | None = None
        self._user_states: dict[str, State] = {}
        self._profiles: dict[str, UserProfile] = {}
        self._batch_items: dict[str, _CachedItem] = {}
        self.now: float | None = None

    def begin_batch(self, at: float) -> None:
        """Set the event time (Unix s) that decays and windows are evaluated at.

        User states and items read during a batch are kept until the next
        batch, because features were applied before the batch started and
        cannot change in it. So an item read for candidate generation is not
        read again for its features, even with the item cache off.
        """
        self.now = at
        self._user_states = {}
        self._profiles = {}
        self._batch_items = {}

    def user_histories(self, user_ids: Sequence[str]) -> dict[str, UserHistory]:
        """Return the recent items, purchases and category affinity of each user."""
        states = self._read_users(user_ids)
        histories = {}
        for user_id in user_ids:
            profile = self._profile(user_id, states[user_id])
            histories[user_id] = UserHistory(
                recent=profile.recent_items,
                purchased=frozenset(profile.purchased_items),
                category_affinity=profile.category_affinity,
                last_event_time=profile.last_event_time,
            )
        return histories

    def neighbours(
        self, relation: Relation, item_ids: Sequence[str], limit: int
    ) -> dict[str, list[tuple[str, float]]]:
        """Return each item's neighbours with decayed weights, best first."""
        key_of = {
            Relation.COVISITATION: self._keys.covisited,
            Relation.CO_CART: self._keys.co_cart,
            Relation.CO_PURCHASE: self._keys.co_purchase,
        }[relation]
        replies = self._ranges([key_of(item_id) for item_id in item_ids], limit)
        return {
            item_id: self._decayed(reply, self._config.pair_tau_seconds)
            for item_id, reply in zip(item_ids, replies, strict=True)
        }

    def trending(
        self, category_ids: Sequence[str | None], limit: int
    ) -> dict[str | None, list[tuple[str, float]]]:
        """Return trending items per category (``None``: the whole shop)."""
        keys = [
            self._keys.trending()
            if category is None
            else self._keys.trending_in_category(category)
            for category in category_ids
        ]
        replies = self._ranges(keys, limit)
        return {
            category: self._decayed(reply, self._config.trend_tau_seconds)
            for category, reply in zip(category_ids, replies, strict=True)
        }

    def item_attributes(self, item_ids: Sequence[str]) -> dict[str, ItemAttributes]:
        """Return catalog attributes, from the cache where fresh."""
        return {
            item_id: cached.attributes
            for item_id, cached in self._cached_items(item_ids).items()
        }

    def read_features(
        self, requests: Sequence[tuple[str, Sequence[str]]]
    ) -> list[FeatureVectors]:
        """Return user and item vectors for each request, reading Redis once.

        Windows are evaluated at each user's newest event time (the trigger).
        Cached item vectors were computed at an earlier reference time of at
        most ``cache_ttl_seconds`` of wall time ago.
        """
        states = self._read_users(list(dict.fromkeys(user for user, _ in requests)))
        all_items = list(dict.fromkeys(i for _, items in requests for i in items))
        items = self._cached_items(all_items)

        # The batch's candidates overlap, so each distinct item's row becomes
        # an array row once and every request gathers its rows from there.
        position = {item_id: row for row, item_id in enumerate(items)}
        item_values = np.array(
            [item.row for item in items.values()], dtype=np.float64
        ).reshape(len(items), len(ITEM_FEATURES))

        results = []
        for user_id, item_ids in requests:
            state = states[user_id]
            profile = self._profile(user_id, state)
            at = float(state["lt"]) if "lt" in state else (self.now or 0.0)
            unique = list(dict.fromkeys(item_ids))
            cached = list(map(items.__getitem__, unique))
            values = np.empty((len(unique), _WIDTH), dtype=np.float64)
            if unique:
                rows = list(map(position.__getitem__, unique))
                values[:, : len(ITEM_FEATURES)] = item_values[rows]
                pairs = _PairContext(state, profile)
                values[:, len(ITEM_FEATURES) :] = pairs.columns(unique, cached)
            results.append(
                FeatureVectors(
                    user=user_features(state, at, self._config),
                    items=CandidateMatrix(unique, values),
                    attributes={
                        item_id: item.attributes
                        for item_id, item in zip(unique, cached, strict=True)
                    },
                    profile=profile,
                    reference_time=at,
                )
            )
        return results

    def _profile(self, user_id: str, state: State) -> UserProfile:
        # Candidate generation and the feature read both use the profile, so it
        # is built once per user and batch.
        profile = self._profiles.get(user_id)
        if profile is None:
            profile = self._profiles[user_id] = profile_from_hash(user_id, state)
        return profile

    def _read_users(self, user_ids: Sequence[str]) -> dict[str, State]:
        missing = [user_id for user_id in user_ids if user_id not in self._user_states]
        if missing:
            user_key = self._keys.user
            replies = run_pipelined(
                self._client, [("HGETALL", user_key(user_id)) for user_id in missing]
            )
            for user_id, reply in zip(missing, replies, strict=True):
                self._user_states[user_id] = decode_hash_reply(reply)
        return {user_id: self._user_states[user_id] for user_id in user_ids}

    def promotions(self) -> list[PromotionRecord]:
        """Return every known promotion, re-read at most once per cache TTL."""
        now = self._clock()
        read = self._promotions
        if read is not None and read.expires_at > now:
            return read.promotions
        raw = self._client.hvals(self._keys.promotions())
        # Promotions rarely change, so unchanged values are not validated again
        # and callers get the same list back.
        if read is not None and read.raw == raw:
            promotions = read.promotions
        else:
            promotions = sorted(
                (_PROMOTIONS.validate_json(value) for value in raw),
                key=lambda promotion: promotion.promotion_id,
            )
        self._promotions = _PromotionsRead(now + self._ttl, raw, promotions)
        return promotions

    def reviews(self, item_ids: Sequence[str]) -> dict[str, list[ReviewRecord]]:
        """Return the reviews of each item."""
        replies = run_pipelined(
            self._client,
            [("HVALS", self._keys.item_reviews(item_id)) for item_id in item_ids],
        )
        return {
            item_id: [_review(value) for value in reply]
            for item_id, reply in zip(item_ids, replies, strict=True)
        }

    def _ranges(self, keys: Sequence[str], limit: int) -> list[Any]:
        stop = limit - 1
        return run_pipelined(
            self._client,
            [("ZREVRANGE", key, 0, stop, "WITHSCORES") for key in keys],
        )

    def _decayed(self, reply: Any, tau: float) -> list[tuple[str, float]]:
        # In RESP3 a raw reply is a list of [member, score] pairs, and in RESP2
        # it alternates member and score. Scores are log-weights relative to
        # the store's anchor time, so evaluating them at the batch's time makes
        # weights comparable across lists.
        if not reply:
            return []
        if isinstance(reply[0], list):
            members = [_text(member) for member, _ in reply]
            scores = [float(score) for _, score in reply]
        else:
            members = [_text(member) for member in reply[::2]]
            scores = [float(score) for score in reply[1::2]]
        at = self.now
        offset = (at - self._config.anchor) / tau if at is not None else max(scores)
        return [
            (member, decayed(score, offset))
            for member, score in zip(members, scores, strict=True)
        ]

    def _cached_items(self, item_ids: Sequence[str]) -> dict[str, _CachedItem]:
        now = self._clock()
        batch = self._batch_items
        found: dict[str, _CachedItem] = {}
        missing = []
        for item_id in dict.fromkeys(item_ids):
            cached = batch.get(item_id)
            if cached is None:
                cached = self._items.get(item_id)
                if cached is None or cached.expires_at <= now:
                    missing.append(item_id)
                    continue
                batch[item_id] = cached
            found[item_id] = cached
        if not missing:
            return found
        keys = self._keys
        commands: list[Command] = [("HGETALL", keys.totals())]
        for item_id in missing:
            commands.append(("HGETALL", keys.item(item_id)))
            commands.append(("HGETALL", keys.item_catalog(item_id)))
        replies = run_pipelined(self._client, commands)
        at = self.now or 0.0
        # The shop-wide counts are the priors of every item's rates.
        shop = shop_counts(decode_hash_reply(replies[0]), at)
        for index, item_id in enumerate(missing):
            state = decode_hash_reply(replies[1 + 2 * index])
            catalog = decode_hash_reply(replies[2 + 2 * index])
            vector = item_features_with_shop(state, catalog, shop, at, self._config)
            cached = _CachedItem.of(
                vector,
                catalog,
                attributes_from_catalog(item_id, catalog),
                now + self._ttl,
            )
            found[item_id] = batch[item_id] = cached
            if self._ttl > 0:
                self._items[item_id] = cached
                self._items.move_to_end(item_id)
        while len(self._items) > self._cache_size:
            self._items.popitem(last=False)
        return found


@functools.lru_cache(maxsize=16_384)
def _review(raw: bytes) -> ReviewRecord:
    # Reviews are read for every slate of their item, and a review record is
    # frozen, so each stored value is validated once while it stays cached.
    return _REVIEWS.validate_json(raw)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
