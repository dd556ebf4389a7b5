"""Taobao "User Behavior Data from Taobao for Recommendation" (Tianchi 649).

Columns: ``user_id,item_id,category_id,behavior_type,timestamp`` with Unix
seconds. The original file has no header; a header row is accepted and skipped.
Behaviour types: ``pv`` (click), ``cart``, ``buy`` (purchase) and ``fav``
(a favourite, which has no Cartwheel event type and is skipped and counted).
There are no session ids, so sessions are derived from a 30-minute idle gap.
"""

from __future__ import annotations

from pathlib import Path

from services.replay.datasets.base import (
    CsvRows,
    Dataset,
    DatasetBuilder,
    RawEvent,
    open_text,
    row_id,
    utc_from_seconds,
)

__all__ = ["NAME", "load"]

NAME = "taobao"

_HEADER = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]


def load(path: Path) -> Dataset:
    """Read a UserBehavior CSV (plain or gzipped) into events and items.

    Raises:
        DatasetFileError: the file does not exist, cannot be decoded or has
            a stray double quote.
    """
    builder = DatasetBuilder(NAME, derive_sessions=True)
    categories: dict[str, tuple[str, float]] = {}
    with open_text(path) as text:
        for line_number, row in CsvRows(text, path):
            if line_number == 1 and row == _HEADER:
                continue
            if not builder.accept_row(path.name, row, len(_HEADER)):
                continue
            user_id, item_id, category_id, raw_type, time_text = row
            event_type = builder.map_type(raw_type)
            if event_type is None:
                continue
            try:
                timestamp = float(int(time_text))
            except ValueError:
                builder.reject("invalid_time")
                continue
            is_added = builder.append(
                RawEvent(
                    timestamp=timestamp,
                    event_id=row_id(NAME, path, line_number),
                    event_type=event_type,
                    user_id=user_id,
                    item_id=item_id,
                )
            )
            if is_added and category_id:
                known = categories.get(item_id)
                if known is None or known[1] <= timestamp:
                    categories[item_id] = (category_id, timestamp)
    items = []
    for item_id, (category_id, timestamp) in sorted(categories.items()):
        item = builder.item(
            item_id=item_id,
            category_id=category_id,
            updated_at=utc_from_seconds(timestamp),
        )
        if item is not None:
            items.append(item)
    return builder.build(items)
