"""Feature vectors computed from the state that the Lua scripts store.

The functions here read decoded Redis hashes (``dict[str, str]``) and return
the numeric features named in :mod:`schemas.features`. The snapshots taken
while a batch is applied and the vectors read later use the same code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from schemas.events import EventType
from schemas.features import (
    EVENT_TYPE_CODES,
    WINDOWS,
    ItemAttributes,
    RecentItem,
    UserProfile,
    count_feature,
)
from services.common.redis_features.config import FeatureStoreConfig

__all__ = [
    "State",
    "attributes_from_catalog",
    "decayed",
    "decode_hash",
    "decode_hash_reply",
    "event_digest",
    "id_list",
    "ITEM_COUNT_SLOTS",
    "item_counts",
    "item_features",
    "item_features_from_counts",
    "item_features_with_shop",
    "pair_features",
    "profile_from_hash",
    "shop_counts",
    "user_features",
]

_CODE_TYPES = {code: event_type for event_type, code in EVENT_TYPE_CODES.items()}
_WINDOW_BY_CODE = {window.code: window for window in WINDOWS}
_LONGEST = WINDOWS[-1]
_CHUNKED_FIELDS = frozenset({"r", "pi", "d"})
_MAX_PRICE_ZSCORE = 5.0
_WEIGHT = operator.itemgetter(1)

State = dict[str, str]

# Decayed scores are stored as logarithms relative to a fixed anchor time. A
# read at a time before the newest event (a late event, an earlier clock)
# adds one to the exponent per decay constant, so two years of a one-day
# constant overflow a float. A capped value is still the largest of its list,
# and the models read features through a log.
_MAX_EXPONENT = 50.0


def decayed(log_score: float, offset: float) -> float:
    """Return ``exp(log_score - offset)`` with the exponent capped at 50."""
    return math.exp(min(log_score - offset, _MAX_EXPONENT))


def _decode_json(raw: Any) -> State:
    # Lua's cjson writes an empty table as an object, never as a list.
    decoded = json.loads(raw)
    return decoded if isinstance(decoded, dict) else {}


def _decode_map(raw: Mapping[Any, Any]) -> State:
    return _decode_pairs(raw.items())


def _decode_reply(reply: Mapping[Any, Any] | Sequence[Any]) -> State:
    # A raw HGETALL reply is a map in RESP3 and alternates field and value in RESP2.
    if isinstance(reply, Mapping):
        return _decode_map_reply(reply)
    return _decode_pairs(zip(reply[::2], reply[1::2], strict=True))


def _decode_map_reply(reply: Mapping[Any, Any]) -> State:
    # Item and catalog hashes are most of the replies, and they have UTF-8
    # bytes for fields and values and no chunked field. Those are decoded in
    # one comprehension, and any other reply falls back to _decode_pairs.
    try:
        if b"#" in b"".join(reply):
            return _decode_pairs(reply.items())
        return {key.decode(): value.decode() for key, value in reply.items()}
    except (TypeError, AttributeError, UnicodeDecodeError):
        return _decode_pairs(reply.items())


def _decode_pairs(pairs: Iterable[tuple[Any, Any]]) -> State:
    # The user script stores long values in chunks 'r#1', 'r#2', ... (see
    # apply_user.lua); they are joined as bytes before decoding. Every read of
    # a user or item hash passes here, so the common case is written inline.
    state: State = {}
    chunks: dict[str, dict[int, bytes]] = {}
    for key, value in pairs:
        name = (
            key.decode("utf-8", errors="replace")
            if isinstance(key, bytes)
            else str(key)
        )
        if "#" in name:
            base, _, index = name.partition("#")
            if index.isdigit() and base in _CHUNKED_FIELDS:
                data = value if isinstance(value, bytes) else str(value).encode()
                chunks.setdefault(base, {})[int(index)] = data
                continue
        if isinstance(value, bytes):
            state[name] = value.decode("utf-8", errors="replace")
        else:
            state[name] = str(value)
    for base, parts in chunks.items():
        state[base] = _text(b"".join(parts[index] for index in sorted(parts)))
    return state


def _text(value: Any) -> str:
    # The dedupe field contains raw digests, which are not UTF-8.
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def event_digest(event_id: str) -> bytes:
    """Return the 5-byte digest that represents an event id in the dedupe list.

    Two ids of one user collide with probability about n**2 / 2**41 for n
    remembered ids (2e-9 at the default 64), which would drop the newer event.
    """
    return hashlib.blake2b(event_id.encode("utf-8"), digest_size=5).digest()


def _count_names(entity: str) -> dict[tuple[str, str], str]:
    return {
        (EVENT_TYPE_CODES[event_type], window.code): count_feature(
            entity, event_type, window
        )
        for event_type in EventType
        for window in WINDOWS
    }


_COUNT_NAMES = {entity: _count_names(entity) for entity in ("user", "item", "shop")}


@functools.lru_cache(maxsize=65_536)
def _parse_bucket(name: str) -> tuple[str, str, int] | None:
    """Split a bucket field such as ``cm5232985`` into type code, window code, index."""
    if len(name) < 3 or name[0] not in _CODE_TYPES or not name[2:].isdigit():
        return None
    if name[1] not in _WINDOW_BY_CODE:
        return None
    return name[0], name[1], int(name[2:])


_BUCKET_WIDTHS = tuple(
    (window.code, window.bucket_seconds, window.bucket_count) for window in WINDOWS
)


@functools.lru_cache(maxsize=1024)
def _live_buckets(at: float) -> dict[str, tuple[int, int]]:
    """Return the open-closed range of live bucket indexes per window code.

    A batch evaluates every item at one time, so the ranges are computed once
    per time. Callers must not change the returned dict.
    """
    return {
        code: (int(at // width) - count, int(at // width))
        for code, width, count in _BUCKET_WIDTHS
    }


# LIMITATION(L-25): windows follow bucket edges (the 7 d window is 7 UTC days),
# so a count near an edge covers up to one bucket more or less than the window.
def _window_counts(state: State, entity: str, at: float) -> dict[str, float]:
    names = _COUNT_NAMES[entity]
    counts = dict.fromkeys(names.values(), 0.0)
    live = _live_buckets(at)
    for name, value in state.items():
        bucket = _parse_bucket(name)
        if bucket is None:
            continue
        code, window_code, index = bucket
        low, high = live[window_code]
        if low < index <= high:
            counts[names[code, window_code]] += float(value)
    return counts


def _id_list(raw: str | None) -> list[str]:
    # Lists of ids are stored joined by the unit separator (0x1F).
    return raw.split("\x1f") if raw else []


def user_features(
    state: State, at: float, config: FeatureStoreConfig
) -> dict[str, float]:
    """Compute the numeric user features from the user's hash at time ``at``.

    Args:
        state: the user's hash fields (empty for an unknown user).
        at: reference Unix time of the windows and of recency.
        config: the store's tuning.

    Returns:
        One value per name in :data:`schemas.features.USER_FEATURES`.
    """
    features = _window_counts(state, "user", at)
    last = float(state["lt"]) if "lt" in state else None
    gap = (
        _LONGEST.seconds if last is None else min(max(at - last, 0.0), _LONGEST.seconds)
    )
    is_in_session = last is not None and at - last <= config.session_idle_seconds
    price_count = float(state.get("pn", 0.0))
    price_mean = float(state.get("ps", 0.0)) / price_count if price_count else 0.0
    price_var = (
        float(state.get("pq", 0.0)) / price_count - price_mean**2
        if price_count
        else 0.0
    )
    features.update(
        user_event_count=float(state.get("n", 0.0)),
        user_seconds_since_last_event=gap,
        user_session_event_count=float(state.get("sn", 0.0)) if is_in_session else 0.0,
        user_session_duration_seconds=(
            float(state["lt"]) - float(state["ss"]) if is_in_session else 0.0
        ),
        user_price_mean=price_mean,
        user_price_std=math.sqrt(max(price_var, 0.0)),
        user_purchased_item_count=float(len(_id_list(state.get("pi")))),
        user_recent_item_count=float(len(_id_list(state.get("r")))),
    )
    return features


def item_features(
    state: State,
    catalog: State,
    totals: State,
    at: float,
    config: FeatureStoreConfig,
) -> dict[str, float]:
    """Compute the numeric item features at time ``at``.

    Args:
        state: the item's event-driven hash (counts, trending log-score).
        catalog: the item's catalog hash.
        totals: the shop-wide counts per day (the priors of the rates).
        at: reference Unix time.
        config: the store's tuning.

    Returns:
        One value per name in :data:`schemas.features.ITEM_FEATURES`.
    """
    return item_features_with_shop(
        state, catalog, _window_counts(totals, "shop", at), at, config
    )


def shop_counts(totals: State, at: float) -> dict[str, float]:
    """Return the shop-wide windowed counts at time ``at`` from the totals hash."""
    return _window_counts(totals, "shop", at)


def item_features_with_shop(
    state: State,
    catalog: State,
    shop: Mapping[str, float],
    at: float,
    config: FeatureStoreConfig,
) -> dict[str, float]:
    """Compute the item features as :func:`item_features` from ready shop counts.

    A batch shares one totals hash, so its events reuse the counts of
    :func:`shop_counts` for every ``at`` in the same buckets.
    """
    trend = state.get("tr")
    return item_features_from_counts(
        _window_counts(state, "item", at),
        float(trend) if trend is not None else None,
        catalog,
        shop,
        at,
        config,
    )


ITEM_COUNT_SLOTS: tuple[tuple[str, str], ...] = tuple(_COUNT_NAMES["item"])
"""The (type code, window code) of each item count, in feature order."""

_ITEM_COUNT_NAMES = tuple(_COUNT_NAMES["item"].values())


def item_counts(values: Sequence[Any]) -> dict[str, float]:
    """Name the item counts given in :data:`ITEM_COUNT_SLOTS` order."""
    return {
        name: float(value)
        for name, value in zip(_ITEM_COUNT_NAMES, values, strict=True)
    }


def item_features_from_counts(
    counts: dict[str, float],
    trend_log_score: float | None,
    catalog: State,
    shop: Mapping[str, float],
    at: float,
    config: FeatureStoreConfig,
) -> dict[str, float]:
    """Compute the item features from the item's windowed counts at ``at``.

    Args:
        counts: the item's windowed counts, named as in
            :data:`schemas.features.ITEM_FEATURES`; updated in place.
        trend_log_score: the item's stored trending log-score, if any.
        catalog: the item's catalog hash.
        shop: the shop-wide counts from :func:`shop_counts`.
        at: reference Unix time.
        config: the store's tuning.

    Returns:
        ``counts`` with the other item features added.
    """
    features = counts
    views = features["item_click_count_7d"]
    carts = features["item_cart_add_count_7d"]
    purchases = features["item_purchase_count_7d"]
    # Laplace-smoothed shop-wide rates are the priors, never exactly 0 or 1.
    view_prior = (shop["shop_cart_add_count_7d"] + 1.0) / (
        shop["shop_click_count_7d"] + 2.0
    )
    cart_prior = (shop["shop_purchase_count_7d"] + 1.0) / (
        shop["shop_cart_add_count_7d"] + 2.0
    )
    strength = config.prior_strength
    trend = (
        decayed(trend_log_score, (at - config.anchor) / config.trend_tau_seconds)
        if trend_log_score is not None
        else 0.0
    )
    stock = catalog.get("stock")
    reviews = float(catalog.get("rn", 0.0))
    features.update(
        item_view_to_cart_rate_7d=(carts + strength * view_prior) / (views + strength),
        item_cart_to_purchase_rate_7d=(purchases + strength * cart_prior)
        / (carts + strength),
        item_trending_score=trend,
        item_price=float(catalog.get("price", 0.0)),
        item_stock=float(stock) if stock is not None else 0.0,
        item_is_in_stock=0.0 if stock is not None and int(stock) <= 0 else 1.0,
        item_is_consumable=1.0 if catalog.get("consumable") == "1" else 0.0,
        # Every item record writes "consumable". Reviews of an item without a
        # record leave only their counts (rn, rs) in the hash.
        item_has_catalog=1.0 if "consumable" in catalog else 0.0,
        item_review_count=reviews,
        item_rating_mean=float(catalog.get("rs", 0.0)) / reviews if reviews else 0.0,
    )
    return features


def pair_features(
    user_state: State, item_id: str, catalog: State, price: float | None = None
) -> dict[str, float]:
    """Compute the features of one user and one item.

    Args:
        user_state: the user's hash fields.
        item_id: the item.
        catalog: the item's catalog hash.
        price: the item's price when known from elsewhere (the event);
            otherwise the catalog price is used.

    Returns:
        One value per name in :data:`schemas.features.PAIR_FEATURES`.
    """
    if price is None and "price" in catalog:
        price = float(catalog["price"])
    count = float(user_state.get("pn", 0.0))
    zscore = 0.0
    if price is not None and count >= 2:
        mean = float(user_state["ps"]) / count
        std = math.sqrt(max(float(user_state["pq"]) / count - mean**2, 0.0))
        zscore = (price - mean) / max(std, 1e-6 + 0.01 * mean)
        zscore = max(-_MAX_PRICE_ZSCORE, min(_MAX_PRICE_ZSCORE, zscore))
    recent = _id_list(user_state.get("r"))
    category = catalog.get("category")
    brand = catalog.get("brand")
    # One pass over the hash collects the weights of both affinity kinds.
    weights: dict[str, list[float]] = {"C:": [], "B:": []}
    if category or brand:
        for key, value in user_state.items():
            kind = weights.get(key[:2])
            if kind is not None:
                kind.append(float(value))
    return {
        "pair_category_affinity": _affinity(user_state, "C:", category, weights),
        "pair_brand_affinity": _affinity(user_state, "B:", brand, weights),
        "pair_price_zscore": zscore,
        "pair_recent_event_count": float(
            sum(1 for entry in recent if entry[1:] == item_id)
        ),
        "pair_is_purchased": 1.0 if item_id in _id_list(user_state.get("pi")) else 0.0,
    }


def _affinity(
    user_state: State,
    prefix: str,
    name: str | None,
    weights: Mapping[str, Sequence[float]],
) -> float:
    if not name:
        return 0.0
    strongest = max(weights[prefix], default=0.0)
    if strongest <= 0.0:
        return 0.0
    return float(user_state.get(prefix + name, 0.0)) / strongest


def _affinities(user_state: State, prefix: str) -> dict[str, float]:
    entries = [
        (key[len(prefix) :], float(value))
        for key, value in user_state.items()
        if key.startswith(prefix)
    ]
    # A stable sort in reverse keeps fields of equal weight in hash order, as
    # a sort by negated weight does.
    entries.sort(key=_WEIGHT, reverse=True)
    return dict(entries)


def _attributes(item_id: str, catalog: State) -> ItemAttributes:
    return ItemAttributes(
        item_id=item_id,
        category_id=catalog.get("category") or None,
        brand=catalog.get("brand") or None,
        price=float(catalog["price"]) if "price" in catalog else None,
        stock=int(catalog["stock"]) if "stock" in catalog else None,
        is_consumable=catalog.get("consumable") == "1",
    )


@functools.lru_cache(maxsize=65_536)
def _recent_item(entry: str) -> RecentItem:
    """Return the recent item of a stored entry such as ``c5232985``.

    Items are immutable, and the same entries recur in the profiles of every
    batch, so each is built once.
    """
    return RecentItem(item_id=entry[1:], event_type=_CODE_TYPES[entry[0]])


def _profile(user_id: str, state: State) -> UserProfile:
    recent = tuple(map(_recent_item, _id_list(state.get("r"))))
    start = state.get("ss")
    return UserProfile(
        user_id=user_id,
        session_id=f"{user_id}:{int(float(start))}" if start else None,
        last_event_time=float(state["lt"]) if "lt" in state else None,
        category_affinity=_affinities(state, "C:"),
        brand_affinity=_affinities(state, "B:"),
        recent_items=recent,
        purchased_items=tuple(_id_list(state.get("pi"))),
    )


# Public names for readers that batch their own Redis reads (the scorer reads
# the states of a whole batch in one pipeline) and decode them here.
decode_hash = _decode_map
"""Decode an ``HGETALL`` reply into a state dict, joining chunked fields."""

decode_hash_reply = _decode_reply
"""Decode a raw ``HGETALL`` reply, RESP3 map or RESP2 list, like :func:`decode_hash`."""

id_list = _id_list
"""Split a stored id list (recent items ``r``, purchased items ``pi``)."""

attributes_from_catalog = _attributes
"""Build :class:`ItemAttributes` from an item id and its decoded catalog hash."""

profile_from_hash = _profile
"""Build :class:`UserProfile` from a user id and the user's decoded hash."""
