from __future__ import annotations

import pytest

from services.scorer.session_knn import SessionIndex


def _index(**overrides: int) -> SessionIndex:
    sizes = {"max_sessions": 100, "max_items": 10, "samples_per_item": 50}
    sizes.update(overrides)
    return SessionIndex(**sizes)


def test_session_index_recommends_items_of_sessions_sharing_an_item() -> None:
    index = _index()
    index.add("old", "a", 100.0)
    index.add("old", "b", 101.0)
    index.add("other", "x", 100.0)
    index.add("other", "y", 101.0)
    index.add("now", "a", 200.0)

    recommended = index.recommend("now", 200.0, neighbours=10, half_life_seconds=3600.0)

    assert [item_id for item_id, _ in recommended] == ["a", "b"]


def test_session_index_recommends_items_of_current_session() -> None:
    index = _index()
    index.add("past", "shoes", 100.0)
    index.add("past", "socks", 101.0)
    index.add("past", "shoes", 102.0)
    index.add("now", "shoes", 200.0)
    index.add("now", "socks", 201.0)

    recommended = dict(
        index.recommend("now", 201.0, neighbours=10, half_life_seconds=3600.0)
    )

    assert set(recommended) == {"shoes", "socks"}
    assert recommended["shoes"] > 0.0


def test_session_index_prefers_items_near_shared_item() -> None:
    index = _index()
    for position, item_id in enumerate(["far", "middle", "near", "shared"]):
        index.add("past", item_id, 100.0 + position)
    index.add("now", "shared", 200.0)

    recommended = dict(
        index.recommend("now", 200.0, neighbours=10, half_life_seconds=3600.0)
    )

    assert recommended["near"] > recommended["middle"]
    assert recommended["middle"] > recommended["far"]


def test_session_index_prefers_recent_neighbour_sessions() -> None:
    index = _index()
    index.add("stale", "a", 0.0)
    index.add("stale", "old-pick", 1.0)
    index.add("fresh", "a", 9000.0)
    index.add("fresh", "new-pick", 9001.0)
    index.add("now", "a", 10_000.0)

    recommended = dict(
        index.recommend("now", 10_000.0, neighbours=10, half_life_seconds=600.0)
    )

    assert recommended["new-pick"] > recommended["old-pick"]


def test_session_index_weighs_later_items_of_current_session_more() -> None:
    index = _index()
    index.add("n1", "first", 0.0)
    index.add("n1", "via-first", 1.0)
    index.add("n2", "last", 0.0)
    index.add("n2", "via-last", 1.0)
    index.add("now", "first", 10.0)
    index.add("now", "last", 11.0)

    recommended = dict(
        index.recommend("now", 11.0, neighbours=10, half_life_seconds=1e9)
    )

    assert recommended["via-last"] > recommended["via-first"]


def test_session_index_evicts_least_recent_session_when_full() -> None:
    index = _index(max_sessions=2)
    index.add("s1", "a", 0.0)
    index.add("s2", "b", 1.0)
    index.add("s3", "c", 2.0)

    assert len(index) == 2
    assert index.session_items("s1") == []


def test_session_index_evicts_sessions_beyond_total_items() -> None:
    index = _index(max_items=3, max_total_items=4)
    index.add("s1", "a", 0.0)
    index.add("s1", "b", 1.0)
    index.add("s2", "c", 2.0)
    index.add("s3", "d", 3.0)

    index.add("s3", "e", 4.0)

    assert index.session_items("s1") == []
    assert index.session_items("s2") == ["c"]
    assert index.session_items("s3") == ["d", "e"]


def test_session_index_total_ignores_repeated_item() -> None:
    index = _index(max_items=3, max_total_items=3)
    index.add("s1", "a", 0.0)
    index.add("s2", "b", 1.0)
    index.add("s2", "c", 2.0)

    index.add("s2", "b", 3.0)

    assert index.session_items("s1") == ["a"]
    assert index.session_items("s2") == ["c", "b"]


def test_session_index_total_counts_dropped_item() -> None:
    index = _index(max_items=2, max_total_items=3)
    index.add("s1", "a", 0.0)
    index.add("s2", "b", 1.0)
    index.add("s2", "c", 2.0)

    index.add("s2", "d", 3.0)

    assert index.session_items("s1") == ["a"]
    assert index.session_items("s2") == ["c", "d"]


def test_session_index_total_forgets_evicted_session() -> None:
    index = _index(max_sessions=1, max_items=3, max_total_items=3)
    index.add("s1", "a", 0.0)
    index.add("s1", "b", 1.0)
    index.add("s2", "c", 2.0)

    index.add("s2", "d", 3.0)
    index.add("s2", "e", 4.0)

    assert index.session_items("s2") == ["c", "d", "e"]


def test_session_index_keeps_at_most_max_items_per_session() -> None:
    index = _index(max_items=2)
    for position, item_id in enumerate("abc"):
        index.add("s", item_id, float(position))

    assert index.session_items("s") == ["b", "c"]


def test_session_index_is_unchanged_by_a_replayed_event() -> None:
    index = _index()
    index.add("s", "a", 0.0)
    index.add("s", "b", 1.0)

    index.add("s", "b", 1.0)

    assert index.session_items("s") == ["a", "b"]


def test_session_index_rejects_non_positive_sizes() -> None:
    with pytest.raises(ValueError, match="max_sessions=0"):
        SessionIndex(max_sessions=0, max_items=1, samples_per_item=1)


def test_session_index_rejects_total_items_below_max_items() -> None:
    with pytest.raises(ValueError, match="max_total_items=2 is below max_items=3"):
        SessionIndex(max_sessions=1, max_items=3, samples_per_item=1, max_total_items=2)
