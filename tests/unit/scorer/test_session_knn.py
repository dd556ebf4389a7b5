from __future__ import annotations

import math

import pytest

from services.scorer import session_knn
from services.scorer.session_knn import SessionIndex, looked_up_items


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


def test_recommend_limit_keeps_best_items() -> None:
    index = _index()
    for item_id in ("d", "c", "b"):
        index.add("old", item_id, 100.0)
    index.add("now", "c", 200.0)

    full = index.recommend("now", 200.0, neighbours=10, half_life_seconds=3600.0)
    limited = index.recommend(
        "now", 200.0, neighbours=10, half_life_seconds=3600.0, limit=2
    )

    assert limited == full[:2]
    assert [item_id for item_id, _ in full] == ["c", "b", "d"]


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


def test_session_index_votes_fall_from_latest_shared_item() -> None:
    index = _index()
    for position, item_id in enumerate(["first", "a", "between", "b", "last"]):
        index.add("past", item_id, 100.0 + position)
    index.add("now", "a", 200.0)
    index.add("now", "b", 201.0)

    votes = dict(
        index.recommend("now", 201.0, 10, 3600.0, neighbour_position_decay=3.0)
    )

    assert votes["last"] == pytest.approx(votes["b"] * math.exp(-1.0 / 3.0))
    assert votes["first"] == pytest.approx(votes["b"] * math.exp(-3.0 / 3.0))


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


def _add_session(index: SessionIndex, key: str, items: list[str]) -> None:
    for position, item_id in enumerate(items):
        index.add(key, item_id, float(position))


def _long_session_index() -> SessionIndex:
    """Index a 20-item session and neighbours sharing its latest and oldest items."""
    index = _index(max_items=30)
    _add_session(index, "n1", ["c2", "c19", "p1"])
    _add_session(index, "n2", ["c5", "c18", "p2", "c0"])
    _add_session(index, "n3", ["c17", "p3", "c1"])
    _add_session(index, "now", [f"c{position}" for position in range(20)])
    return index


def _look_up_every_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``recommend`` look up every item of the current session."""
    monkeypatch.setattr(session_knn, "LEFT_OUT_WEIGHT", 1e-300)


def test_looked_up_items_grows_with_position_decay() -> None:
    assert looked_up_items(50, position_decay=2.0) == 16
    assert looked_up_items(50, position_decay=3.0) == 25


def test_looked_up_items_keeps_short_session() -> None:
    assert looked_up_items(5, position_decay=2.0) == 5


def test_session_index_skips_old_only_neighbour() -> None:
    index = _long_session_index()
    _add_session(index, "old-only", ["c0", "via-old"])

    recommended = dict(
        index.recommend("now", 20.0, neighbours=3, half_life_seconds=1e9)
    )

    assert "p1" in recommended
    assert "via-old" not in recommended


def test_session_index_looks_up_all_when_few_sessions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = _long_session_index()
    _add_session(index, "old-only", ["c0", "via-old"])
    recommended = index.recommend("now", 20.0, neighbours=10, half_life_seconds=1e9)

    _look_up_every_item(monkeypatch)
    full = index.recommend("now", 20.0, neighbours=10, half_life_seconds=1e9)

    assert "via-old" in dict(recommended)
    assert recommended == full


def test_session_index_long_session_near_full_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = _long_session_index()
    recommended = index.recommend("now", 20.0, neighbours=3, half_life_seconds=1e9)

    _look_up_every_item(monkeypatch)
    full = index.recommend("now", 20.0, neighbours=3, half_life_seconds=1e9)

    assert recommended != full
    assert [item_id for item_id, _ in recommended] == [item_id for item_id, _ in full]
    assert [score for _, score in recommended] == pytest.approx(
        [score for _, score in full], rel=1e-3
    )


def test_session_index_short_session_equals_full_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = _index()
    _add_session(index, "n1", ["a", "x", "e"])
    _add_session(index, "n2", ["b", "y"])
    _add_session(index, "n3", ["z", "d", "a"])
    _add_session(index, "now", ["a", "b", "c", "d", "e"])
    recommended = index.recommend("now", 5.0, neighbours=2, half_life_seconds=1e9)

    _look_up_every_item(monkeypatch)
    full = index.recommend("now", 5.0, neighbours=2, half_life_seconds=1e9)

    assert recommended == full


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
