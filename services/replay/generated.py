"""Generated promotions and reviews for datasets that have none.

The public datasets carry no promotions and no reviews, so the demo makes a
small set of them tied to the real items. The set is deterministic: the same
dataset and seed give the same records. Promotions cover the leading brands,
the leading categories and the most active items, with validity windows
around the dataset's time span. Reviews cover the most viewed items, with a
J-shaped rating mix and helpfulness votes, and are dated before the dataset's
first event.

Every record made here is GENERATED, not real shop data, and carries
``is_generated=True`` and a ``generated-`` id prefix so that consumers and
reports can label it.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.catalog import ItemRecord, PromotionRecord, ReviewRecord
from schemas.events import Event, EventType

__all__ = ["GeneratedCatalog", "generate_catalog"]

_DISCOUNTS_PERCENT = (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0)
# Share of 1- to 5-star ratings. Shop reviews lean towards 5 stars with a
# smaller bump at 1 star (a J shape); these weights are an estimate, not a fit.
_RATING_WEIGHTS = (0.09, 0.05, 0.09, 0.22, 0.55)
_TITLES_BY_RATING = {
    1: ("Broke within a week", "Not as described", "Would not buy again"),
    2: ("Disappointing", "Below expectations", "Works, barely"),
    3: ("Does the job", "Average", "Fine for the price"),
    4: ("Good value", "Happy with it", "Solid, minor flaws"),
    5: ("Excellent", "Exactly what I needed", "Highly recommended"),
}


@dataclass(frozen=True)
class GeneratedCatalog:
    """Promotions and reviews made up for one dataset (``is_generated=True``)."""

    promotions: list[PromotionRecord]
    reviews: list[ReviewRecord]


def generate_catalog(
    events: list[Event],
    items: list[ItemRecord],
    *,
    seed: int,
    max_brand_promotions: int = 4,
    max_category_promotions: int = 4,
    items_per_item_promotion: int = 10,
    reviewed_items: int = 50,
    max_reviews_per_item: int = 8,
) -> GeneratedCatalog:
    """Make promotions and reviews tied to the dataset's items.

    Args:
        events: the dataset's events, in event-time order.
        items: the dataset's catalog items (brand and category where known).
        seed: seeds the random choices; the same inputs and seed give the same
            records.
        max_brand_promotions: promotions for the brands with the most events.
        max_category_promotions: promotions for the categories with the most
            events.
        items_per_item_promotion: items in the one promotion for the most
            active items.
        reviewed_items: how many of the most viewed items get reviews.
        max_reviews_per_item: upper bound of reviews per item.

    Returns:
        The generated records; empty lists when ``events`` is empty.
    """
    if not events:
        return GeneratedCatalog([], [])
    rng = random.Random(seed)
    start, end = events[0].event_time, events[-1].event_time
    promotions = _promotions(
        rng,
        events,
        items,
        start,
        end,
        max_brand_promotions,
        max_category_promotions,
        items_per_item_promotion,
    )
    reviews = _reviews(rng, events, start, reviewed_items, max_reviews_per_item)
    return GeneratedCatalog(promotions, reviews)


def _leaders(counts: Counter[str], limit: int) -> list[str]:
    # Ties are broken by name so that the result does not depend on dict order.
    ranked = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
    return [name for name, _ in ranked[:limit]]


def _promotions(
    rng: random.Random,
    events: list[Event],
    items: list[ItemRecord],
    start: datetime,
    end: datetime,
    max_brands: int,
    max_categories: int,
    items_per_promotion: int,
) -> list[PromotionRecord]:
    by_id = {item.item_id: item for item in items}
    item_counts: Counter[str] = Counter(event.item_id for event in events)
    brand_counts: Counter[str] = Counter()
    category_counts: Counter[str] = Counter()
    category_names: dict[str, str] = {}
    for item_id, count in item_counts.items():
        item = by_id.get(item_id)
        if item is None:
            continue
        if item.brand:
            brand_counts[item.brand] += count
        if item.category_id:
            category_counts[item.category_id] += count
            if item.category_path:
                category_names[item.category_id] = item.category_path

    # (title subject, brands, category ids, item ids) of each promotion.
    rules: list[tuple[str, list[str], list[str], list[str]]] = []
    for brand in _leaders(brand_counts, max_brands):
        rules.append((f"brand {brand}", [brand], [], []))
    for category_id in _leaders(category_counts, max_categories):
        name = category_names.get(category_id, category_id)
        rules.append((f"category {name}", [], [category_id], []))
    top_items = _leaders(item_counts, items_per_promotion)
    rules.append((f"{len(top_items)} popular items", [], [], top_items))

    span = max(end - start, timedelta(hours=1))
    promotions = []
    for number, (subject, brands, category_ids, item_ids) in enumerate(rules, 1):
        starts_at, ends_at = _window(rng, start, end, span)
        discount = rng.choice(_DISCOUNTS_PERCENT)
        promotions.append(
            PromotionRecord(
                promotion_id=f"generated-promotion-{number}",
                title=f"{discount:.0f}% off {subject} (generated)"[:256],
                discount_percent=discount,
                starts_at=starts_at,
                ends_at=ends_at,
                brands=brands,
                category_ids=category_ids,
                item_ids=item_ids,
                is_generated=True,
                updated_at=min(starts_at, start),
            )
        )
    return promotions


def _window(
    rng: random.Random, start: datetime, end: datetime, span: timedelta
) -> tuple[datetime, datetime]:
    """Pick a validity window: the whole span, a late start or an early end.

    Windows that open or close inside the span let consumers see promotions
    become active and expire during a replay.
    """
    margin = timedelta(days=1)
    shape = rng.choice(("whole", "late_start", "early_end"))
    starts_at, ends_at = start - margin, end + margin
    if shape == "late_start":
        starts_at = start + span * rng.uniform(0.2, 0.6)
    elif shape == "early_end":
        ends_at = start + span * rng.uniform(0.4, 0.8)
    return starts_at.replace(microsecond=0), ends_at.replace(microsecond=0)


def _reviews(
    rng: random.Random,
    events: list[Event],
    start: datetime,
    reviewed_items: int,
    max_per_item: int,
) -> list[ReviewRecord]:
    views: Counter[str] = Counter(
        event.item_id for event in events if event.event_type is EventType.CLICK
    )
    reviews = []
    for item_id in _leaders(views, reviewed_items):
        for number in range(1, rng.randint(1, max_per_item) + 1):
            rating = rng.choices(range(1, 6), weights=_RATING_WEIGHTS)[0]
            age_seconds = rng.randint(86_400, 365 * 86_400)
            created_at = (start - timedelta(seconds=age_seconds)).replace(microsecond=0)
            # Extreme ratings draw more votes, and 1-star reviews more
            # disagreement, as on real review pages.
            attention = 2.0 if rating in (1, 5) else 1.0
            helpful = int(rng.expovariate(1.0 / (3.0 * attention)))
            unhelpful = int(rng.expovariate(1.0 / (2.0 if rating == 1 else 0.7)))
            reviews.append(
                ReviewRecord(
                    review_id=f"generated-review-{item_id}-{number}",
                    item_id=item_id,
                    rating=rating,
                    helpful_votes=helpful,
                    unhelpful_votes=unhelpful,
                    title=rng.choice(_TITLES_BY_RATING[rating]),
                    body_length=min(int(rng.lognormvariate(5.0, 0.8)), 5000),
                    created_at=created_at,
                    is_generated=True,
                    updated_at=created_at,
                )
            )
    return reviews
