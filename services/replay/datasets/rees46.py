"""REES46 "eCommerce behavior data from multi category store" (Kaggle, Open CDP).

Columns: ``event_time,event_type,product_id,category_id,category_code,brand,
price,user_id,user_session``. ``event_time`` reads ``2019-10-01 00:00:00 UTC``.
Every row carries the product's category, brand (may be empty) and price, and
a session id, so no sessions are derived. ``remove_from_cart`` rows, which the
full dataset has, are skipped and counted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from services.replay.datasets.base import (
    CsvRows,
    Dataset,
    DatasetBuilder,
    DatasetFileError,
    RawEvent,
    header_text,
    open_text,
    parse_price,
    row_id,
    utc_from_seconds,
)

__all__ = ["NAME", "load"]

NAME = "rees46"

_COLUMNS = [
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
]


def load(path: Path) -> Dataset:
    """Read one REES46 monthly CSV (plain or gzipped) into events and items.

    Raises:
        DatasetFileError: the file does not exist, cannot be decoded, has a
            stray double quote, or its header is not the REES46 header.
    """
    builder = DatasetBuilder(NAME)
    latest: dict[str, tuple[str, str, str, float | None, float]] = {}
    times: dict[str, float] = {}
    with open_text(path) as text:
        rows = CsvRows(text, path)
        header = rows.header()
        if header != _COLUMNS:
            raise DatasetFileError(
                f"{str(path)!r} has {header_text(header)}; expected the REES46 columns "
                f"{','.join(_COLUMNS)}"
            )
        for line_number, row in rows:
            if not builder.accept_row(path.name, row, len(_COLUMNS)):
                continue
            time_text, raw_type, item_id, category_id, code, brand, price_text = row[:7]
            user_id, session_id = row[7], row[8]
            event_type = builder.map_type(raw_type)
            if event_type is None:
                continue
            timestamp = times.get(time_text)
            if timestamp is None:
                try:
                    timestamp = _parse_time(time_text)
                except ValueError:
                    builder.reject("invalid_time")
                    continue
                times[time_text] = timestamp
            try:
                price = parse_price(price_text)
            except ValueError:
                builder.reject("invalid_price")
                continue
            is_added = builder.append(
                RawEvent(
                    timestamp=timestamp,
                    event_id=row_id(NAME, path, line_number),
                    event_type=event_type,
                    user_id=user_id,
                    item_id=item_id,
                    session_id=session_id or None,
                    price=price,
                )
            )
            if is_added:
                # The file is in time order, so the last row of an item has
                # its latest attributes.
                latest[item_id] = (category_id, code, brand, price, timestamp)
    items = []
    for item_id, (category_id, code, brand, price, timestamp) in latest.items():
        item = builder.item(
            item_id=item_id,
            category_id=category_id or None,
            category_path=code or None,
            brand=brand or None,
            price=price if price is not None and price >= 0 else None,
            updated_at=utc_from_seconds(timestamp),
        )
        if item is not None:
            items.append(item)
    return builder.build(items)


def _parse_time(text: str) -> float:
    """Parse ``2019-10-01 00:00:00 UTC`` into Unix seconds."""
    if not text.endswith(" UTC"):
        raise ValueError(f"event_time {text!r} does not end in ' UTC'")
    return datetime.fromisoformat(text[:-4]).replace(tzinfo=UTC).timestamp()
