"""Reasons and messages of dead-lettered catalog records, without servers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.catalog import CatalogRecord
from schemas.deadletters import RejectionReason
from services.features.consumer import _message, _reason

RECORDS: TypeAdapter[Any] = TypeAdapter(CatalogRecord)
ITEM = {
    "schema_version": 1,
    "record_type": "item",
    "item_id": "44600062",
    "updated_at": "2019-10-01T00:00:00Z",
}


def _rejected(**changes: Any) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        RECORDS.validate_json(json.dumps({**ITEM, **changes}))
    return raised.value


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"item_id": "x\u0000y"}, RejectionReason.INVALID_ID),
        ({"item_id": "x\n"}, RejectionReason.INVALID_ID),
        ({"item_id": ""}, RejectionReason.INVALID_ID),
        ({"category_id": "c\u001f1"}, RejectionReason.INVALID_ID),
        ({"item_id": "i" * 129}, RejectionReason.ID_TOO_LONG),
        ({"price": -1}, RejectionReason.OUT_OF_RANGE),
    ],
)
def test_catalog_rejection_reason(
    changes: dict[str, Any], reason: RejectionReason
) -> None:
    assert _reason(_rejected(**changes)) is reason


def test_catalog_rejection_message_is_one_line() -> None:
    message = _message(_rejected(item_id="x\u0000y", price=-1, stock="many"))

    assert "\n" not in message
    assert message.startswith("field 'item.item_id': ")
    assert "field 'item.price': " in message
