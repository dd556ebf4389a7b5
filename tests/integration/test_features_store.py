"""Feature store against a real redis-server: every feature family, hand-computed."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from schemas.catalog import ItemRecord
from schemas.events import Event, EventType
from services.common.redis_features import (
    EventPosition,
    EventStatus,
    FeatureStore,
    FeatureStoreConfig,
)
from services.features.catalog import CatalogWriter

pytestmark = pytest.mark.integration

START = datetime(2019, 10, 1, tzinfo=UTC)
T = START.timestamp()  # a multiple of every bucket width
DAY = 86_400.0

EventFactory = Callable[..., Event]


@pytest.fixture
def make_event() -> EventFactory:
    counter = iter(range(1_000_000))

    def make(
        seconds: float = 0.0,
        *,
        event_type: str = "click",
        user_id: str = "u1",
        item_id: str = "a",
        event_id: str | None = None,
        price: float | None = None,
    ) -> Event:
        return Event(
            event_id=event_id or f"e{next(counter)}",
            event_type=EventType(event_type),
            user_id=user_id,
            item_id=item_id,
            event_time=START + timedelta(seconds=seconds),
            price=price,
        )

    return make


@pytest.fixture
def store(redis_client: redis.Redis, redis_settings: Any) -> Iterator[FeatureStore]:
    feature_store = FeatureStore(redis_client, redis_settings.key_prefix)
    feature_store.load_scripts()
    yield feature_store
    for key in redis_client.scan_iter(f"{redis_settings.key_prefix}:*"):
        redis_client.delete(key)


@pytest.fixture
def catalog(redis_client: redis.Redis, redis_settings: Any) -> CatalogWriter:
    return CatalogWriter(redis_client, redis_settings.key_prefix)


def add_item(catalog: CatalogWriter, item_id: str, **fields: Any) -> None:
    catalog.write(ItemRecord(item_id=item_id, updated_at=START, **fields))


# --- user windows, recency, session ------------------------------------------


def test_user_counts_cover_each_window(
    store: FeatureStore, make_event: EventFactory
) -> None:
    store.apply_batch(
        [
            make_event(0),
            make_event(100),
            make_event(400, event_type="cart_add"),
            make_event(3700),
        ]
    )

    user = store.read("u1", []).user

    # At T+3700 the 1 h window contains the 5-minute buckets T+300 .. T+3899.
    assert user["user_click_count_1h"] == 1.0
    assert user["user_cart_add_count_1h"] == 1.0
    assert user["user_click_count_24h"] == 3.0
    assert user["user_click_count_7d"] == 3.0
    assert user["user_purchase_count_7d"] == 0.0
    assert user["user_event_count"] == 4.0


def test_user_counts_drop_old_events_later(
    store: FeatureStore, make_event: EventFactory
) -> None:
    store.apply_batch([make_event(0), make_event(2 * DAY)])

    user = store.read("u1", [], at=T + 8 * DAY).user

    assert user["user_click_count_24h"] == 0.0
    assert user["user_click_count_7d"] == 1.0


def test_late_event_is_counted_by_its_event_time(
    store: FeatureStore, make_event: EventFactory
) -> None:
    results = store.apply_batch([make_event(3600), make_event(60)])

    user = store.read("u1", []).user

    assert [r.status for r in results] == [EventStatus.APPLIED, EventStatus.LATE]
    # The late event at T+60 is outside the 1 h window ending at T+3600.
    assert user["user_click_count_1h"] == 1.0
    assert user["user_click_count_24h"] == 2.0
    # Recency and session follow the newest event only.
    assert user["user_session_event_count"] == 1.0
    assert store.profile("u1").last_event_time == T + 3600


def test_stale_event_skips_windowed_features(
    store: FeatureStore, make_event: EventFactory
) -> None:
    store.apply_batch([make_event(8 * DAY)])

    results = store.apply_batch([make_event(0, price=10.0)])
    user = store.read("u1", []).user

    assert results[0].status is EventStatus.STALE
    assert user["user_click_count_7d"] == 1.0
    assert user["user_event_count"] == 2.0
    assert user["user_price_mean"] == 10.0


def test_years_old_event_gets_capped_features(
    store: FeatureStore, make_event: EventFactory
) -> None:
    # Two years of the one-day trending decay would overflow exp().
    store.apply_batch([make_event(730 * DAY, user_id="u2")])

    results = store.apply_batch([make_event(0)])
    trending = store.trending(1, at=T)

    assert results[0].status is EventStatus.APPLIED
    assert math.isfinite(results[0].item_features["item_trending_score"])
    assert [item for item, _ in trending] == ["a"]
    assert math.isfinite(trending[0][1])


def test_session_splits_after_idle_gap(
    store: FeatureStore, make_event: EventFactory
) -> None:
    results = store.apply_batch(
        [make_event(0), make_event(1000), make_event(1000 + 1801)]
    )

    profile = store.profile("u1")
    user = store.read("u1", []).user

    assert results[1].user_features["user_session_event_count"] == 1.0
    assert results[1].user_features["user_seconds_since_last_event"] == 1000.0
    # Before the third event the session had ended (gap over 30 minutes).
    assert results[2].user_features["user_session_event_count"] == 0.0
    assert profile.session_id == f"u1:{int(T + 2801)}"
    assert user["user_session_event_count"] == 1.0
    assert user["user_session_duration_seconds"] == 0.0


def test_unknown_user_gets_longest_window_as_recency(store: FeatureStore) -> None:
    user = store.read("nobody", [], at=T).user

    assert user["user_seconds_since_last_event"] == 7 * DAY
    assert user["user_event_count"] == 0.0


def test_price_level_is_mean_and_spread(
    store: FeatureStore, make_event: EventFactory
) -> None:
    store.apply_batch(
        [
            make_event(0, price=10.0),
            make_event(1, price=20.0),
            make_event(2, price=30.0),
        ]
    )

    user = store.read("u1", []).user

    assert user["user_price_mean"] == pytest.approx(20.0)
    assert user["user_price_std"] == pytest.approx(math.sqrt(200.0 / 3.0))


def test_price_falls_back_to_catalog_price(
    store: FeatureStore, catalog: CatalogWriter, make_event: EventFactory
) -> None:
    add_item(catalog, "a", price=40.0)

    store.apply_batch([make_event(0)])

    assert store.read("u1", []).user["user_price_mean"] == 40.0


def test_recent_items_keep_newest_fifty_with_event_types(
    store: FeatureStore, make_event: EventFactory
) -> None:
    events = [make_event(i, item_id=f"i{i}") for i in range(55)]
    events.append(make_event(60, item_id="i54", event_type="cart_add"))

    store.apply_batch(events)
    recent = store.recent_items("u1")

    assert len(recent) == 50
    assert (recent[0].item_id, recent[0].event_type) == ("i54", EventType.CART_ADD)
    assert (recent[1].item_id, recent[1].event_type) == ("i54", EventType.CLICK)
    assert recent[-1].item_id == "i6"


def test_purchased_items_are_unique_and_newest_first(
    store: FeatureStore, make_event: EventFactory
) -> None:
    store.apply_batch(
        [
            make_event(0, item_id="a", event_type="purchase"),
            make_event(1, item_id="b", event_type="purchase"),
            make_event(2, item_id="a", event_type="purchase"),
            make_event(3, item_id="c"),
        ]
    )

    assert store.purchased_items("u1") == ("a", "b")
    assert store.read("u1", ["a", "c"]).items["a"]["pair_is_purchased"] == 1.0
    assert store.read("u1", ["a", "c"]).items["c"]["pair_is_purchased"] == 0.0


def test_affinity_decays_with_event_time(
    store: FeatureStore, catalog: CatalogWriter, make_event: EventFactory
) -> None:
    add_item(catalog, "a", category_id="c1", brand="b1")
    add_item(catalog, "b", category_id="c2", brand="b1")
    tau = store.config.affinity_tau_seconds

    store.apply_batch(
        [
            make_event(0, item_id="a"),
            make_event(DAY, item_id="b", event_type="cart_add"),
        ]
    )
    vectors = store.read("u1", ["a", "b"])

    c1 = math.exp(-DAY / tau)
    assert vectors.profile.category_affinity["c2"] == pytest.approx(3.0, rel=1e-5)
    assert vectors.profile.category_affinity["c1"] == pytest.approx(c1, rel=1e-5)
    assert vectors.profile.brand_affinity["b1"] == pytest.approx(3.0 + c1, rel=1e-5)
    assert list(vectors.profile.category_affinity) == ["c2", "c1"]
    assert vectors.items["a"]["pair_category_affinity"] == pytest.approx(
        c1 / 3.0, rel=1e-5
    )
    assert vectors.items["b"]["pair_brand_affinity"] == 1.0


def test_affinity_of_late_event_equals_in_order_result(
    store: FeatureStore, catalog: CatalogWriter, make_event: EventFactory
) -> None:
    add_item(catalog, "a", category_id="c1")
    add_item(catalog, "b", category_id="c2")

    store.apply_batch(
        [make_event(DAY, item_id="b"), make_event(0, item_id="a", user_id="u1")]
    )
    store.apply_batch(
        [
            make_event(0, item_id="a", user_id="u2"),
            make_event(DAY, item_id="b", user_id="u2"),
        ]
    )

    late = store.profile("u1").category_affinity
    in_order = store.profile("u2").category_affinity
    assert late["c1"] == pytest.approx(in_order["c1"], rel=1e-5)
    assert late["c2"] == pytest.approx(in_order["c2"], rel=1e-5)


# --- idempotence -----------------------------------------------------------


def test_duplicate_event_changes_nothing(
    store: FeatureStore, make_event: EventFactory
) -> None:
    first = make_event(0, event_id="x1", item_id="a")
    second = make_event(30, item_id="b")
    store.apply_batch([first, second], [EventPosition(0, 0), EventPosition(0, 1)])
    before = snapshot_all(store)

    results = store.apply_batch([first], [EventPosition(0, 7)])

    assert results[0].status is EventStatus.DUPLICATE
    assert results[0].user_features == {}
    assert snapshot_all(store) == before


def test_duplicate_within_one_batch_is_applied_once(
    store: FeatureStore, make_event: EventFactory
) -> None:
    event = make_event(0, event_id="x1")

    results = store.apply_batch(
        [event, event], [EventPosition(0, 0), EventPosition(0, 1)]
    )

    assert [r.status for r in results] == [EventStatus.APPLIED, EventStatus.DUPLICATE]
    assert store.read("u1", ["a"]).items["a"]["item_click_count_1h"] == 1.0
    assert store.read("u1", []).user["user_click_count_1h"] == 1.0


def test_redelivered_event_is_reported_with_current_features(
    store: FeatureStore, make_event: EventFactory
) -> None:
    events = [make_event(0), make_event(10)]
    positions = [EventPosition(0, 5), EventPosition(0, 6)]
    store.apply_batch(events, positions)
    before = snapshot_all(store)

    results = store.apply_batch(events, positions)

    assert [r.status for r in results] == [EventStatus.REDELIVERED] * 2
    assert results[0].user_features["user_click_count_1h"] == 2.0
    assert results[0].item_features["item_click_count_1h"] == 2.0
    assert snapshot_all(store) == before


def test_crash_between_steps_applies_items_once(
    store: FeatureStore,
    make_event: EventFactory,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = [make_event(0, item_id="a"), make_event(60, item_id="b")]
    positions = [EventPosition(0, 0), EventPosition(0, 1)]
    clean = FeatureStore(redis_client, store.keys.prefix + "c")
    clean.apply_batch(events, positions)
    original = store._fan_out

    def crash(*args: Any) -> Any:
        raise redis.exceptions.ConnectionError("connection lost")

    monkeypatch.setattr(store, "_fan_out", crash)
    with pytest.raises(redis.exceptions.ConnectionError):
        store.apply_batch(events, positions)
    monkeypatch.setattr(store, "_fan_out", original)
    results = store.apply_batch(events, positions)

    assert [r.status for r in results] == [EventStatus.REDELIVERED] * 2
    assert snapshot_all(store) == snapshot_all(clean)
    for key in redis_client.scan_iter(f"{clean.keys.prefix}:*"):
        redis_client.delete(key)


def test_fan_out_run_twice_applies_once(
    store: FeatureStore,
    make_event: EventFactory,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = [make_event(0, item_id="a"), make_event(60, item_id="b")]
    clean = FeatureStore(redis_client, store.keys.prefix + "c")
    clean.apply_batch(events)
    original = store._fan_out

    def twice(*args: Any) -> Any:
        original(*args)
        return original(*args)

    monkeypatch.setattr(store, "_fan_out", twice)
    store.apply_batch(events)

    assert snapshot_all(store) == snapshot_all(clean)
    for key in redis_client.scan_iter(f"{clean.keys.prefix}:*"):
        redis_client.delete(key)


def test_scripts_are_reloaded_after_script_flush(
    store: FeatureStore, make_event: EventFactory, redis_client: redis.Redis
) -> None:
    redis_client.script_flush()

    results = store.apply_batch([make_event(0)])

    assert results[0].status is EventStatus.APPLIED


# --- snapshots ---------------------------------------------------------------


def test_snapshots_hold_features_before_each_event(
    store: FeatureStore, make_event: EventFactory
) -> None:
    results = store.apply_batch(
        [make_event(0), make_event(10), make_event(20, user_id="u2")]
    )

    assert results[0].user_features["user_click_count_1h"] == 0.0
    assert results[0].item_features["item_click_count_1h"] == 0.0
    assert results[1].user_features["user_click_count_1h"] == 1.0
    assert results[1].item_features["item_click_count_1h"] == 1.0
    assert results[1].item_features["pair_recent_event_count"] == 1.0
    assert results[2].user_features["user_click_count_1h"] == 0.0
    assert results[2].item_features["item_click_count_1h"] == 2.0


# --- items -------------------------------------------------------------------


def test_item_counts_and_smoothed_rates(
    store: FeatureStore, make_event: EventFactory
) -> None:
    store.apply_batch(
        [
            make_event(0, item_id="a", user_id="u1"),
            make_event(1, item_id="a", user_id="u2"),
            make_event(2, item_id="a", user_id="u1", event_type="cart_add"),
            make_event(3, item_id="b", user_id="u3"),
            make_event(4, item_id="b", user_id="u3"),
        ]
    )

    items = store.read("u1", ["a", "new"]).items

    # Shop: 4 clicks, 1 cart add, 0 purchases; priors (1+1)/(4+2) and (0+1)/(1+2).
    view_prior, cart_prior = 2.0 / 6.0, 1.0 / 3.0
    assert items["a"]["item_click_count_1h"] == 2.0
    assert items["a"]["item_cart_add_count_24h"] == 1.0
    assert items["a"]["item_view_to_cart_rate_7d"] == pytest.approx(
        (1.0 + 20.0 * view_prior) / (2.0 + 20.0)
    )
    assert items["a"]["item_cart_to_purchase_rate_7d"] == pytest.approx(
        (0.0 + 20.0 * cart_prior) / (1.0 + 20.0)
    )
    assert items["new"]["item_view_to_cart_rate_7d"] == pytest.approx(view_prior)
    assert 0.0 < items["new"]["item_cart_to_purchase_rate_7d"] < 1.0


def test_item_catalog_numbers_in_vector(
    store: FeatureStore, catalog: CatalogWriter
) -> None:
    add_item(catalog, "a", price=12.5, stock=0, is_consumable=True, brand="b")

    vectors = store.read("u1", ["a", "missing"], at=T)

    assert vectors.items["a"]["item_price"] == 12.5
    assert vectors.items["a"]["item_is_in_stock"] == 0.0
    assert vectors.items["a"]["item_is_consumable"] == 1.0
    assert vectors.items["a"]["item_has_catalog"] == 1.0
    assert vectors.items["missing"]["item_has_catalog"] == 0.0
    assert vectors.items["missing"]["item_is_in_stock"] == 1.0
    assert vectors.attributes["a"].brand == "b"
    assert vectors.attributes["a"].is_in_stock is False


# --- item to item and trending -------------------------------------------------


def test_covisitation_pairs_items_of_one_session(
    store: FeatureStore, make_event: EventFactory
) -> None:
    tau = store.config.pair_tau_seconds
    store.apply_batch(
        [
            make_event(0, item_id="a"),
            make_event(60, item_id="b"),
            make_event(120, item_id="c"),
            make_event(120 + 3600, item_id="d"),
        ]
    )

    pairs = dict(store.covisited(["a"], 10, at=T + 120))

    assert set(pairs) == {"b", "c"}
    assert pairs["b"] == pytest.approx(math.exp(-60 / tau), rel=1e-9)
    assert pairs["c"] == pytest.approx(1.0, rel=1e-9)
    assert store.covisited(["d"], 10) == []


def test_covisitation_sums_scores_of_several_seeds(
    store: FeatureStore, make_event: EventFactory
) -> None:
    store.apply_batch(
        [
            make_event(0, item_id="a"),
            make_event(1, item_id="b"),
            make_event(2, item_id="c"),
        ]
    )

    ranked = store.covisited(["a", "b"], 10)

    assert [item for item, _ in ranked] == ["c"]


def test_co_cart_and_co_purchase_by_event_type(
    store: FeatureStore, make_event: EventFactory
) -> None:
    store.apply_batch(
        [
            make_event(0, item_id="a", event_type="cart_add"),
            make_event(1, item_id="b"),
            make_event(2, item_id="c", event_type="cart_add"),
            make_event(3, item_id="a", event_type="purchase"),
            make_event(4, item_id="c", event_type="purchase"),
        ]
    )

    assert [item for item, _ in store.co_cart(["a"], 10)] == ["c"]
    assert [item for item, _ in store.co_purchase(["c"], 10)] == ["a"]
    assert store.co_cart(["b"], 10) == []


def test_item_pair_lists_are_capped(
    redis_client: redis.Redis, redis_settings: Any, make_event: EventFactory
) -> None:
    config = FeatureStoreConfig(max_pairs=2, max_partners=5)
    store = FeatureStore(redis_client, redis_settings.key_prefix, config)

    store.apply_batch([make_event(i, item_id=f"i{i}") for i in range(5)])

    assert redis_client.zcard(store.keys.covisited("i4")) == 2
    assert [item for item, _ in store.covisited(["i0"], 10)] == ["i4", "i3"]


def test_trending_weighs_event_types_and_splits_categories(
    store: FeatureStore, catalog: CatalogWriter, make_event: EventFactory
) -> None:
    add_item(catalog, "a", category_id="c1")
    add_item(catalog, "b", category_id="c1")
    add_item(catalog, "c", category_id="c2")

    store.apply_batch(
        [
            make_event(0, item_id="a", user_id="u1"),
            make_event(0, item_id="a", user_id="u2"),
            make_event(0, item_id="b", event_type="cart_add"),
            make_event(0, item_id="c", user_id="u3"),
        ]
    )
    trending = store.trending(3, at=T)

    assert [item for item, _ in trending] == ["b", "a", "c"]
    assert [score for _, score in trending] == pytest.approx([3.0, 2.0, 1.0])
    assert [item for item, _ in store.trending_in_category("c1", 5)] == ["b", "a"]
    assert store.read("u1", ["a"], at=T + DAY).items["a"]["item_trending_score"] == (
        pytest.approx(2.0 * math.exp(-1.0))
    )


# --- memory bounds -----------------------------------------------------------------


def test_every_key_has_a_ttl(
    store: FeatureStore, catalog: CatalogWriter, make_event: EventFactory
) -> None:
    add_item(catalog, "a", category_id="c1")
    store.apply_batch(
        [
            make_event(0, item_id="a", event_type="cart_add"),
            make_event(1, item_id="b", event_type="cart_add"),
            make_event(2, item_id="a", event_type="purchase"),
            make_event(3, item_id="b", event_type="purchase"),
        ]
    )

    keys = list(store.client.scan_iter(f"{store.keys.prefix}:*"))

    assert len(keys) >= 10
    assert all(store.client.ttl(key) > 0 for key in keys)


def test_outbox_is_deleted_after_a_batch(
    store: FeatureStore, make_event: EventFactory
) -> None:
    store.apply_batch([make_event(0), make_event(5, item_id="b")])

    assert not store.client.exists(store.keys.user_outbox("u1"))


def snapshot_all(store: FeatureStore) -> dict[str, Any]:
    """Every key under the store's prefix with its value, prefix removed."""
    client, prefix = store.client, store.keys.prefix
    state: dict[str, Any] = {}
    for key in client.scan_iter(f"{prefix}:*"):
        name = key.decode()[len(prefix) :]
        kind = client.type(key)
        if kind == b"hash":
            state[name] = client.hgetall(key)
        elif kind == b"zset":
            state[name] = client.zrange(key, 0, -1, withscores=True)
        else:
            state[name] = client.dump(key)
    return state


def test_calls_of_any_length_leave_same_state(
    store: FeatureStore, make_event: EventFactory, redis_client: redis.Redis
) -> None:
    # Six users over ten items, so that calls repeat users and items.
    kinds = ["click", "click", "click", "cart_add", "purchase"]
    events = [
        make_event(
            20.0 * index,
            user_id=f"u{index * 7 % 6}",
            item_id=f"i{index * 3 % 10}",
            event_type=kinds[index * 11 % len(kinds)],
            price=10.0 + index % 4,
        )
        for index in range(120)
    ]
    positions = [EventPosition(0, offset) for offset in range(len(events))]
    split = FeatureStore(redis_client, store.keys.prefix + "s")
    whole_results = store.apply_batch(events, positions)
    split_results = []
    for start in range(0, len(events), 7):
        split_results += split.apply_batch(
            events[start : start + 7], positions[start : start + 7]
        )
    # The smoothed rates take the shop-wide prior as it was when the call began.
    prior_rates = {"item_view_to_cart_rate_7d", "item_cart_to_purchase_rate_7d"}

    def without_prior(features: dict[str, float]) -> dict[str, float]:
        return {
            name: value for name, value in features.items() if name not in prior_rates
        }

    assert snapshot_all(store) == snapshot_all(split)
    for whole, part in zip(whole_results, split_results, strict=True):
        assert whole.status == part.status
        assert whole.user_features == part.user_features
        assert without_prior(whole.item_features) == without_prior(part.item_features)
    for key in redis_client.scan_iter(f"{split.keys.prefix}:*"):
        redis_client.delete(key)


def test_user_hash_stays_compact_with_long_history(
    store: FeatureStore, make_event: EventFactory
) -> None:
    store.apply_batch(
        [make_event(i, item_id=f"item-{i}", event_type="purchase") for i in range(70)]
    )

    encoding = store.client.object("encoding", store.keys.user("u1"))

    assert encoding == b"listpack"
    assert len(store.recent_items("u1")) == 50
    assert store.purchased_items("u1")[0] == "item-69"
