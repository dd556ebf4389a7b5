from __future__ import annotations

from datetime import UTC, datetime

from schemas.features import ItemAttributes
from schemas.recommendations import CandidateSource
from services.scorer.rules import RankedCandidate, ScoredCandidates
from services.scorer.surfaces import (
    PromotionIndex,
    is_eligible,
    rank_promotions,
    rank_reviews,
)

EVENT_TIME = datetime(2019, 10, 1, 12, tzinfo=UTC).timestamp()


def _candidate(item_id: str, purchase: float, affinity: float = 0.0) -> RankedCandidate:
    return RankedCandidate(
        item_id, purchase, (0.5, 0.2, purchase), CandidateSource.TRENDING, affinity
    )


def test_is_eligible_requires_every_non_empty_list(make_promotion) -> None:
    promotion = make_promotion(category_ids=["phones"], brands=["acme"])

    assert is_eligible(
        promotion, ItemAttributes("a", category_id="phones", brand="acme")
    )
    assert not is_eligible(
        promotion, ItemAttributes("b", category_id="phones", brand="x")
    )
    assert not is_eligible(
        promotion, ItemAttributes("c", category_id="toys", brand="acme")
    )


def test_is_eligible_accepts_any_item_for_shop_wide_promotion(make_promotion) -> None:
    assert is_eligible(make_promotion(), ItemAttributes("a"))


def test_rank_promotions_orders_by_best_eligible_purchase_probability(
    make_promotion,
) -> None:
    phones = make_promotion(promotion_id="phones", category_ids=["phones"])
    toys = make_promotion(promotion_id="toys", category_ids=["toys"])
    attributes = {
        "phone": ItemAttributes("phone", category_id="phones"),
        "toy": ItemAttributes("toy", category_id="toys"),
    }
    pool = [_candidate("phone", 0.01), _candidate("toy", 0.2)]

    ranked = rank_promotions([phones, toys], pool, attributes, 0.0, 5)

    assert [entry.promotion.promotion_id for entry in ranked] == ["toys", "phones"]
    assert ranked[0].item.item_id == "toy"


def test_rank_promotions_counts_user_affinity(make_promotion) -> None:
    promotions = [
        make_promotion(promotion_id="a", item_ids=["liked"]),
        make_promotion(promotion_id="b", item_ids=["other"]),
    ]
    attributes = {item: ItemAttributes(item) for item in ("liked", "other")}
    pool = [_candidate("liked", 0.1, affinity=0.9), _candidate("other", 0.2)]

    ranked = rank_promotions(promotions, pool, attributes, 1.0, 5)

    assert ranked[0].promotion.promotion_id == "a"


def test_rank_promotions_leaves_out_promotion_without_eligible_item(
    make_promotion,
) -> None:
    promotion = make_promotion(brands=["nobody"])

    ranked = rank_promotions(
        [promotion], [_candidate("a", 0.5)], {"a": ItemAttributes("a")}, 0.0, 5
    )

    assert ranked == []


def test_rank_reviews_prefers_helpful_reviews(make_review) -> None:
    reviews = [
        make_review(review_id="meh", helpful_votes=1, unhelpful_votes=9),
        make_review(review_id="good", helpful_votes=9, unhelpful_votes=1),
    ]

    ranked = rank_reviews(reviews, EVENT_TIME, 0.5, 180.0, 5)

    assert [entry.review.review_id for entry in ranked] == ["good", "meh"]


def test_rank_reviews_ignores_reviews_written_after_the_click(make_review) -> None:
    future = make_review(created_at=datetime(2020, 1, 1, tzinfo=UTC))

    assert rank_reviews([future], EVENT_TIME, 0.5, 180.0, 5) == []


def test_rank_reviews_prefer_recent_reviews(make_review) -> None:
    reviews = [
        make_review(review_id="old", created_at=datetime(2017, 1, 1, tzinfo=UTC)),
        make_review(review_id="new", created_at=datetime(2019, 9, 30, tzinfo=UTC)),
    ]

    ranked = rank_reviews(reviews, EVENT_TIME, 0.5, 180.0, 5)

    assert ranked[0].review.review_id == "new"


def test_rank_reviews_give_detailed_reviews_to_interested_users(make_review) -> None:
    reviews = [
        make_review(review_id="short", body_length=50),
        make_review(review_id="long", body_length=2000),
    ]

    interested = rank_reviews(reviews, EVENT_TIME, 1.0, 180.0, 5)
    casual = rank_reviews(reviews, EVENT_TIME, 0.0, 180.0, 5)

    assert interested[0].review.review_id == "long"
    assert casual[0].review.review_id == "short"


def test_rank_reviews_mix_critical_reviews_by_their_share(make_review) -> None:
    positive = [
        make_review(review_id=f"p{index}", rating=5, helpful_votes=50)
        for index in range(3)
    ]
    critical = [make_review(review_id=f"c{index}", rating=2) for index in range(3)]

    ranked = rank_reviews(positive + critical, EVENT_TIME, 0.5, 180.0, 4)

    ratings = [entry.review.rating for entry in ranked]
    assert sorted(ratings) == [2, 2, 5, 5]
    assert ratings[0] == 5


def test_rank_promotions_shows_each_item_for_one_promotion_only(make_promotion) -> None:
    promotions = [make_promotion(promotion_id="a"), make_promotion(promotion_id="b")]
    attributes = {item: ItemAttributes(item) for item in ("best", "second")}
    pool = [_candidate("best", 0.5), _candidate("second", 0.1)]

    ranked = rank_promotions(promotions, pool, attributes, 0.0, 5)

    assert [entry.item.item_id for entry in ranked] == ["best", "second"]


def test_index_ranks_active_promotions_only(make_promotion) -> None:
    promotions = [
        make_promotion(
            promotion_id="old",
            starts_at=datetime(2019, 9, 20, tzinfo=UTC),
            ends_at=datetime(2019, 10, 1, tzinfo=UTC),
        ),
        make_promotion(promotion_id="phones", category_ids=["phones"]),
        make_promotion(promotion_id="all"),
    ]
    index = PromotionIndex(promotions)
    attributes = {
        "phone": ItemAttributes("phone", category_id="phones"),
        "toy": ItemAttributes("toy", category_id="toys"),
    }
    pool = [_candidate("phone", 0.3), _candidate("toy", 0.2)]

    active = index.active(EVENT_TIME)
    ranked = index.rank(active, pool, attributes, 0.0, 5)

    assert active == [1, 2]
    assert ranked == rank_promotions(promotions[1:], pool, attributes, 0.0, 5)
    assert [(entry.promotion.promotion_id, entry.item.item_id) for entry in ranked] == [
        ("all", "phone")
    ]


def test_index_rechecks_changed_category(
    make_promotion,
) -> None:
    index = PromotionIndex([make_promotion(category_ids=["phones"])])

    before = index.eligible(ItemAttributes("a", category_id="phones"))
    after = index.eligible(ItemAttributes("a", category_id="toys"))

    assert (before, after) == ((0,), ())


def test_rank_rows_reads_given_rows_only(make_promotion) -> None:
    promotions = [
        make_promotion(promotion_id="phones", category_ids=["phones"]),
        make_promotion(promotion_id="toys", category_ids=["toys"]),
    ]
    attributes = {
        "phone": ItemAttributes("phone", category_id="phones"),
        "toy": ItemAttributes("toy", category_id="toys"),
        "gone": ItemAttributes("gone", category_id="toys"),
    }
    pool = [_candidate("gone", 0.9), _candidate("phone", 0.1), _candidate("toy", 0.2)]
    index = PromotionIndex(promotions)

    ranked = index.rank_rows(
        [0, 1], ScoredCandidates.of(pool), [1, 2], attributes, 0.0, 5
    )

    assert ranked == rank_promotions(promotions, pool[1:], attributes, 0.0, 5)


def test_rank_rows_follows_active_promotions(
    make_promotion,
) -> None:
    promotions = [
        make_promotion(promotion_id="phones", category_ids=["phones"]),
        make_promotion(promotion_id="all"),
    ]
    attributes = {"phone": ItemAttributes("phone", category_id="phones")}
    scored = ScoredCandidates.of([_candidate("phone", 0.1)])
    index = PromotionIndex(promotions)

    first = index.rank_rows([0], scored, [0], attributes, 0.0, 5)
    second = index.rank_rows([1], scored, [0], attributes, 0.0, 5)

    assert [entry.promotion.promotion_id for entry in first] == ["phones"]
    assert [entry.promotion.promotion_id for entry in second] == ["all"]


def test_rank_rows_follows_changed_item_attributes(make_promotion) -> None:
    promotions = [
        make_promotion(promotion_id="phones", category_ids=["phones"]),
        make_promotion(promotion_id="toys", category_ids=["toys"]),
    ]
    scored = ScoredCandidates.of([_candidate("item", 0.1)])
    index = PromotionIndex(promotions)
    as_phone = {"item": ItemAttributes("item", category_id="phones")}
    as_toy = {"item": ItemAttributes("item", category_id="toys")}

    first = index.rank_rows([0, 1], scored, [0], as_phone, 0.0, 5)
    second = index.rank_rows([0, 1], scored, [0], as_toy, 0.0, 5)

    assert [entry.promotion.promotion_id for entry in first] == ["phones"]
    assert [entry.promotion.promotion_id for entry in second] == ["toys"]
