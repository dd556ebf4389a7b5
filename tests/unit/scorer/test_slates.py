from __future__ import annotations

import uuid

import pytest

from schemas.events import EventType
from schemas.features import ItemAttributes, RecentItem
from schemas.recommendations import Surface
from services.scorer.protocols import Relation, UserHistory
from services.scorer.session_knn import SessionIndex
from services.scorer.settings import ScorerSettings, ScoreWeights, SurfaceSettings
from services.scorer.slates import SlateBuilder, Trigger, recommendation_id

EVENT_TIME = 1_569_931_200.0  # 2019-10-01T12:00:00Z
# Slate ids derive from this namespace, so replays of old events keep their ids.
SLATE_NAMESPACE = uuid.UUID("6f1c9a52-3b7e-4c1d-9a0e-2f3d4b5c6a7e")


def _trigger(event_type: EventType = EventType.CLICK, **overrides: object) -> Trigger:
    fields: dict[str, object] = {
        "event_id": "e1",
        "user_id": "u1",
        "item_id": "t",
        "event_type": event_type,
        "event_time": EVENT_TIME,
        "session_key": "u1/s1",
        "received_at": 100.0,
    }
    fields.update(overrides)
    return Trigger(**fields)  # type: ignore[arg-type]


def _builder(store, settings: ScorerSettings | None = None, **kwargs) -> SlateBuilder:
    return SlateBuilder(
        store,
        SessionIndex(100, 10, 10),
        settings or ScorerSettings(),
        clock=lambda: 100.025,
        **kwargs,
    )


def _surfaces(slates) -> list[Surface]:
    return [slate.surface for slate in slates]


def _stocked(store) -> None:
    store.relations[Relation.COVISITATION] = {"t": [("a", 3.0), ("b", 2.0)]}
    store.relations[Relation.CO_CART] = {"t": [("c", 1.0)]}
    store.trends = {None: [("top", 5.0)]}


def test_build_returns_only_products_for_purchase_without_promotions(store) -> None:
    _stocked(store)

    [slates] = _builder(store).build([_trigger(EventType.PURCHASE)])

    assert _surfaces(slates) == [Surface.PRODUCTS, Surface.PROMOTIONS]
    assert slates[1].items == []


def test_build_adds_bundles_on_cart_add(store) -> None:
    _stocked(store)

    [slates] = _builder(store).build([_trigger(EventType.CART_ADD)])

    bundles = next(slate for slate in slates if slate.surface is Surface.BUNDLES)
    assert [item.item_id for item in bundles.items] == ["c"]
    assert bundles.context_item_id == "t"


def test_build_adds_reviews_on_click_of_reviewed_item(store, make_review) -> None:
    _stocked(store)
    store.item_reviews["t"] = [make_review(item_id="t")]

    [slates] = _builder(store).build([_trigger()])

    reviews = next(slate for slate in slates if slate.surface is Surface.REVIEWS)
    assert [item.review_id for item in reviews.items] == ["r1"]


def test_build_publishes_promotions_only_on_configured_events(
    store, make_promotion
) -> None:
    _stocked(store)
    store.known_promotions = [make_promotion()]
    settings = ScorerSettings(
        surfaces=SurfaceSettings(promotion_events=frozenset({EventType.CART_ADD}))
    )

    [click_slates, cart_slates] = _builder(store, settings).build(
        [_trigger(), _trigger(EventType.CART_ADD, event_id="e2")]
    )

    assert Surface.PROMOTIONS not in _surfaces(click_slates)
    assert Surface.PROMOTIONS in _surfaces(cart_slates)


def test_build_labels_heuristic_ranking_before_first_model(store) -> None:
    _stocked(store)

    [slates] = _builder(store).build([_trigger()])

    assert slates[0].model_version == "heuristic-v1"
    assert [item.item_id for item in slates[0].items][:2] == ["a", "b"]


def test_build_ranks_with_current_model(store, make_ranker, make_models) -> None:
    _stocked(store)
    ranker = make_ranker({"b": (0.9, 0.5, 0.3)})
    learned = ScorerSettings(
        weights=ScoreWeights(ranker_click_blend=1.0, ranker_blend=1.0)
    )

    [slates] = _builder(store, learned, models=make_models(ranker)).build([_trigger()])

    assert slates[0].model_version == ranker.model_version
    assert slates[0].items[0].item_id == "b"
    assert ranker.calls == 1


@pytest.mark.parametrize(
    ("blend", "expected_first"),
    [(0.0, "a"), (1.0, "b")],
)
def test_build_blends_ranker_with_heuristic_by_weight(
    store, make_ranker, make_models, blend: float, expected_first: str
) -> None:
    _stocked(store)
    ranker = make_ranker({"b": (0.9, 0.5, 0.3), "a": (0.01, 0.001, 0.0001)})
    settings = ScorerSettings(
        weights=ScoreWeights(ranker_blend=blend, ranker_click_blend=blend)
    )

    [slates] = _builder(store, settings, models=make_models(ranker)).build([_trigger()])

    assert slates[0].model_version == ranker.model_version
    assert slates[0].items[0].item_id == expected_first


@pytest.mark.parametrize(
    ("task_weights", "expected_first"),
    [({"click": 1.0, "cart_add": 0.0}, "a"), ({"click": 0.0, "cart_add": 1.0}, "b")],
)
def test_build_blends_click_apart_from_cart_and_purchase(
    store, make_ranker, make_models, task_weights: dict, expected_first: str
) -> None:
    _stocked(store)
    ranker = make_ranker({"b": (0.9, 0.5, 0.3), "a": (0.01, 0.001, 0.0001)})
    weights = ScoreWeights(
        ranker_click_blend=0.0, ranker_blend=1.0, purchase=0.0, **task_weights
    )

    [slates] = _builder(
        store, ScorerSettings(weights=weights), models=make_models(ranker)
    ).build([_trigger()])

    assert slates[0].items[0].item_id == expected_first


def test_build_scores_whole_batch_in_one_ranker_call(
    store, make_ranker, make_models
) -> None:
    _stocked(store)
    ranker = make_ranker()

    _builder(store, models=make_models(ranker)).build(
        [_trigger(), _trigger(event_id="e2", user_id="u2")]
    )

    assert ranker.calls == 1


def test_build_reads_features_once_per_batch(store) -> None:
    _stocked(store)

    _builder(store).build([_trigger(), _trigger(event_id="e2", user_id="u2")])

    assert store.feature_reads == 1


def test_build_carries_latency_and_stable_recommendation_id(store) -> None:
    _stocked(store)

    [slates] = _builder(store).build([_trigger()])

    assert slates[0].latency_ms == pytest.approx(25.0)
    assert slates[0].recommendation_id == recommendation_id("e1", Surface.PRODUCTS)


def test_build_excludes_out_of_stock_and_purchased_items(store) -> None:
    _stocked(store)
    store.attributes["a"] = ItemAttributes("a", stock=0)
    store.histories["u1"] = UserHistory(purchased=frozenset({"b"}))

    [slates] = _builder(store).build([_trigger()])

    assert [item.item_id for item in slates[0].items] == ["top"]


def test_build_ignores_history_of_later_events_in_batch(store) -> None:
    store.relations[Relation.COVISITATION] = {"later": [("from-later", 1.0)]}
    store.histories["u1"] = UserHistory(
        recent=(RecentItem("later", EventType.CLICK), RecentItem("t", EventType.CLICK))
    )
    first = _trigger()
    second = _trigger(event_id="e2", item_id="later")

    [first_slates, _] = _builder(store).build([first, second])

    assert "from-later" not in {item.item_id for item in first_slates[0].items}


@pytest.mark.parametrize("event_id", ["e1", "évènement-42", "x" * 128])
def test_recommendation_id_is_uuid5_of_trigger_and_surface(event_id: str) -> None:
    for surface in Surface:
        expected = uuid.uuid5(SLATE_NAMESPACE, f"{event_id}/{surface.value}").hex

        assert recommendation_id(event_id, surface) == expected
