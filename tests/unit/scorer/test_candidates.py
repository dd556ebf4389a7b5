from __future__ import annotations

from schemas.events import EventType
from schemas.features import ItemAttributes, RecentItem
from schemas.recommendations import CandidateSource
from services.scorer.candidates import (
    CandidateGenerator,
    EventContext,
    merge_shares,
    merge_sources,
    recency_weighted_seeds,
    source_shares,
    top_categories,
)
from services.scorer.protocols import Relation, UserHistory
from services.scorer.session_knn import SessionIndex
from services.scorer.settings import CandidateSettings, ScorerSettings

_WEIGHTS = CandidateSettings().source_weights()


def _context(item_id: str = "t", **overrides: object) -> EventContext:
    fields: dict[str, object] = {
        "user_id": "u1",
        "item_id": item_id,
        "event_type": EventType.CLICK,
        "event_time": 1000.0,
        "session_key": "u1/s1",
        "history": UserHistory(),
    }
    fields.update(overrides)
    return EventContext(**fields)  # type: ignore[arg-type]


def _generator(store, sessions: SessionIndex | None = None) -> CandidateGenerator:
    return CandidateGenerator(
        store, sessions or SessionIndex(100, 10, 10), CandidateSettings()
    )


def test_recency_weighted_seeds_decay_with_position() -> None:
    recent = [RecentItem("a", EventType.CLICK), RecentItem("b", EventType.CLICK)]

    seeds = recency_weighted_seeds("t", recent, count=10, decay=0.5)

    assert seeds == {"t": 1.0, "a": 0.5, "b": 0.25}


def test_recency_weighted_seeds_keep_newest_weight_of_repeated_item() -> None:
    recent = [RecentItem("a", EventType.CLICK), RecentItem("a", EventType.CART_ADD)]

    seeds = recency_weighted_seeds("t", recent, count=10, decay=0.5)

    assert seeds == {"t": 1.0, "a": 0.5}


def test_top_categories_put_current_intent_before_long_term_affinity() -> None:
    attributes = {"t": ItemAttributes("t", category_id="phones")}

    categories = top_categories({"t": 1.0}, attributes, {"books": 5.0, "toys": 1.0}, 2)

    assert categories == ["phones", "books"]


def test_merge_sources_sums_scores_and_keeps_strongest_source() -> None:
    merged = merge_sources(
        [
            (CandidateSource.COVISITATION, [("a", 1.0), ("b", 0.5)]),
            (CandidateSource.TRENDING, [("b", 10.0)]),
        ],
        exclude=[],
        limit=10,
        weights={CandidateSource.COVISITATION: 1.0, CandidateSource.TRENDING: 0.2},
    )

    by_item = {candidate.item_id: candidate for candidate in merged}
    assert by_item["b"].source_score == 0.5 + 0.2
    assert by_item["b"].source is CandidateSource.COVISITATION
    assert merged[0].item_id == "a"


def test_merge_sources_leaves_out_excluded_items() -> None:
    merged = merge_sources(
        [(CandidateSource.TRENDING, [("t", 1.0), ("a", 0.5)])],
        exclude=["t"],
        limit=10,
        weights=_WEIGHTS,
    )

    assert [candidate.item_id for candidate in merged] == ["a"]


def test_source_shares_scale_best_item_to_weight_and_drop_non_positive() -> None:
    shares = source_shares([("a", 4.0), ("b", 1.0), ("c", 0.0)], 0.5)

    assert shares == [("a", 0.5), ("b", 0.125)]


def test_source_shares_are_empty_for_source_of_weight_zero() -> None:
    shares = source_shares([("a", 4.0)], 0.0)

    assert shares == []


def test_merge_shares_keeps_first_source_on_equal_shares() -> None:
    merged = merge_shares(
        [
            (CandidateSource.COVISITATION, [("a", 0.5)]),
            (CandidateSource.TRENDING, [("a", 0.5)]),
        ],
        exclude=[],
        limit=10,
    )

    assert [(c.item_id, c.source, c.source_score) for c in merged] == [
        ("a", CandidateSource.COVISITATION, 1.0)
    ]


def test_merge_sources_scales_each_source_to_its_weight() -> None:
    merged = merge_sources(
        [
            (CandidateSource.COVISITATION, [("a", 4.0), ("b", 2.0)]),
            (CandidateSource.SESSION_KNN, [("c", 0.1)]),
            (CandidateSource.TRENDING, [("d", 9.0)]),
        ],
        exclude=[],
        limit=10,
        weights={
            CandidateSource.COVISITATION: 0.5,
            CandidateSource.SESSION_KNN: 2.0,
            CandidateSource.TRENDING: 0.0,
        },
    )

    assert [(c.item_id, c.source_score) for c in merged] == [
        ("c", 2.0),
        ("a", 0.5),
        ("b", 0.25),
    ]


def test_candidate_source_weights_read_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__TRENDING_WEIGHT", "0")
    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__SESSION_KNN_WEIGHT", "1.5")

    weights = ScorerSettings().candidates.source_weights()

    assert weights[CandidateSource.TRENDING] == 0.0
    assert weights[CandidateSource.SESSION_KNN] == 1.5
    assert weights[CandidateSource.COVISITATION] == 1.0


def test_products_propose_covisited_items_of_trigger(store) -> None:
    store.relations[Relation.COVISITATION] = {"t": [("n1", 3.0), ("n2", 1.0)]}

    [candidates] = _generator(store).products([_context()])

    assert [c.item_id for c in candidates[:2]] == ["n1", "n2"]
    assert candidates[0].source is CandidateSource.COVISITATION


def test_products_weigh_recent_seeds_by_recency(store) -> None:
    store.relations[Relation.COVISITATION] = {
        "old": [("from-old", 1.0)],
        "new": [("from-new", 1.0)],
    }
    history = UserHistory(
        recent=(RecentItem("new", EventType.CLICK), RecentItem("old", EventType.CLICK))
    )

    [candidates] = _generator(store).products([_context(history=history)])

    scores = {c.item_id: c.source_score for c in candidates}
    assert scores["from-new"] > scores["from-old"]


def test_products_fall_back_to_trending_for_new_user_and_new_item(store) -> None:
    store.attributes["t"] = ItemAttributes("t", category_id="phones")
    store.trends = {None: [("top", 9.0)], "phones": [("phone-1", 4.0)]}

    [candidates] = _generator(store).products([_context()])

    sources = {c.item_id: c.source for c in candidates}
    assert sources == {
        "phone-1": CandidateSource.CATEGORY_TRENDING,
        "top": CandidateSource.TRENDING,
    }


def test_products_include_session_neighbours(store) -> None:
    sessions = SessionIndex(100, 10, 10)
    sessions.add("u2/x", "t", 900.0)
    sessions.add("u2/x", "knn-pick", 901.0)
    sessions.add("u1/s1", "t", 1000.0)

    [candidates] = _generator(store, sessions).products([_context()])

    assert candidates[0].item_id == "knn-pick"
    assert candidates[0].source is CandidateSource.SESSION_KNN


def test_products_never_propose_the_trigger_item(store) -> None:
    store.trends = {None: [("t", 9.0), ("a", 1.0)]}

    [candidates] = _generator(store).products([_context()])

    assert "t" not in {c.item_id for c in candidates}


def test_bundles_propose_co_cart_and_co_purchase_of_cart(store) -> None:
    store.relations[Relation.CO_CART] = {"t": [("case", 2.0)]}
    store.relations[Relation.CO_PURCHASE] = {"earlier": [("charger", 1.0)]}
    history = UserHistory(recent=(RecentItem("earlier", EventType.CART_ADD),))
    context = _context(event_type=EventType.CART_ADD, history=history)

    [candidates] = _generator(store).bundles([context])

    sources = {c.item_id: c.source for c in candidates}
    assert sources == {
        "case": CandidateSource.CO_CART,
        "charger": CandidateSource.CO_PURCHASE,
    }
