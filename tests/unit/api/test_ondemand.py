from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from schemas.events import EventType
from schemas.features import RecentItem
from schemas.recommendations import Surface
from services.api.ondemand import OnDemandSlates
from services.scorer.protocols import UserHistory
from services.scorer.settings import ScorerSettings, SurfaceSettings
from services.scorer.slates import Trigger


class HistoryStore:
    """Serves one user history and a trending list."""

    def __init__(self, history: UserHistory, trending: list[tuple[str, float]]) -> None:
        self.history = history
        self.top = trending

    def user_histories(self, user_ids: Sequence[str]) -> dict[str, UserHistory]:
        return {user_id: self.history for user_id in user_ids}

    def trending(
        self, category_ids: Sequence[str | None], limit: int
    ) -> dict[str | None, list[tuple[str, float]]]:
        return {None: self.top[:limit]}


class RecordingBuilder:
    """Records the triggers it gets and builds no slates."""

    def __init__(self) -> None:
        self.triggers: list[Trigger] = []

    def build(self, triggers: Sequence[Trigger]) -> list[list[object]]:
        self.triggers.extend(triggers)
        return [[] for _ in triggers]


def _compute(
    history: UserHistory, surface: Surface, **settings: object
) -> list[Trigger]:
    builder = RecordingBuilder()
    store = HistoryStore(history, [("top", 1.0)])
    on_demand = OnDemandSlates(
        builder,  # type: ignore[arg-type]
        store,  # type: ignore[arg-type]
        ScorerSettings(**settings),  # type: ignore[arg-type]
        clock=lambda: 1000.0,
    )
    on_demand.compute("u1", surface)
    return builder.triggers


RECENT = UserHistory(
    recent=(
        RecentItem("viewed", EventType.CLICK),
        RecentItem("carted", EventType.CART_ADD),
    ),
    last_event_time=500.0,
)


def test_on_demand_products_anchor_on_newest_item() -> None:
    [trigger] = _compute(RECENT, Surface.PRODUCTS)

    assert (trigger.item_id, trigger.event_type) == ("viewed", EventType.CLICK)
    assert trigger.event_time == 500.0
    assert trigger.event_id.startswith("on-demand-")


def test_on_demand_bundles_anchor_on_newest_cart_add() -> None:
    [trigger] = _compute(RECENT, Surface.BUNDLES)

    assert (trigger.item_id, trigger.event_type) == ("carted", EventType.CART_ADD)


def test_on_demand_new_user_gets_top_trending_anchor() -> None:
    [trigger] = _compute(UserHistory(), Surface.PRODUCTS)

    assert trigger.item_id == "top"
    assert trigger.event_time == 1000.0


def test_on_demand_reviews_need_a_click() -> None:
    assert _compute(UserHistory(), Surface.REVIEWS) == []


def test_on_demand_promotions_need_a_configured_event_type() -> None:
    settings = {"surfaces": SurfaceSettings(promotion_events=frozenset())}

    assert _compute(RECENT, Surface.PROMOTIONS, **settings) == []


def test_on_demand_promotions_take_newest_event_type() -> None:
    [trigger] = _compute(RECENT, Surface.PROMOTIONS)

    assert (trigger.item_id, trigger.event_type) == ("viewed", EventType.CLICK)


def test_on_demand_promotions_take_purchase_event_type() -> None:
    history = UserHistory(
        recent=(
            RecentItem("bought", EventType.PURCHASE),
            RecentItem("viewed", EventType.CLICK),
        ),
        last_event_time=500.0,
    )

    [trigger] = _compute(history, Surface.PROMOTIONS)

    assert (trigger.item_id, trigger.event_type) == ("bought", EventType.PURCHASE)


def test_on_demand_promotions_replace_unconfigured_event_type() -> None:
    events = frozenset({EventType.PURCHASE, EventType.CART_ADD})
    settings = {"surfaces": SurfaceSettings(promotion_events=events)}

    [trigger] = _compute(RECENT, Surface.PROMOTIONS, **settings)

    assert (trigger.item_id, trigger.event_type) == ("viewed", EventType.CART_ADD)


def test_on_demand_promotions_new_user_click() -> None:
    [trigger] = _compute(UserHistory(), Surface.PROMOTIONS)

    assert (trigger.item_id, trigger.event_type) == ("top", EventType.CLICK)
    assert trigger.event_time == 1000.0


@dataclass
class _BuiltSlate:
    surface: Surface
    items: list[str]


class SlateBuilderStub:
    """Builds one slate per trigger with the given items, on the given surfaces."""

    def __init__(
        self, items: list[str], surfaces: Sequence[Surface] = tuple(Surface)
    ) -> None:
        self.items = items
        self.surfaces = surfaces

    def build(self, triggers: Sequence[Trigger]) -> list[list[_BuiltSlate]]:
        return [
            [_BuiltSlate(surface, self.items) for surface in self.surfaces]
            for _ in triggers
        ]


def _on_demand(builder: SlateBuilderStub) -> OnDemandSlates:
    return OnDemandSlates(
        builder,  # type: ignore[arg-type]
        HistoryStore(RECENT, [("top", 1.0)]),  # type: ignore[arg-type]
        ScorerSettings(),
        clock=lambda: 1000.0,
    )


@pytest.mark.parametrize("surface", list(Surface))
def test_on_demand_returns_slate_without_items(surface: Surface) -> None:
    on_demand = _on_demand(SlateBuilderStub([]))

    slate = on_demand.compute("u1", surface)

    assert slate is not None
    assert slate.surface is surface
    assert slate.items == []


def test_on_demand_unbuilt_surface_is_none() -> None:
    on_demand = _on_demand(SlateBuilderStub(["i1"], surfaces=[Surface.PRODUCTS]))

    slate = on_demand.compute("u1", Surface.REVIEWS)

    assert slate is None
