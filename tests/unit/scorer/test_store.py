from __future__ import annotations

import pytest

from services.common.redis_features import attributes_from_catalog, pair_features
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
]


def _cached(item_id: str, catalog: dict[str, str]) -> _CachedItem:
    return _CachedItem.of({}, catalog, attributes_from_catalog(item_id, catalog), 0.0)


@pytest.mark.parametrize(("item_id", "catalog"), CATALOGS)
def test_pair_context_matches_feature_store_pair_features(
    item_id: str, catalog: dict[str, str]
) -> None:
    expected = pair_features(USER_STATE, item_id, catalog)

    found = _PairContext(USER_STATE).features(item_id, _cached(item_id, catalog))

    assert found == pytest.approx(expected)


def test_pair_context_handles_user_without_history() -> None:
    expected = pair_features({}, "i1", {"category": "phones", "price": "1.0"})

    catalog = {"category": "phones", "price": "1.0"}
    found = _PairContext({}).features("i1", _cached("i1", catalog))

    assert found == expected
