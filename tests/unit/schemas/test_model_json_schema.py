"""The wire models' JSON Schemas use JSON Schema's own keywords for bounds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from schemas.catalog import ItemRecord, PromotionRecord, ReviewRecord
from schemas.deadletters import DeadLetter
from schemas.events import Event
from schemas.recommendations import Slate
from schemas.training import TrainingExample

# pydantic writes a constraint it could not translate under its own name.
_PYDANTIC_NAMES = {"ge", "gt", "le", "lt", "min_length", "max_length"}


def _keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keys(value)


@pytest.mark.parametrize(
    "model",
    [
        Event,
        ItemRecord,
        PromotionRecord,
        ReviewRecord,
        DeadLetter,
        Slate,
        TrainingExample,
    ],
)
def test_bounds_use_json_schema_keywords(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()

    assert _PYDANTIC_NAMES.isdisjoint(_keys(schema))


def test_event_quantity_bounds() -> None:
    quantity = Event.model_json_schema()["properties"]["quantity"]["anyOf"][0]

    assert quantity == {"type": "integer", "minimum": 1, "maximum": 10_000}
