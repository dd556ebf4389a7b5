"""Slates validated in one call match slates built item by item, to the byte.

Both apply the slate's own rules: ranks 1..n in order, and the id that each
surface needs.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.events import EventType
from schemas.recommendations import CandidateSource, Slate, SlateItem, Surface

GENERATED_AT = datetime(2019, 10, 1, 12, 0, tzinfo=UTC)
PROBS = {EventType.CLICK: 0.25, EventType.CART_ADD: 0.125, EventType.PURCHASE: 0.0}


def _item(rank: int = 1, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "item_id": f"i{rank}",
        "rank": rank,
        "score": 1.5 / rank,
        "task_probs": dict(PROBS),
        "source": CandidateSource.COVISITATION,
    }
    fields.update(overrides)
    return {name: value for name, value in fields.items() if value is not ...}


def _slate_fields(surface: Surface, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "recommendation_id": "r1",
        "surface": surface,
        "user_id": "u1",
        "trigger_event_id": "e1",
        "context_item_id": "t" if surface is Surface.REVIEWS else None,
        "items": items,
        "model_version": "ranker-20191001-abc1234",
        "generated_at": GENERATED_AT,
        "latency_ms": 25.0,
    }


def _item_by_item(surface: Surface, items: list[dict[str, Any]]) -> Slate:
    built = [SlateItem(**fields) for fields in items]
    return Slate(**_slate_fields(surface, built))  # type: ignore[arg-type]


def _in_one_call(surface: Surface, items: list[dict[str, Any]]) -> Slate:
    return Slate.model_validate(_slate_fields(surface, items))


SLATES = {
    "products": (Surface.PRODUCTS, [_item(1), _item(2), _item(3)]),
    "empty": (Surface.PRODUCTS, []),
    "promotions": (
        Surface.PROMOTIONS,
        [_item(1, source=CandidateSource.PROMOTION, promotion_id="p1")],
    ),
    "reviews": (
        Surface.REVIEWS,
        [
            _item(
                rank,
                task_probs=...,
                source=CandidateSource.REVIEW,
                review_id=f"r{rank}",
            )
            for rank in (1, 2)
        ],
    ),
}


@pytest.mark.parametrize("name", SLATES)
def test_slate_validated_in_one_call_equals_slate_built_item_by_item(name: str) -> None:
    surface, items = SLATES[name]

    expected = _item_by_item(surface, items)
    slate = _in_one_call(surface, items)

    assert slate == expected
    assert slate.model_dump_json() == expected.model_dump_json()
    assert [item.model_fields_set for item in slate.items] == [
        item.model_fields_set for item in expected.items
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        {"score": math.nan},
        {"score": math.inf},
        {"task_probs": {**PROBS, EventType.CLICK: math.nan}},
        {"task_probs": {**PROBS, EventType.PURCHASE: 1.5}},
        {"item_id": " "},
    ],
    ids=["nan-score", "inf-score", "nan-prob", "prob-above-one", "blank-id"],
)
def test_slate_validated_in_one_call_rejects_what_items_reject(
    overrides: dict[str, Any],
) -> None:
    items = [_item(1, **overrides)]

    with pytest.raises(ValidationError, match=r"items\.0\."):
        _in_one_call(Surface.PRODUCTS, items)
    with pytest.raises(ValidationError):
        SlateItem(**items[0])


def test_slate_json_writes_enum_members_as_their_values() -> None:
    surface, items = SLATES["promotions"]

    payload = _in_one_call(surface, items).model_dump_json()

    assert payload == (
        '{"schema_version":1,"recommendation_id":"r1","surface":"promotions",'
        '"user_id":"u1","trigger_event_id":"e1","context_item_id":null,'
        '"items":[{"item_id":"i1","rank":1,"score":1.5,"task_probs":'
        '{"click":0.25,"cart_add":0.125,"purchase":0.0},"source":"promotion",'
        '"promotion_id":"p1","review_id":null}],'
        '"model_version":"ranker-20191001-abc1234",'
        '"generated_at":"2019-10-01T12:00:00Z","latency_ms":25.0}'
    )


def test_slate_dump_keeps_enum_members() -> None:
    slate = _in_one_call(*SLATES["products"])

    dumped = slate.model_dump()

    assert dumped["surface"] is Surface.PRODUCTS
    assert dumped["items"][0]["source"] is CandidateSource.COVISITATION
    assert list(dumped["items"][0]["task_probs"]) == list(PROBS)


def test_slate_round_trips_through_json() -> None:
    slate = _in_one_call(*SLATES["reviews"])

    assert Slate.model_validate_json(slate.model_dump_json()) == slate


@pytest.mark.parametrize(
    ("surface", "items", "message"),
    [
        (
            Surface.PRODUCTS,
            [_item(2), _item(1)],
            "slate ranks must be 1..2 in order, got [2, 1]",
        ),
        (
            Surface.PRODUCTS,
            [_item(1), _item(1)],
            "slate ranks must be 1..2 in order, got [1, 1]",
        ),
        (
            Surface.PRODUCTS,
            [_item(1), _item(3)],
            "slate ranks must be 1..2 in order, got [1, 3]",
        ),
        (
            Surface.PROMOTIONS,
            [_item(1, promotion_id="p1"), _item(2)],
            "promotions slate entry 2 has no promotion_id",
        ),
        (Surface.REVIEWS, [_item(1)], "reviews slate entry 1 has no review_id"),
    ],
    ids=["out-of-order", "repeated", "gap", "no-promotion-id", "no-review-id"],
)
def test_slate_rule_break_message(
    surface: Surface, items: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        _in_one_call(surface, items)


def _rank_one_as(rank: float, *, from_json: bool) -> Slate:
    fields = _slate_fields(Surface.PRODUCTS, [{**_item(1), "rank": rank}])
    if not from_json:
        return Slate.model_validate(fields)
    document = json.dumps({**fields, "generated_at": "2019-10-01T12:00:00Z"})
    return Slate.model_validate_json(document, strict=True)


@pytest.mark.parametrize("from_json", [False, True], ids=["python", "strict-json"])
def test_slate_integral_float_rank_is_int(from_json: bool) -> None:
    slate = _rank_one_as(1.0, from_json=from_json)

    assert type(slate.items[0].rank) is int
    assert slate.items[0].rank == 1


@pytest.mark.parametrize("from_json", [False, True], ids=["python", "strict-json"])
def test_slate_fractional_rank_rejected(from_json: bool) -> None:
    with pytest.raises(ValidationError, match=r"items\.0\.rank\n.*valid integer"):
        _rank_one_as(1.5, from_json=from_json)
