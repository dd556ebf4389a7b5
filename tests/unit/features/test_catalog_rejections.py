"""Catalog messages checked against their keys, without servers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.catalog import ItemRecord
from schemas.deadletters import RejectionReason
from services.features.catalog import parse_catalog_message
from services.features.errors import CatalogKeyError, CatalogRecordError

ITEM = {"item_id": "z1", "updated_at": "2019-10-01T00:00:00Z", "price": 5.0}


def _value(**changes: Any) -> bytes:
    return json.dumps({**ITEM, **changes}).encode()


def test_message_without_record_type_is_item() -> None:
    kind, entity_id, record = parse_catalog_message(b"item:z1", _value())

    assert (kind, entity_id) == ("item", "z1")
    assert isinstance(record, ItemRecord)


def test_tombstone_message_has_no_record() -> None:
    assert parse_catalog_message(b"review:r1", None) == ("review", "r1", None)


@pytest.mark.parametrize(
    ("value", "reason", "fragment"),
    [
        (_value(price="abc"), RejectionReason.WRONG_TYPE, "field 'price'"),
        (
            _value(record_type="gadget"),
            RejectionReason.UNKNOWN_RECORD_TYPE,
            "field 'record_type' has value 'gadget'",
        ),
        (_value(record_type="promotion"), RejectionReason.INVALID_ID, "'item'"),
        (_value(stock=-1), RejectionReason.NEGATIVE_VALUE, "field 'stock'"),
    ],
    ids=["price_word", "unknown_record_type", "other_kind", "negative_stock"],
)
def test_invalid_record_message_rejected(
    value: bytes, reason: RejectionReason, fragment: str
) -> None:
    with pytest.raises(CatalogRecordError) as raised:
        parse_catalog_message(b"item:z1", value)

    assert raised.value.rejection.reason is reason
    assert fragment in raised.value.rejection.message


def test_record_under_other_id_rejected() -> None:
    with pytest.raises(
        CatalogKeyError, match="contains the record of 'item:z1'"
    ) as raised:
        parse_catalog_message(b"item:z2", _value())

    assert raised.value.rejection.reason is RejectionReason.INVALID_ID


def test_invalid_key_rejected_as_invalid_id() -> None:
    with pytest.raises(CatalogKeyError, match="'order:1'") as raised:
        parse_catalog_message(b"order:1", _value())

    assert raised.value.rejection.reason is RejectionReason.INVALID_ID
