"""Feature vectors computed from stored state, without Redis."""

from __future__ import annotations

import math

import pytest

from schemas.features import (
    ITEM_FEATURES,
    PAIR_FEATURES,
    USER_FEATURES,
    WINDOWS,
    FeatureKeys,
)
from services.common.redis_features import (
    EventStatus,
    FeatureStoreConfig,
    _decode_map,
    decode_hash_reply,
    item_features,
    pair_features,
    user_features,
)

CONFIG = FeatureStoreConfig()
T = 1_569_888_000.0  # 2019-10-01T00:00:00Z, a multiple of every bucket width


def bucket(code: str, window_name: str, timestamp: float) -> str:
    window = next(w for w in WINDOWS if w.name == window_name)
    return f"{code}{window.code}{window.bucket(timestamp)}"


def test_user_features_of_empty_state_have_every_name() -> None:
    features = user_features({}, T, CONFIG)

    assert tuple(features) == USER_FEATURES
    assert features["user_seconds_since_last_event"] == 7 * 86_400
    assert features["user_session_event_count"] == 0.0


def test_window_edges_at_reference_time() -> None:
    state = {
        bucket("c", "1h", T): "2",
        bucket("c", "1h", T - 3600): "5",
        bucket("c", "1h", T - 3300): "7",
    }

    features = user_features(state, T + 10, CONFIG)

    # The 1 h window at T+10 is the twelve 5-minute buckets T-3300 .. T+299.
    assert features["user_click_count_1h"] == 9.0


def test_bucket_after_reference_time_is_not_counted() -> None:
    state = {bucket("a", "24h", T + 7200): "3"}

    features = user_features(state, T, CONFIG)

    assert features["user_cart_add_count_24h"] == 0.0


def test_new_item_rates_between_zero_and_one() -> None:
    features = item_features({}, {}, {}, T, CONFIG)

    assert tuple(features) == ITEM_FEATURES
    assert features["item_view_to_cart_rate_7d"] == pytest.approx(0.5)
    assert features["item_cart_to_purchase_rate_7d"] == pytest.approx(0.5)
    assert features["item_has_catalog"] == 0.0


def test_item_rate_moves_from_prior_towards_own_rate() -> None:
    day = WINDOWS[-1].bucket(T)
    totals = {f"cd{day}": "998", f"ad{day}": "99"}
    state = {f"cd{day}": "100", f"ad{day}": "50"}

    features = item_features(state, {}, totals, T, CONFIG)

    prior = 100.0 / 1000.0
    assert features["item_view_to_cart_rate_7d"] == pytest.approx(
        (50.0 + 20.0 * prior) / (100.0 + 20.0)
    )


def test_trending_score_decays_with_reference_time() -> None:
    log_score = (T - CONFIG.anchor) / CONFIG.trend_tau_seconds + math.log(4.0)

    features = item_features({"tr": repr(log_score)}, {}, {}, T + 86_400, CONFIG)

    assert features["item_trending_score"] == pytest.approx(4.0 * math.exp(-1.0))


def test_trending_score_before_newest_event_is_capped() -> None:
    log_score = (T + 730 * 86_400 - CONFIG.anchor) / CONFIG.trend_tau_seconds

    features = item_features({"tr": repr(log_score)}, {}, {}, T, CONFIG)

    assert features["item_trending_score"] == pytest.approx(math.exp(50.0))


def test_review_counts_alone_are_not_a_catalog_record() -> None:
    reviewed_only = item_features({}, {"rn": "2", "rs": "9"}, {}, T, CONFIG)
    recorded = item_features({}, {"consumable": "0"}, {}, T, CONFIG)

    assert reviewed_only["item_has_catalog"] == 0.0
    assert reviewed_only["item_review_count"] == 2.0
    assert recorded["item_has_catalog"] == 1.0


def test_pair_features_clip_price_zscore_and_scale_affinity() -> None:
    user = {"pn": "2", "ps": "20", "pq": "202", "C:c1": "2", "C:c2": "4", "B:b": "1"}
    catalog = {"category": "c1", "brand": "b", "price": "1000"}

    features = pair_features(user, "i1", catalog)

    assert tuple(features) == PAIR_FEATURES
    assert features["pair_price_zscore"] == 5.0
    assert features["pair_category_affinity"] == 0.5
    assert features["pair_brand_affinity"] == 1.0


def test_pair_features_count_recent_events_and_purchases() -> None:
    user = {"r": "ci1\x1fai1\x1fci2", "pi": "i1"}

    features = pair_features(user, "i1", {})

    assert features["pair_recent_event_count"] == 2.0
    assert features["pair_is_purchased"] == 1.0


def test_decode_map_joins_chunks_split_inside_a_character() -> None:
    value = "é" * 40  # 80 bytes, split by the script at byte 60
    raw = value.encode()

    state = _decode_map({b"r#2": raw[60:], b"r#1": raw[:60], b"n": b"3"})

    assert state == {"n": "3", "r": value}


@pytest.mark.parametrize(
    "reply",
    [
        {b"r#2": "é".encode() * 40, b"r#1": b"ab", b"n": b"3"},
        {b"price": b"\xff9.5", b"brand": b"acme"},
        {b"n": 3, b"lt": b"1569888000"},
        {b"tr": b"7215.08", b"cm5232961": b"8"},
    ],
    ids=["chunked", "invalid-utf8", "integer-value", "plain"],
)
def test_decode_hash_reply_matches_decode_map(reply: dict[bytes, object]) -> None:
    assert decode_hash_reply(reply) == _decode_map(reply)


def test_keys_of_one_user_share_hash_tag() -> None:
    keys = FeatureKeys("cw")

    assert keys.user("42") == "cw:{u:42}"
    assert keys.user_outbox("42").startswith("cw:{u:42}")
    assert keys.covisited("7").startswith("cw:{i:7}")


@pytest.mark.parametrize(
    ("status", "is_new"),
    [
        (EventStatus.APPLIED, True),
        (EventStatus.LATE, True),
        (EventStatus.STALE, True),
        (EventStatus.REDELIVERED, False),
        (EventStatus.DUPLICATE, False),
    ],
)
def test_event_status_is_new(status: EventStatus, is_new: bool) -> None:
    assert status.is_new is is_new
