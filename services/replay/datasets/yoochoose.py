"""YOOCHOOSE clicks and buys (ACM RecSys Challenge 2015).

Two click formats are read:

* the raw challenge file ``yoochoose-clicks.dat``: ``session,timestamp,item,
  category`` without a header, ISO timestamps such as
  ``2014-04-02T13:17:46.940Z``;
* the prepared tab-separated form of session-based recommendation
  frameworks: header ``SessionId	ItemId	Time`` with Unix seconds.

When ``yoochoose-buys.dat[.gz]`` sits next to the clicks, its rows
(``session,timestamp,item,price,quantity``) become purchases. The data has no
user ids, so each session id doubles as the user id.

The raw category column becomes the item's category id, except ``0``, which
marks an unknown category.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from schemas.catalog import ItemRecord
from schemas.events import EventType
from services.replay.datasets.base import (
    CsvRows,
    Dataset,
    DatasetBuilder,
    DatasetFileError,
    RawEvent,
    open_text,
    row_id,
    utc_from_seconds,
)

__all__ = ["NAME", "load"]

NAME = "yoochoose"

_PREPARED_HEADER = ["SessionId", "ItemId", "Time"]


def load(path: Path) -> Dataset:
    """Read YOOCHOOSE clicks, and buys when present, into events and items.

    Args:
        path: a clicks file, or a folder whose first ``*clicks*`` file is read.

    Raises:
        DatasetFileError: no clicks file was found, or a file cannot be
            decoded or has a stray double quote.
    """
    clicks_path = path
    if path.is_dir():
        matches = sorted(path.glob("*clicks*"))
        if not matches:
            raise DatasetFileError(
                f"no *clicks* file in {str(path)!r}; expected the YOOCHOOSE folder "
                "or clicks file"
            )
        clicks_path = matches[0]
    builder = DatasetBuilder(NAME)
    items: dict[str, ItemRecord] = {}
    with open_text(clicks_path) as text:
        first_line = text.readline()
        text.seek(0)
        if first_line.rstrip("\r\n").split("\t") == _PREPARED_HEADER:
            _read_prepared_clicks(clicks_path, text, builder)
        else:
            _read_raw_clicks(clicks_path, text, builder, items)
    buys = sorted(clicks_path.parent.glob("yoochoose-buys.dat*"))
    if buys:
        _read_buys(buys[0], builder)
    else:
        builder.summary.notes.append("no yoochoose-buys.dat next to the clicks")
    return builder.build(list(items.values()))


def _read_prepared_clicks(
    path: Path, text: Iterable[str], builder: DatasetBuilder
) -> None:
    rows = CsvRows(text, path, delimiter="\t")
    rows.header()
    for line_number, row in rows:
        if not builder.accept_row(path.name, row, len(_PREPARED_HEADER)):
            continue
        session_id, item_id, time_text = row
        try:
            timestamp = float(time_text)
        except ValueError:
            builder.reject("invalid_time")
            continue
        _append_click(builder, path, line_number, session_id, item_id, timestamp)


def _read_raw_clicks(
    path: Path,
    text: Iterable[str],
    builder: DatasetBuilder,
    items: dict[str, ItemRecord],
) -> None:
    for line_number, row in CsvRows(text, path):
        if not builder.accept_row(path.name, row, 4):
            continue
        session_id, time_text, item_id, category = row
        try:
            timestamp = datetime.fromisoformat(time_text).timestamp()
        except ValueError:
            builder.reject("invalid_time")
            continue
        if _append_click(builder, path, line_number, session_id, item_id, timestamp):
            item = _item_from_category(builder, item_id, category, timestamp)
            if item is not None:
                items[item_id] = item


def _append_click(
    builder: DatasetBuilder,
    path: Path,
    line_number: int,
    session_id: str,
    item_id: str,
    timestamp: float,
) -> bool:
    return builder.append(
        RawEvent(
            timestamp=timestamp,
            event_id=row_id(NAME, path, line_number),
            event_type=EventType.CLICK,
            user_id=session_id,
            item_id=item_id,
            session_id=session_id,
        )
    )


def _item_from_category(
    builder: DatasetBuilder, item_id: str, category: str, timestamp: float
) -> ItemRecord | None:
    if not category or category == "0":
        return None
    return builder.item(
        item_id=item_id,
        category_id=category,
        updated_at=utc_from_seconds(timestamp),
    )


def _read_buys(path: Path, builder: DatasetBuilder) -> None:
    with open_text(path) as text:
        for line_number, row in CsvRows(text, path):
            if not builder.accept_row(path.name, row, 5):
                continue
            session_id, time_text, item_id, price_text, quantity_text = row
            try:
                timestamp = datetime.fromisoformat(time_text).timestamp()
            except ValueError:
                builder.reject("invalid_time")
                continue
            try:
                price = float(price_text)
                quantity = int(quantity_text)
            except ValueError:
                builder.reject("invalid_price_or_quantity")
                continue
            # A price or quantity of 0 is read as unknown: an event's quantity
            # starts at 1, and a free purchase would skew price features.
            builder.append(
                RawEvent(
                    timestamp=timestamp,
                    event_id=row_id(NAME, path, line_number),
                    event_type=EventType.PURCHASE,
                    user_id=session_id,
                    item_id=item_id,
                    session_id=session_id,
                    price=price if price > 0 else None,
                    quantity=quantity if quantity > 0 else None,
                )
            )
