from __future__ import annotations

from collections import Counter

import pytest

from schemas.catalog import PromotionRecord, ReviewRecord
from services.replay.datasets import REES46_SAMPLE, Dataset, rees46
from services.replay.generated import generate_catalog


@pytest.fixture(scope="module")
def sample() -> Dataset:
    return rees46.load(REES46_SAMPLE)


def test_generated_catalog_repeats_for_same_seed(sample: Dataset) -> None:
    first = generate_catalog(sample.events, sample.items, seed=3)
    second = generate_catalog(sample.events, sample.items, seed=3)

    assert first == second


def test_generated_catalog_changes_with_seed(sample: Dataset) -> None:
    first = generate_catalog(sample.events, sample.items, seed=3)
    second = generate_catalog(sample.events, sample.items, seed=4)

    assert first.reviews != second.reviews


def test_generated_records_are_labelled(sample: Dataset) -> None:
    catalog = generate_catalog(sample.events, sample.items, seed=3)

    records: list[PromotionRecord | ReviewRecord] = [
        *catalog.promotions,
        *catalog.reviews,
    ]
    assert records
    assert all(record.is_generated for record in records)
    assert all("(generated)" in promotion.title for promotion in catalog.promotions)


def test_promotions_target_leading_brands_and_real_items(sample: Dataset) -> None:
    catalog = generate_catalog(sample.events, sample.items, seed=3)

    brand_counts = Counter(
        item.brand for item in sample.items if item.brand is not None
    )
    promoted_brands = {b for p in catalog.promotions for b in p.brands}
    promoted_items = {i for p in catalog.promotions for i in p.item_ids}
    promoted_categories = {c for p in catalog.promotions for c in p.category_ids}
    known_items = {item.item_id for item in sample.items}
    known_categories = {item.category_id for item in sample.items}
    assert len(promoted_brands) == 4
    assert promoted_brands <= set(brand_counts)
    assert len(promoted_categories) == 4
    assert promoted_categories <= known_categories
    assert promoted_items and promoted_items <= known_items


def test_promotion_windows_overlap_dataset_span(sample: Dataset) -> None:
    catalog = generate_catalog(sample.events, sample.items, seed=3)

    for promotion in catalog.promotions:
        assert promotion.starts_at < sample.end_time
        assert promotion.ends_at > sample.start_time


def test_reviews_cover_most_viewed_items_before_span(sample: Dataset) -> None:
    catalog = generate_catalog(sample.events, sample.items, seed=3, reviewed_items=20)

    views = Counter(e.item_id for e in sample.events if e.event_type == "click")
    reviewed = {review.item_id for review in catalog.reviews}
    assert len(reviewed) == 20
    assert min(views[item] for item in reviewed) >= sorted(views.values())[-20]
    assert all(review.created_at < sample.start_time for review in catalog.reviews)
    assert all(1 <= review.rating <= 5 for review in catalog.reviews)
    assert all(review.helpful_votes >= 0 for review in catalog.reviews)


def test_review_ratings_lean_positive(sample: Dataset) -> None:
    catalog = generate_catalog(sample.events, sample.items, seed=3, reviewed_items=200)

    ratings = Counter(review.rating for review in catalog.reviews)
    assert ratings[5] > ratings[4] > ratings[2]
    assert ratings[1] > ratings[2]


def test_catalog_without_attributes_promotes_items_only(sample: Dataset) -> None:
    catalog = generate_catalog(sample.events, [], seed=3)

    assert len(catalog.promotions) == 1
    assert len(catalog.promotions[0].item_ids) == 10


def test_empty_dataset_generates_nothing() -> None:
    catalog = generate_catalog([], [], seed=3)

    assert catalog.promotions == []
    assert catalog.reviews == []
