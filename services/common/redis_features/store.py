"""The feature store: apply event batches and read feature vectors in Redis."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

import redis
from pydantic import TypeAdapter

from schemas.catalog import PromotionRecord, ReviewRecord
from schemas.events import Event
from schemas.features import (
    EVENT_TYPE_CODES,
    WINDOWS,
    FeatureKeys,
    FeatureVectors,
    ItemAttributes,
    RecentItem,
    UserProfile,
)
from services.common.redis_features.config import (
    _STATUS_CODES,
    AppliedResult,
    EventPosition,
    EventStatus,
    FeatureStoreConfig,
)
from services.common.redis_features.vectors import (
    _BUCKET_WIDTHS,
    ITEM_COUNT_SLOTS,
    State,
    _attributes,
    _decode_json,
    _decode_map,
    _profile,
    _text,
    decayed,
    event_digest,
    item_counts,
    item_features,
    item_features_from_counts,
    item_features_with_shop,
    pair_features,
    shop_counts,
    user_features,
)

__all__ = ["FeatureStore"]

logger = logging.getLogger(__name__)

_PROMOTIONS = TypeAdapter(PromotionRecord)
_REVIEWS = TypeAdapter(ReviewRecord)


@dataclass(frozen=True)
class _ItemSnapshot:
    """An item just before an event: its trending log-score and windowed counts."""

    trend_log_score: float | None
    counts: Sequence[int]


@dataclass(frozen=True)
class _UserPart:
    """The parts of a new event's result that need no item state."""

    attributes: ItemAttributes
    user_vector: dict[str, float]
    pair_vector: dict[str, float]
    shop: dict[str, float]


def _load_script(name: str) -> str:
    return (resources.files("services.common") / "lua" / name).read_text("utf-8")


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
        self._fan_out_executor: ThreadPoolExecutor | None = None
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
                "slots": [list(slot) for slot in ITEM_COUNT_SLOTS],
            }
        )

    def load_scripts(self) -> None:
        """Load the Lua scripts into Redis (done again after a Redis restart)."""
        self.client.script_load(self._user_script)
        self.client.script_load(self._fan_out_script)

    # LIMITATION(L-24): 5,000 to 7,500 events/s on 2 cores, bound by the two
    # Lua scripts' redis-server CPU (92 to 115 µs per event). The target is
    # 30,000, about what the plain writes alone reach from one process here.
    def apply_batch(
        self,
        events: Sequence[Event],
        positions: Sequence[EventPosition] | None = None,
    ) -> list[AppliedResult]:
        """Apply events in order and return their before-snapshots.

        The Redis state afterwards does not depend on how a stream is cut into
        calls. The snapshots do in one respect: the smoothed item rates take
        their prior from the shop-wide totals as they were when the call
        began, so later events of the same call do not move it.

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
            # The scripts are not in Redis yet (first batch), or Redis lost its
            # script cache (restart or SCRIPT FLUSH). No script ran, so the
            # batch is applied from the start.
            logger.info("lua scripts not loaded in redis, loading them")
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
        raw_states: list[Any] = [None] * len(events)
        outboxes: dict[str, list[Any]] = {}
        for (user_id, indexes), reply in zip(groups.items(), replies, strict=True):
            for index, (code, state) in zip(indexes, reply[:-1], strict=True):
                statuses[index] = _STATUS_CODES[int(code)]
                raw_states[index] = state
            if reply[-1]:
                outboxes[user_id] = json.loads(_text(reply[-1]))
        if not outboxes:
            parts = self._user_parts(events, statuses, raw_states, catalogs, totals)
            return self._results(
                events, positions, digests, statuses, parts, {}, catalogs
            )
        # Redis runs the fan-out script while this thread computes the user
        # and pair features, which need only the user states and catalogs.
        fan_out = self._executor().submit(self._fan_out, digests, outboxes)
        try:
            parts = self._user_parts(events, statuses, raw_states, catalogs, totals)
        finally:
            # The script's effects must be complete before this call returns
            # or raises, so a caller's retry never runs beside it.
            wait([fan_out])
        item_states = fan_out.result()
        return self._results(
            events, positions, digests, statuses, parts, item_states, catalogs
        )

    def _executor(self) -> ThreadPoolExecutor:
        if self._fan_out_executor is None:
            self._fan_out_executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="feature-fan-out"
            )
        return self._fan_out_executor

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
    ) -> dict[str, _ItemSnapshot]:
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
        return {
            _text(digest): _ItemSnapshot(
                float(trend) if trend is not None else None, counts
            )
            for digest, trend, *counts in reply
        }

    def _user_parts(
        self,
        events: Sequence[Event],
        statuses: Sequence[EventStatus],
        raw_states: Sequence[Any],
        catalogs: Mapping[str, State],
        totals: State,
    ) -> list[_UserPart | ItemAttributes]:
        # The shop counts depend on the event time only through its buckets.
        shop_by_buckets: dict[tuple[int, ...], dict[str, float]] = {}
        widths = [width for _, width, _ in _BUCKET_WIDTHS]
        # ItemAttributes is frozen, so the events of an item share one.
        attributes_by_item: dict[str, ItemAttributes] = {}
        parts: list[_UserPart | ItemAttributes] = []
        for event, status, raw_state in zip(events, statuses, raw_states, strict=True):
            catalog = catalogs[event.item_id]
            attributes = attributes_by_item.get(event.item_id)
            if attributes is None:
                attributes = _attributes(event.item_id, catalog)
                attributes_by_item[event.item_id] = attributes
            if status is EventStatus.DUPLICATE:
                parts.append(attributes)
                continue
            at = event.event_timestamp
            user_state = _decode_json(raw_state)
            buckets = tuple([int(at // width) for width in widths])
            shop = shop_by_buckets.get(buckets)
            if shop is None:
                shop = shop_by_buckets[buckets] = shop_counts(totals, at)
            parts.append(
                _UserPart(
                    attributes,
                    user_features(user_state, at, self.config),
                    pair_features(user_state, event.item_id, catalog, event.price),
                    shop,
                )
            )
        return parts

    def _results(
        self,
        events: Sequence[Event],
        positions: Sequence[EventPosition] | None,
        digests: Sequence[str],
        statuses: Sequence[EventStatus],
        parts: Sequence[_UserPart | ItemAttributes],
        items: Mapping[str, _ItemSnapshot],
        catalogs: Mapping[str, State],
    ) -> list[AppliedResult]:
        missing = [
            event.item_id
            for event, digest, status in zip(events, digests, statuses, strict=True)
            if status is EventStatus.REDELIVERED and digest not in items
        ]
        current = self._read_items(missing) if missing else {}
        results = []
        for index, event in enumerate(events):
            status = statuses[index]
            position = positions[index] if positions is not None else None
            part = parts[index]
            if not isinstance(part, _UserPart):
                results.append(AppliedResult(event, status, {}, {}, position, part))
                continue
            at = event.event_timestamp
            catalog = catalogs[event.item_id]
            item = items.get(digests[index])
            if item is None:
                item_vector = item_features_with_shop(
                    current.get(event.item_id, {}), catalog, part.shop, at, self.config
                )
            else:
                item_vector = item_features_from_counts(
                    item_counts(item.counts),
                    item.trend_log_score,
                    catalog,
                    part.shop,
                    at,
                    self.config,
                )
            item_vector.update(part.pair_vector)
            results.append(
                AppliedResult(
                    event,
                    status,
                    part.user_vector,
                    item_vector,
                    position,
                    part.attributes,
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
            at: reference Unix time of windows and recency. The default is the
                user's newest event time. For an unknown user it is the newest
                event time of the items.

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
                totals[member] = totals.get(member, 0.0) + decayed(score, offset)
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
