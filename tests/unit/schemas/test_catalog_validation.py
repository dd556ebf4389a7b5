"""parse_catalog_record: catalog message values as records or rejections."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.catalog import ItemRecord, PromotionRecord
from schemas.deadletters import RejectionReason
from schemas.validation import Rejection, parse_catalog_record

ITEM: dict[str, Any] = {"item_id": "z1", "updated_at": "2019-10-01T00:00:00Z"}
PROMOTION: dict[str, Any] = {
    "promotion_id": "p1",
    "title": "sale",
    "discount_percent": 10,
    "starts_at": "2019-10-01T00:00:00Z",
    "ends_at": "2019-10-08T00:00:00Z",
    "updated_at": "2019-10-01T00:00:00Z",
}


def encode(document: dict[str, Any], **overrides: Any) -> bytes:
    merged = {**document, **overrides}
    return json.dumps({k: v for k, v in merged.items() if v is not ...}).encode()


def test_record_without_record_type_is_key_kind() -> None:
    result = parse_catalog_record("item", encode(ITEM, price=5.0))

    assert isinstance(result, ItemRecord)
    assert result.record_type == "item"
    assert result.price == 5.0


def test_integral_stock_is_integer() -> None:
    result = parse_catalog_record("item", encode(ITEM, stock=3.0))

    assert isinstance(result, ItemRecord)
    assert result.stock == 3


CASES = {
    "empty": (b"", RejectionReason.EMPTY_VALUE, "message value is empty"),
    "not_json": (b"{x", RejectionReason.INVALID_JSON, "not valid UTF-8 JSON"),
    "lone_surrogate": (
        b'{"item_id": "\\ud800", "updated_at": "2019-10-01T00:00:00Z"}',
        RejectionReason.INVALID_JSON,
        "invalid \\u escape: lone surrogate at line 1 column",
    ),
    "array": (b"[1]", RejectionReason.NOT_AN_OBJECT, "the item record's fields"),
    "version_true": (
        encode(ITEM, schema_version=True),
        RejectionReason.UNSUPPORTED_SCHEMA_VERSION,
        "the integer 1",
    ),
    "price_word": (
        encode(ITEM, price="abc"),
        RejectionReason.WRONG_TYPE,
        "field 'price' has value 'abc'; expected a finite number",
    ),
    "price_string": (encode(ITEM, price="5.0"), RejectionReason.WRONG_TYPE, "'5.0'"),
    "stock_fraction": (
        encode(ITEM, stock=1.5),
        RejectionReason.WRONG_TYPE,
        "an integer of 0 or more",
    ),
    "unknown_record_type": (
        encode(ITEM, record_type="gadget"),
        RejectionReason.UNKNOWN_RECORD_TYPE,
        "has value 'gadget'; expected 'item'",
    ),
    "record_type_number": (
        encode(ITEM, record_type=5),
        RejectionReason.WRONG_TYPE,
        "or no record_type",
    ),
    "record_type_of_other_kind": (
        encode(ITEM, record_type="review"),
        RejectionReason.INVALID_ID,
        "or the key 'review:<id>'",
    ),
    "empty_id": (encode(ITEM, item_id=""), RejectionReason.INVALID_ID, "1 to 128"),
    "long_id": (
        encode(ITEM, item_id="i" * 129),
        RejectionReason.ID_TOO_LONG,
        "129 characters",
    ),
    "date_only": (
        encode(ITEM, updated_at="2019-10-01"),
        RejectionReason.INVALID_TIME,
        "RFC 3339 time with a UTC offset",
    ),
    "time_past_year_9999": (
        encode(ITEM, updated_at="9999-12-31T23:59:59-00:01"),
        RejectionReason.INVALID_TIME,
        "years 1 to 9999 in UTC",
    ),
    "unix_seconds": (
        encode(ITEM, updated_at=1569888000),
        RejectionReason.WRONG_TYPE,
        "RFC 3339",
    ),
    "negative_price": (
        encode(ITEM, price=-1),
        RejectionReason.NEGATIVE_VALUE,
        "has value -1",
    ),
    "huge_price": (encode(ITEM, price=2e9), RejectionReason.OUT_OF_RANGE, "to 1e9"),
    "unknown_field": (
        encode(ITEM, color="red"),
        RejectionReason.UNKNOWN_FIELD,
        "'color' is not part of the item record schema",
    ),
    "missing_id": (
        encode(ITEM, item_id=...),
        RejectionReason.MISSING_FIELD,
        "'item_id' is missing",
    ),
}


@pytest.mark.parametrize(("raw", "reason", "fragment"), CASES.values(), ids=CASES)
def test_invalid_item_reason_and_message(
    raw: bytes, reason: RejectionReason, fragment: str
) -> None:
    result = parse_catalog_record("item", raw)

    assert isinstance(result, Rejection)
    assert result.reason is reason
    assert fragment in result.message
    assert "Input should" not in result.message


def test_list_id_named_by_index() -> None:
    result = parse_catalog_record("promotion", encode(PROMOTION, item_ids=["a", ""]))

    assert isinstance(result, Rejection)
    assert result.reason is RejectionReason.INVALID_ID
    assert result.message.startswith("field 'item_ids.1' has value ''")


def test_promotion_ending_before_start_out_of_range() -> None:
    raw = encode(PROMOTION, ends_at="2019-09-30T00:00:00Z")

    result = parse_catalog_record("promotion", raw)

    assert isinstance(result, Rejection)
    assert result.reason is RejectionReason.OUT_OF_RANGE
    assert result.message.startswith("promotion 'p1' ends_at=2019-09-30")


def test_promotion_without_record_type_accepted() -> None:
    result = parse_catalog_record("promotion", encode(PROMOTION))

    assert isinstance(result, PromotionRecord)


def test_unknown_kind_raises_value_error() -> None:
    with pytest.raises(ValueError, match="catalog kind 'order' is unknown"):
        parse_catalog_record("order", encode(ITEM))


def _with_repeated_key(raw: bytes, key: bytes, value: bytes) -> bytes:
    # json.dumps cannot write a repeated key, so the bytes are edited.
    return raw[:-1] + b", " + key + b": " + value + b"}"


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("item", _with_repeated_key(encode(ITEM, price=5.0), b'"price"', b"0.5")),
        ("item", _with_repeated_key(encode(ITEM), b'"item_\\u0069d"', b'"z2"')),
        (
            "item",
            _with_repeated_key(
                encode(ITEM), b'"updated_at" \n', b'"2019-10-02T00:00:00Z"'
            ),
        ),
        (
            "promotion",
            _with_repeated_key(
                encode(PROMOTION, item_ids=["a", "b"]), b'"item_ids"', b'["c"]'
            ),
        ),
    ],
    ids=["top-level", "escaped", "spaced", "list"],
)
def test_repeated_key_rejected(kind: str, raw: bytes) -> None:
    result = parse_catalog_record(kind, raw)

    assert isinstance(result, Rejection)
    assert result.reason is RejectionReason.INVALID_JSON
    assert "appears more than once in one object" in result.message


def test_repeated_key_in_text_value_rejected() -> None:
    raw = _with_repeated_key(encode(ITEM, price=5.0), b'"price"', b"0.5").decode()

    result = parse_catalog_record("item", raw)

    assert isinstance(result, Rejection)
    assert result.message.startswith("key 'price' appears more than once")


@pytest.mark.parametrize("brand", ["price", '"price": 0.5', 'a" : b'])
def test_key_like_value_accepted(brand: str) -> None:
    result = parse_catalog_record("item", encode(ITEM, price=5.0, brand=brand))

    assert isinstance(result, ItemRecord)
    assert result.brand == brand
    assert result.price == 5.0
