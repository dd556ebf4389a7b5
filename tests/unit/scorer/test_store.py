from __future__ import annotations

import pytest

from schemas.features import PAIR_FEATURES
from services.common.redis_features import (
    attributes_from_catalog,
    pair_features,
    profile_from_hash,
)
from services.scorer.store import _CachedItem, _PairContext

USER_STATE = {
    "C:phones": "4.0",
    "C:cases": "1.0",
    "B:acme": "2.0",
    "B:other": "8.0",
    "pn": "3",
    "ps": "300.0",
    "pq": "50000.0",
    "r": "\x1f".join(["ci1", "ai1", "ci2"]),
    "pi": "i3",
}

CATALOGS = [
    ("i1", {"category": "phones", "brand": "acme", "price": "150.0"}),
    ("i2", {"category": "cases", "brand": "other", "price": "5.0"}),
    ("i3", {"category": "unknown"}),
    ("i4", {}),
    ("i5", {"category": "phones", "price": "100000.0"}),
]


def _context(state: dict[str, str]) -> _PairContext:
    return _PairContext(state, profile_from_hash("u1", state))


def _cached(item_id: str, catalog: dict[str, str]) -> _CachedItem:
    return _CachedItem.of({}, catalog, attributes_from_catalog(item_id, catalog), 0.0)


@pytest.mark.parametrize(("item_id", "catalog"), CATALOGS)
def test_pair_context_matches_feature_store_pair_features(
    item_id: str, catalog: dict[str, str]
) -> None:
    expected = pair_features(USER_STATE, item_id, catalog)

    found = _context(USER_STATE).features(item_id, _cached(item_id, catalog))

    assert found == pytest.approx(expected)


def test_pair_context_handles_user_without_history() -> None:
    expected = pair_features({}, "i1", {"category": "phones", "price": "1.0"})

    catalog = {"category": "phones", "price": "1.0"}
    found = _context({}).features("i1", _cached("i1", catalog))

    assert found == expected


def test_pair_context_columns_equal_pair_features_of_each_item() -> None:
    expected = [
        [pair_features(USER_STATE, item_id, catalog)[name] for name in PAIR_FEATURES]
        for item_id, catalog in CATALOGS
    ]

    found = _context(USER_STATE).columns(
        [item_id for item_id, _ in CATALOGS],
        [_cached(item_id, catalog) for item_id, catalog in CATALOGS],
    )

    assert found.tolist() == expected
