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
   item-to-item lists and the trending lists, and clears the outboxes.

Exactly once in effect: for every event id, the user, item, item-to-item and
global state changes once, however often the event is delivered, as long as a
repeat arrives within the dedupe horizon (the user's last ``dedupe_size``
event ids). Step 2 is atomic per user, step 3 atomic per batch, and an entry
stays in the outbox until step 3 applied it, so a crash between the steps
loses nothing and counts nothing twice. TTLs, the before-snapshots of repeated
events and anything outside Redis are not covered.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from typing import Any, cast

import redis
from pydantic import TypeAdapter

from schemas.catalog import PromotionRecord, ReviewRecord
from schemas.events import Event, EventType
from schemas.features import (
    EVENT_TYPE_CODES,
    WINDOWS,
    FeatureKeys,
    FeatureVectors,
    ItemAttributes,
    RecentItem,
    UserProfile,
    count_feature,
)

__all__ = [
    "AppliedResult",
    "EventPosition",
    "EventStatus",
    "FeatureStore",
    "FeatureStoreConfig",
    "item_features",
    "pair_features",
    "user_features",
]

logger = logging.getLogger(__name__)

_CODE_TYPES = {code: event_type for event_type, code in EVENT_TYPE_CODES.items()}
_WINDOW_BY_CODE = {window.code: window for window in WINDOWS}
_LONGEST = WINDOWS[-1]
_CHUNKED_FIELDS = frozenset({"r", "pi", "d"})
_MAX_PRICE_ZSCORE = 5.0
_PROMOTIONS = TypeAdapter(PromotionRecord)
_REVIEWS = TypeAdapter(ReviewRecord)

State = dict[str, str]


class EventStatus(StrEnum):
    """Outcome of applying one event."""

    APPLIED = "applied"
    LATE = "late"
    """Applied; older than the user's newest event but inside every window."""
    STALE = "stale"
    """Older than the longest window: skipped for windowed features only."""
    REDELIVERED = "redelivered"
    """Already applied from this partition and offset: a replay after a crash."""
    DUPLICATE = "duplicate"
    """Already applied from another offset: a producer duplicate, dropped."""

    @property
    def is_new(self) -> bool:
        return self in (EventStatus.APPLIED, EventStatus.LATE, EventStatus.STALE)


_STATUS_CODES = (
    EventStatus.APPLIED,
    EventStatus.LATE,
    EventStatus.STALE,
    EventStatus.REDELIVERED,
    EventStatus.DUPLICATE,
)


@dataclass(frozen=True)
class EventPosition:
    """Partition and offset of an event, which distinguish a replay from a duplicate."""

    partition: int
    offset: int


@dataclass(frozen=True)
class FeatureStoreConfig:
    """Tuning of the feature store; the defaults suit a shop with daily visitors.

    Attributes:
        user_ttl_seconds: a user's state expires this long after their last event.
        item_ttl_seconds: an item's counts and lists expire this long after
            its last event.
        catalog_ttl_seconds: catalog records expire this long after their last
            update or the item's last event.
        session_idle_seconds: gap that starts a new session.
        affinity_tau_seconds: decay time constant of category and brand affinity.
        trend_tau_seconds: decay time constant of trending scores.
        pair_tau_seconds: decay time constant of item-to-item scores.
        dedupe_size: event ids remembered per user (the dedupe horizon).
            LIMITATION(L-23): a repeat older than the user's last
            ``dedupe_size`` events is applied again.
        max_recent_items: recent and purchased items kept per user.
        max_partners: same-session items each event pairs with.
        max_affinity: categories and brands kept per user.
        max_trending: items kept in the shop-wide trending list.
        max_trending_category: items kept per category trending list.
        max_pairs: items kept per item-to-item list.
        prior_strength: weight of the shop-wide rate in smoothed item rates.
        weights: event weight in affinities and trending, per event type.
        anchor: Unix seconds that decayed log-scores are relative to.
    """

    user_ttl_seconds: int = 9 * 86_400
    item_ttl_seconds: int = 14 * 86_400
    catalog_ttl_seconds: int = 30 * 86_400
    session_idle_seconds: float = 30 * 60
    affinity_tau_seconds: float = 3 * 86_400
    trend_tau_seconds: float = 86_400
    pair_tau_seconds: float = 7 * 86_400
    dedupe_size: int = 64
    max_recent_items: int = 50
    max_partners: int = 5
    max_affinity: int = 5
    max_trending: int = 1000
    max_trending_category: int = 200
    max_pairs: int = 50
    prior_strength: float = 20.0
    weights: Mapping[EventType, float] = field(
        default_factory=lambda: {
            EventType.CLICK: 1.0,
            EventType.CART_ADD: 3.0,
            EventType.PURCHASE: 5.0,
        }
    )
    anchor: float = 946_684_800.0


@dataclass(frozen=True)
class AppliedResult:
    """The outcome of applying one event, with features from just before it.

    For a new event the features are those just before it. For a redelivered
    event they are the current ones (the true snapshot was taken by the
    delivery that applied it). A duplicate carries no features.
    """

    event: Event
    status: EventStatus
    user_features: dict[str, float]
    item_features: dict[str, float]
    position: EventPosition | None = None
    item_attributes: ItemAttributes | None = None


@dataclass(frozen=True)
class _Snapshots:
    """Stored state that a batch's before-snapshots are computed from."""

    users: Sequence[State]
    items: Mapping[str, State]
    catalogs: Mapping[str, State]
    totals: State


def _load_script(name: str) -> str:
    return (resources.files("services.common") / "lua" / name).read_text("utf-8")


def _decode_json(raw: Any) -> State:
    # Lua's cjson writes an empty table as an object, never as a list.
    decoded = json.loads(raw)
    return decoded if isinstance(decoded, dict) else {}


def _decode_map(raw: Mapping[Any, Any]) -> State:
    # The user script stores long values in chunks 'r#1', 'r#2', ... (see
    # apply_user.lua); they are joined as bytes before decoding.
    state: State = {}
    chunks: dict[str, dict[int, bytes]] = {}
    for key, value in raw.items():
        name = _text(key)
        base, _, index = name.partition("#")
        if index.isdigit() and base in _CHUNKED_FIELDS:
            data = value if isinstance(value, bytes) else str(value).encode()
            chunks.setdefault(base, {})[int(index)] = data
        else:
            state[name] = _text(value)
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


def _window_counts(state: State, entity: str, at: float) -> dict[str, float]:
    names = _COUNT_NAMES[entity]
    counts = dict.fromkeys(names.values(), 0.0)
    newest = {window.code: window.bucket(at) for window in WINDOWS}
    for name, value in state.items():
        bucket = _parse_bucket(name)
        if bucket is None:
            continue
        code, window_code, index = bucket
        last = newest[window_code]
        if last - _WINDOW_BY_CODE[window_code].bucket_count < index <= last:
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
    features = _window_counts(state, "item", at)
    shop = _window_counts(totals, "shop", at)
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
        math.exp(float(state["tr"]) - (at - config.anchor) / config.trend_tau_seconds)
        if "tr" in state
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
        item_has_catalog=1.0 if catalog else 0.0,
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
    return {
        "pair_category_affinity": _affinity(user_state, "C:", catalog.get("category")),
        "pair_brand_affinity": _affinity(user_state, "B:", catalog.get("brand")),
        "pair_price_zscore": zscore,
        "pair_recent_event_count": float(
            sum(1 for entry in recent if entry[1:] == item_id)
        ),
        "pair_is_purchased": 1.0 if item_id in _id_list(user_state.get("pi")) else 0.0,
    }


def _affinity(user_state: State, prefix: str, name: str | None) -> float:
    if not name:
        return 0.0
    weights = [
        float(value) for key, value in user_state.items() if key.startswith(prefix)
    ]
    strongest = max(weights, default=0.0)
    if strongest <= 0.0:
        return 0.0
    return float(user_state.get(prefix + name, 0.0)) / strongest


def _affinities(user_state: State, prefix: str) -> dict[str, float]:
    entries = {
        key[len(prefix) :]: float(value)
        for key, value in user_state.items()
        if key.startswith(prefix)
    }
    return dict(sorted(entries.items(), key=lambda entry: -entry[1]))


def _attributes(item_id: str, catalog: State) -> ItemAttributes:
    return ItemAttributes(
        item_id=item_id,
        category_id=catalog.get("category") or None,
        brand=catalog.get("brand") or None,
        price=float(catalog["price"]) if "price" in catalog else None,
        stock=int(catalog["stock"]) if "stock" in catalog else None,
        is_consumable=catalog.get("consumable") == "1",
    )


def _profile(user_id: str, state: State) -> UserProfile:
    recent = tuple(
        RecentItem(item_id=entry[1:], event_type=_CODE_TYPES[entry[0]])
        for entry in _id_list(state.get("r"))
    )
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


class FeatureStore:
    """Writes events into rolling features in Redis and reads feature vectors.

    Args:
        client: a Redis client; responses may be bytes or str.
        key_prefix: the prefix of every key (``RedisSettings.key_prefix``).
        config: tuning; the defaults suit a shop with daily visitors.

    Raises:
        redis.exceptions.ConnectionError: from any method when Redis is down.
            :meth:`apply_batch` may then be called again with the same batch:
            its effects are applied once.
    """

    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str,
        config: FeatureStoreConfig | None = None,
    ) -> None:
        self.client = client
        self.keys = FeatureKeys(key_prefix)
        self.config = config or FeatureStoreConfig()
        self._user_script = _load_script("apply_user.lua")
        self._fan_out_script = _load_script("fan_out.lua")
        self._user_sha = hashlib.sha1(self._user_script.encode()).hexdigest()
        self._fan_out_sha = hashlib.sha1(self._fan_out_script.encode()).hexdigest()
        windows = [[w.code, w.bucket_seconds, w.bucket_count] for w in WINDOWS]
        weights = {
            EVENT_TYPE_CODES[event_type]: weight
            for event_type, weight in self.config.weights.items()
        }
        cfg = self.config
        self._user_config = json.dumps(
            {
                "ttl": cfg.user_ttl_seconds,
                "idle": cfg.session_idle_seconds,
                "tau": cfg.affinity_tau_seconds,
                "dedupe": cfg.dedupe_size,
                "recent": cfg.max_recent_items,
                "partners": cfg.max_partners,
                "affinity": cfg.max_affinity,
                "windows": windows,
                "weights": weights,
            }
        )
        self._fan_out_config = json.dumps(
            {
                "prefix": key_prefix,
                "item_ttl": cfg.item_ttl_seconds,
                "catalog_ttl": cfg.catalog_ttl_seconds,
                "trend_tau": cfg.trend_tau_seconds,
                "pair_tau": cfg.pair_tau_seconds,
                "max_trending": cfg.max_trending,
                "max_trending_category": cfg.max_trending_category,
                "max_pairs": cfg.max_pairs,
                "windows": windows,
                "weights": weights,
                "anchor": cfg.anchor,
            }
        )

    def load_scripts(self) -> None:
        """Load the Lua scripts into Redis (done again after a Redis restart)."""
        self.client.script_load(self._user_script)
        self.client.script_load(self._fan_out_script)

    def apply_batch(
        self,
        events: Sequence[Event],
        positions: Sequence[EventPosition] | None = None,
    ) -> list[AppliedResult]:
        """Apply events in order and return their before-snapshots.

        Args:
            events: validated events, in the order they were read.
            positions: the partition and offset of each event; without them a
                repeated event id is always reported as a duplicate.

        Returns:
            One result per event, in order.
        """
        if positions is not None and len(positions) != len(events):
            raise ValueError(
                f"got {len(positions)} positions for {len(events)} events; "
                "pass one position per event or none"
            )
        if not events:
            return []
        try:
            return self._apply(events, positions)
        except redis.exceptions.NoScriptError:
            # Redis lost its script cache (restart or SCRIPT FLUSH). No script
            # ran, so the batch is applied from the start.
            logger.warning("lua scripts missing in redis, loading them again")
            self.load_scripts()
            return self._apply(events, positions)

    def _apply(
        self, events: Sequence[Event], positions: Sequence[EventPosition] | None
    ) -> list[AppliedResult]:
        item_ids = list(dict.fromkeys(event.item_id for event in events))
        catalogs, totals = self._read_catalogs(item_ids)
        digests = [event_digest(event.event_id).hex() for event in events]
        groups: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            groups.setdefault(event.user_id, []).append(index)

        pipe = self.client.pipeline(transaction=False)
        for user_id, indexes in groups.items():
            rows = [
                self._event_row(events[index], positions, index, catalogs, digests)
                for index in indexes
            ]
            pipe.evalsha(
                self._user_sha,
                2,
                self.keys.user(user_id),
                self.keys.user_outbox(user_id),
                self._user_config,
                json.dumps(rows),
            )
        replies = pipe.execute()

        statuses: list[EventStatus] = [EventStatus.DUPLICATE] * len(events)
        user_states: list[State] = [{} for _ in events]
        outboxes: dict[str, list[Any]] = {}
        for (user_id, indexes), reply in zip(groups.items(), replies, strict=True):
            for index, (code, state) in zip(indexes, reply[:-1], strict=True):
                statuses[index] = _STATUS_CODES[int(code)]
                user_states[index] = _decode_json(state)
            if reply[-1]:
                outboxes[user_id] = json.loads(_text(reply[-1]))
        item_states = self._fan_out(digests, outboxes)
        snapshots = _Snapshots(user_states, item_states, catalogs, totals)
        return self._results(events, positions, digests, statuses, snapshots)

    def _read_catalogs(self, item_ids: Sequence[str]) -> tuple[dict[str, State], State]:
        pipe = self.client.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.hgetall(self.keys.item_catalog(item_id))
        pipe.hgetall(self.keys.totals())
        replies = pipe.execute()
        catalogs = {
            item_id: _decode_map(reply)
            for item_id, reply in zip(item_ids, replies, strict=False)
        }
        return catalogs, _decode_map(replies[-1])

    def _event_row(
        self,
        event: Event,
        positions: Sequence[EventPosition] | None,
        index: int,
        catalogs: Mapping[str, State],
        digests: Sequence[str],
    ) -> list[Any]:
        catalog = catalogs[event.item_id]
        price = event.price if event.price is not None else catalog.get("price")
        position = positions[index] if positions is not None else None
        return [
            digests[index],
            EVENT_TYPE_CODES[event.event_type],
            repr(event.event_timestamp),
            event.item_id,
            catalog.get("category", ""),
            catalog.get("brand", ""),
            "" if price is None else repr(float(price)),
            position.partition if position else -1,
            position.offset if position else -1,
        ]

    def _fan_out(
        self, digests: Sequence[str], outboxes: Mapping[str, list[Any]]
    ) -> dict[str, State]:
        if not outboxes:
            return {}
        # Entries run in the order of their events in this batch, so a replay
        # changes the items in the same order as the first delivery did.
        order: dict[str, int] = {}
        for index, digest in enumerate(digests):
            order.setdefault(digest, index)
        entries = [entry for outbox in outboxes.values() for entry in outbox]
        entries.sort(key=lambda entry: order.get(entry[0], -1))
        outbox_keys = [self.keys.user_outbox(user_id) for user_id in outboxes]
        reply = self.client.evalsha(
            self._fan_out_sha,
            len(outbox_keys),
            *outbox_keys,
            self._fan_out_config,
            json.dumps(entries),
        )
        return {_text(digest): _decode_json(state) for digest, state in reply}

    def _results(
        self,
        events: Sequence[Event],
        positions: Sequence[EventPosition] | None,
        digests: Sequence[str],
        statuses: Sequence[EventStatus],
        snapshots: _Snapshots,
    ) -> list[AppliedResult]:
        missing = [
            event.item_id
            for event, digest, status in zip(events, digests, statuses, strict=True)
            if status is EventStatus.REDELIVERED and digest not in snapshots.items
        ]
        current = self._read_items(missing) if missing else {}
        results = []
        for index, event in enumerate(events):
            status = statuses[index]
            position = positions[index] if positions is not None else None
            catalog = snapshots.catalogs[event.item_id]
            attributes = _attributes(event.item_id, catalog)
            if status is EventStatus.DUPLICATE:
                results.append(
                    AppliedResult(event, status, {}, {}, position, attributes)
                )
                continue
            at = event.event_timestamp
            user_state = snapshots.users[index]
            item_state = snapshots.items.get(digests[index])
            if item_state is None:
                item_state = current.get(event.item_id, {})
            item_vector = item_features(
                item_state, catalog, snapshots.totals, at, self.config
            )
            item_vector.update(
                pair_features(user_state, event.item_id, catalog, event.price)
            )
            user_vector = user_features(user_state, at, self.config)
            results.append(
                AppliedResult(
                    event, status, user_vector, item_vector, position, attributes
                )
            )
        return results

    def _read_items(self, item_ids: Iterable[str]) -> dict[str, State]:
        item_ids = list(dict.fromkeys(item_ids))
        pipe = self.client.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.hgetall(self.keys.item(item_id))
        return {
            item_id: _decode_map(reply)
            for item_id, reply in zip(item_ids, pipe.execute(), strict=True)
        }

    def read(
        self, user_id: str, item_ids: Sequence[str], *, at: float | None = None
    ) -> FeatureVectors:
        """Read the features of one user and candidate items in one round trip.

        Args:
            user_id: the user.
            item_ids: the candidate items; duplicates are read once.
            at: reference Unix time of windows and recency; defaults to the
                user's newest event time, or the newest event time of the items
                for an unknown user.

        Returns:
            The user's and each item's vectors, with pair features in the
            item vectors, plus catalog attributes and the user's profile.
        """
        item_ids = list(dict.fromkeys(item_ids))
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.user(user_id))
        pipe.hgetall(self.keys.totals())
        for item_id in item_ids:
            pipe.hgetall(self.keys.item(item_id))
            pipe.hgetall(self.keys.item_catalog(item_id))
        replies = pipe.execute()
        user_state = _decode_map(replies[0])
        totals = _decode_map(replies[1])
        items = {
            item_id: (_decode_map(replies[2 + 2 * i]), _decode_map(replies[3 + 2 * i]))
            for i, item_id in enumerate(item_ids)
        }
        if at is None:
            at = _reference_time(user_state, [state for state, _ in items.values()])
        vectors = {}
        for item_id, (state, catalog) in items.items():
            vector = item_features(state, catalog, totals, at, self.config)
            vector.update(pair_features(user_state, item_id, catalog))
            vectors[item_id] = vector
        return FeatureVectors(
            user=user_features(user_state, at, self.config),
            items=vectors,
            attributes={
                item_id: _attributes(item_id, catalog)
                for item_id, (_, catalog) in items.items()
            },
            profile=_profile(user_id, user_state),
            reference_time=at,
        )

    def profile(self, user_id: str) -> UserProfile:
        """Return the user's session, affinities, recent and purchased items."""
        return _profile(
            user_id, _decode_map(self.client.hgetall(self.keys.user(user_id)))
        )

    def recent_items(self, user_id: str) -> tuple[RecentItem, ...]:
        """Return the user's latest interactions, newest first."""
        return self.profile(user_id).recent_items

    def purchased_items(self, user_id: str) -> tuple[str, ...]:
        """Return the ids of the items the user bought, newest first."""
        return self.profile(user_id).purchased_items

    def item_attributes(self, item_ids: Sequence[str]) -> dict[str, ItemAttributes]:
        """Return the catalog attributes of items (all None when not in the catalog)."""
        item_ids = list(dict.fromkeys(item_ids))
        pipe = self.client.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.hgetall(self.keys.item_catalog(item_id))
        return {
            item_id: _attributes(item_id, _decode_map(reply))
            for item_id, reply in zip(item_ids, pipe.execute(), strict=True)
        }

    def covisited(
        self, item_ids: Sequence[str], n: int, *, at: float | None = None
    ) -> list[tuple[str, float]]:
        """Return up to ``n`` items viewed in the same sessions as ``item_ids``.

        Scores of several seed items are added up; seeds are left out.

        Args:
            item_ids: the seed items.
            n: the maximum number of items returned.
            at: Unix time the decayed scores are evaluated at; without it the
                scores are relative (the best seed pair scores 1.0).

        Returns:
            ``(item_id, score)`` pairs, best first.
        """
        return self._pairs(self.keys.covisited, item_ids, n, at)

    def co_cart(
        self, item_ids: Sequence[str], n: int, *, at: float | None = None
    ) -> list[tuple[str, float]]:
        """Return up to ``n`` items added to carts together with ``item_ids``.

        Arguments and result as in :meth:`covisited`.
        """
        return self._pairs(self.keys.co_cart, item_ids, n, at)

    def co_purchase(
        self, item_ids: Sequence[str], n: int, *, at: float | None = None
    ) -> list[tuple[str, float]]:
        """Return up to ``n`` items bought together with ``item_ids``.

        Arguments and result as in :meth:`covisited`.
        """
        return self._pairs(self.keys.co_purchase, item_ids, n, at)

    def _pairs(
        self, key_of: Any, item_ids: Sequence[str], n: int, at: float | None
    ) -> list[tuple[str, float]]:
        seeds = list(dict.fromkeys(item_ids))
        pipe = self.client.pipeline(transaction=False)
        for item_id in seeds:
            pipe.zrevrange(
                key_of(item_id), 0, self.config.max_pairs - 1, withscores=True
            )
        scored = [
            (_text(member), float(score))
            for reply in pipe.execute()
            for member, score in reply
        ]
        ranked = self._decayed(scored, at, self.config.pair_tau_seconds, set(seeds))
        return ranked[:n]

    def _decayed(
        self,
        scored: Sequence[tuple[str, float]],
        at: float | None,
        tau: float,
        excluded: set[str],
    ) -> list[tuple[str, float]]:
        if not scored:
            return []
        offset = (
            (at - self.config.anchor) / tau
            if at is not None
            else max(score for _, score in scored)
        )
        totals: dict[str, float] = {}
        for member, score in scored:
            if member not in excluded:
                totals[member] = totals.get(member, 0.0) + math.exp(score - offset)
        return sorted(totals.items(), key=lambda entry: (-entry[1], entry[0]))

    def trending(self, n: int, *, at: float | None = None) -> list[tuple[str, float]]:
        """Return up to ``n`` items with the highest decayed, weighted event count.

        Args:
            n: the maximum number of items returned.
            at: Unix time the decayed counts are evaluated at; without it the
                scores are relative to the top item (1.0).
        """
        return self._trending(self.keys.trending(), n, at)

    def trending_in_category(
        self, category_id: str, n: int, *, at: float | None = None
    ) -> list[tuple[str, float]]:
        """Return the trending items of one category; see :meth:`trending`."""
        return self._trending(self.keys.trending_in_category(category_id), n, at)

    def _trending(self, key: str, n: int, at: float | None) -> list[tuple[str, float]]:
        reply = cast(
            list[tuple[Any, float]],
            self.client.zrevrange(key, 0, n - 1, withscores=True),
        )
        scored = [(_text(member), float(score)) for member, score in reply]
        return self._decayed(scored, at, self.config.trend_tau_seconds, set())

    def promotions_active_at(self, at: float) -> list[PromotionRecord]:
        """Return the promotions whose validity window contains Unix time ``at``."""
        raw = self.client.hvals(self.keys.promotions())
        promotions = [_PROMOTIONS.validate_json(value) for value in raw]
        active = [
            promotion
            for promotion in promotions
            if promotion.starts_at.timestamp() <= at < promotion.ends_at.timestamp()
        ]
        return sorted(active, key=lambda promotion: promotion.promotion_id)

    def reviews(self, item_id: str) -> list[ReviewRecord]:
        """Return the reviews of an item, most helpful first."""
        raw = self.client.hvals(self.keys.item_reviews(item_id))
        reviews = [_REVIEWS.validate_json(value) for value in raw]
        return sorted(
            reviews, key=lambda review: (-review.helpful_votes, review.review_id)
        )


def _reference_time(user_state: State, item_states: Iterable[State]) -> float:
    if "lt" in user_state:
        return float(user_state["lt"])
    times = [float(state["lt"]) for state in item_states if "lt" in state]
    return max(times, default=0.0)
