"""OTTO multi-objective recommender dataset (Kaggle 2022, otto.de).

JSON lines, one per session: ``{"session": 0, "events": [{"aid": 1517085,
"ts": 1659304800025, "type": "clicks"}, ...]}`` with Unix-ms times and the
types clicks, carts and orders. An OTTO "session" spans up to four weeks of
one visitor, so its id becomes the ``user_id`` and sessions are derived from a
30-minute idle gap. OTTO publishes no item metadata, so there are no items.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.replay.datasets.base import (
    Dataset,
    DatasetBuilder,
    RawEvent,
    open_text,
    row_id,
)

__all__ = ["NAME", "load"]

NAME = "otto"


def load(path: Path) -> Dataset:
    """Read an OTTO JSON-lines file (plain or gzipped) into events.

    Raises:
        DatasetFileError: the file does not exist or cannot be decoded.
    """
    builder = DatasetBuilder(NAME, derive_sessions=True)
    with open_text(path) as text:
        for line_number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            builder.count_row(path.name)
            try:
                document = json.loads(line)
            except json.JSONDecodeError:
                builder.reject("invalid_json")
                continue
            if not isinstance(document, dict) or not isinstance(
                document.get("events"), list
            ):
                builder.reject("missing_events")
                continue
            session = document.get("session")
            if session is None:
                builder.reject("missing_session")
                continue
            for index, event in enumerate(document["events"]):
                _append(builder, path, line_number, index, str(session), event)
    return builder.build()


def _append(
    builder: DatasetBuilder,
    path: Path,
    line_number: int,
    index: int,
    user_id: str,
    event: Any,
) -> None:
    if not isinstance(event, dict):
        builder.reject("invalid_event")
        return
    event_type = builder.map_type(str(event.get("type", "")))
    if event_type is None:
        return
    item_id, ts = event.get("aid"), event.get("ts")
    if item_id is None:
        builder.reject("missing_id")
        return
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        builder.reject("invalid_time")
        return
    builder.append(
        RawEvent(
            timestamp=ts / 1000.0,
            event_id=row_id(NAME, path, line_number, index),
            event_type=event_type,
            user_id=user_id,
            item_id=str(item_id),
        )
    )
