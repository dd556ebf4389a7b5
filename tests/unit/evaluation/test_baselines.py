from __future__ import annotations

import random

import pytest

from schemas.events import EventType
from services.evaluation.baselines import (
    CoVisitation,
    MostPopular,
    SessionKnn,
    Trending,
    _GrowingScores,
    build_baselines,
)
from services.evaluation.records import EventRecord
from services.evaluation.settings import BaselineSettings

NOTHING: frozenset[str] = frozenset()


def record(item_id: str, session: str = "s1", seconds: float = 0.0) -> EventRecord:
    return EventRecord(
        event_id=f"{session}-{item_id}-{seconds}",
        event_type=EventType.CLICK,
        user_id=f"user-{session}",
        item_id=item_id,
        timestamp=seconds,
        session_key=session,
    )


def test_most_popular_orders_by_count() -> None:
    baseline = MostPopular(max_k=3)

    for item_id in ["a", "b", "b", "c", "c", "c"]:
        baseline.update(record(item_id))

    assert baseline.recommend(record("x"), 3, NOTHING) == ["c", "b", "a"]


def test_most_popular_breaks_ties_by_first_appearance() -> None:
    baseline = MostPopular(max_k=3)

    for item_id in ["b", "a", "a", "b"]:
        baseline.update(record(item_id))

    assert baseline.recommend(record("x"), 2, NOTHING) == ["b", "a"]


def test_most_popular_skips_excluded_items() -> None:
    baseline = MostPopular(max_k=2)

    for item_id in ["a", "a", "b", "c"]:
        baseline.update(record(item_id))

    assert baseline.recommend(record("a"), 2, frozenset({"a"})) == ["b", "c"]


def test_growing_scores_keep_exact_top_list() -> None:
    rng = random.Random(7)
    scores = _GrowingScores(capacity=5)
    totals: dict[str, float] = {}
    first_seen: dict[str, int] = {}

    for _ in range(2000):
        item_id = f"i{rng.randrange(40)}"
        amount = rng.random()
        scores.add(item_id, amount)
        totals[item_id] = totals.get(item_id, 0.0) + amount
        first_seen.setdefault(item_id, len(first_seen))
    expected = sorted(totals, key=lambda i: (-totals[i], first_seen[i]))[:5]

    assert scores.best(5, ()) == expected


def test_trending_prefers_recent_events_over_old_ones() -> None:
    baseline = Trending(max_k=2, half_life_seconds=60.0)

    for _ in range(3):
        baseline.update(record("old", seconds=0.0))
    for _ in range(2):
        baseline.update(record("new", seconds=600.0))

    assert baseline.recommend(record("x"), 2, NOTHING) == ["new", "old"]


def test_trending_weighs_one_half_life_by_half() -> None:
    baseline = Trending(max_k=2, half_life_seconds=60.0)

    baseline.update(record("a", seconds=0.0))
    baseline.update(record("a", seconds=0.0))
    baseline.update(record("b", seconds=59.0))

    # a weighs 2 * 2**(-59/60) > 1 at t=59, so it stays ahead of b.
    assert baseline.recommend(record("x"), 2, NOTHING) == ["a", "b"]


def test_trending_survives_rescaling_over_long_time() -> None:
    baseline = Trending(max_k=2, half_life_seconds=1.0)

    baseline.update(record("a", seconds=0.0))
    baseline.update(record("b", seconds=10_000.0))
    baseline.update(record("a", seconds=20_000.0))
    baseline.update(record("a", seconds=20_000.0))

    assert baseline.recommend(record("x"), 2, NOTHING) == ["a", "b"]


def test_covisitation_recommends_items_of_shared_sessions() -> None:
    baseline = CoVisitation(max_k=3, window=5, context_items=1)
    for session, items in {"s1": "abc", "s2": "ab", "s3": "ad"}.items():
        for item_id in items:
            baseline.update(record(item_id, session))

    baseline.update(record("a", "s4"))
    listed = baseline.recommend(record("a", "s4"), 3, frozenset({"a"}))

    # b shares two sessions with a, c and d one each (tie broken by id).
    assert listed == ["b", "c", "d"]


def test_covisitation_fills_with_popular_items() -> None:
    baseline = CoVisitation(max_k=3, window=5, context_items=1)
    for item_id in ["p", "p", "q"]:
        baseline.update(record(item_id, f"solo-{item_id}"))

    baseline.update(record("new", "s9"))
    listed = baseline.recommend(record("new", "s9"), 3, frozenset({"new"}))

    assert listed == ["p", "q"]


def test_session_knn_votes_for_items_of_similar_sessions() -> None:
    baseline = SessionKnn(max_k=2, settings=BaselineSettings(knn_neighbors=1))
    for session, items in {"s1": "abx", "s2": "cdy"}.items():
        for item_id in items:
            baseline.update(record(item_id, session, seconds=1.0))

    baseline.update(record("a", "s3", seconds=2.0))
    baseline.update(record("b", "s3", seconds=3.0))
    listed = baseline.recommend(record("b", "s3", seconds=3.0), 1, frozenset("ab"))

    assert listed == ["x"]


def test_session_knn_prefers_items_near_the_shared_item() -> None:
    baseline = SessionKnn(max_k=2, settings=BaselineSettings())
    for item_id in "azb":
        baseline.update(record(item_id, "s1", seconds=1.0))

    baseline.update(record("a", "s2", seconds=2.0))
    listed = baseline.recommend(record("a", "s2", seconds=2.0), 2, frozenset("a"))

    # z sits one position from the shared item a, b two; the item id order
    # alone would put b first.
    assert listed == ["z", "b"]


def test_session_knn_weighs_recent_neighbour_sessions_higher() -> None:
    settings = BaselineSettings(knn_neighbors=1, knn_recency_decay_seconds=10.0)
    baseline = SessionKnn(max_k=2, settings=settings)
    for item_id in "ao":
        baseline.update(record(item_id, "old", seconds=0.0))
    for item_id in "an":
        baseline.update(record(item_id, "recent", seconds=100.0))

    baseline.update(record("a", "now", seconds=101.0))
    listed = baseline.recommend(record("a", "now", seconds=101.0), 1, frozenset("a"))

    assert listed == ["n"]


def test_build_baselines_names_every_baseline_once() -> None:
    names = [b.name for b in build_baselines(20, BaselineSettings())]

    assert names == ["most_popular", "trending", "covisitation", "session_knn"]


@pytest.mark.parametrize("baseline_index", range(4))
def test_baseline_lists_hold_no_duplicates_or_excluded_items(
    baseline_index: int,
) -> None:
    baseline = build_baselines(5, BaselineSettings())[baseline_index]
    rng = random.Random(baseline_index)

    for step in range(300):
        event = record(f"i{rng.randrange(30)}", f"s{rng.randrange(20)}", step)
        baseline.update(event)
        listed = baseline.recommend(event, 5, frozenset({event.item_id}))

        assert len(listed) == len(set(listed))
        assert event.item_id not in listed
        assert len(listed) <= 5
