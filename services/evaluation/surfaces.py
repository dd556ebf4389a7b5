"""Hit rules per surface, and the later event each slate is scored against.

Products: the item of the user's next event is in the list. Bundles: the item
of the user's first cart_add or purchase of another item after the trigger is
in the list.
Promotions: the user's next event is on an item that a listed promotion
covers. Reviews: the user's next event is a cart_add or purchase of a reviewed
item, because a review is meant to help a purchase decision.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from schemas.events import EventType
from schemas.recommendations import Surface
from services.evaluation.catalog import CatalogView
from services.evaluation.metrics import first_rank
from services.evaluation.records import EventRecord, SlateRecord

__all__ = ["SURFACE_RULES", "select_target", "surface_rank"]

SURFACE_RULES: dict[str, str] = {
    Surface.PRODUCTS.value: (
        "the item of the user's next event is in the slate published for the "
        "previous event, or in the user's latest earlier products slate when "
        "that event has none"
    ),
    Surface.BUNDLES.value: (
        "the item of the user's first cart_add or purchase after the trigger "
        "event, on another item than the trigger's, is in the slate"
    ),
    Surface.PROMOTIONS.value: (
        "the user's next event is on an item that a listed promotion covers: "
        "inside its validity window and matching every non-empty eligibility "
        "list (item ids, categories, brands); an entry whose promotion is not "
        "in the catalog matches its own item_id only"
    ),
    Surface.REVIEWS.value: (
        "the user's next event is a cart_add or purchase of a reviewed item"
    ),
}

_CONVERSIONS = frozenset({EventType.CART_ADD, EventType.PURCHASE})


def select_target(
    surface: Surface, user_events: Sequence[EventRecord], trigger_position: int
) -> EventRecord | None:
    """Return the event a slate of ``surface`` is scored against, or None.

    Args:
        surface: the slate's surface.
        user_events: the user's events in event-time order.
        trigger_position: index of the trigger event in ``user_events``.
    """
    later = itertools.islice(user_events, trigger_position + 1, None)
    if surface is Surface.BUNDLES:
        # Buying the carted item itself is not something a bundle proposes.
        trigger_item_id = user_events[trigger_position].item_id
        return next(
            (
                e
                for e in later
                if e.event_type in _CONVERSIONS and e.item_id != trigger_item_id
            ),
            None,
        )
    return next(later, None)


def surface_rank(
    slate: SlateRecord, target: EventRecord, catalog: CatalogView
) -> int | None:
    """Return the 1-based rank of the first entry that the target hits, or None."""
    if slate.surface is Surface.PROMOTIONS:
        return _promotion_rank(slate, target, catalog)
    if slate.surface is Surface.REVIEWS and target.event_type not in _CONVERSIONS:
        return None
    return first_rank(slate.item_ids, target.item_id)


def _promotion_rank(
    slate: SlateRecord, target: EventRecord, catalog: CatalogView
) -> int | None:
    category = catalog.categories.get(target.item_id)
    brand = catalog.brands.get(target.item_id)
    entries = zip(slate.item_ids, slate.promotion_ids, strict=True)
    for rank, (item_id, promotion_id) in enumerate(entries, start=1):
        rule = catalog.promotions.get(promotion_id) if promotion_id else None
        if rule is None:
            if item_id == target.item_id:
                return rank
        elif rule.is_eligible(target.item_id, category, brand, target.timestamp):
            # LIMITATION(L-63): a whole-shop promotion (every eligibility list
            # empty) covers any item, so it hits whenever the next event falls
            # inside its window.
            return rank
    return None
