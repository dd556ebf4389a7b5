"""DIGINETICA product search logs (CIKM Cup 2016, track 2).

Files, looked up in the dataset folder (separator ``;``):

* item views (``*item-views*.csv[.gz]``): ``session_id;user_id;item_id;
  timeframe;eventdate``;
* purchases (``*purchases*.csv[.gz]``): ``sessionId;userId;timeframe;
  eventdate;ordernumber;itemId``; ``ordernumber`` becomes the ``order_id``;
* product categories (``product-categories*.csv[.gz]``): ``itemId;categoryId``.

``userId`` is ``NA`` for anonymous sessions; those events get the user id
``anonymous-<session>``. Sessions come from the data.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from schemas.catalog import ItemRecord
from schemas.events import EventType
from services.replay.datasets.base import (
    CsvRows,
    Dataset,
    DatasetBuilder,
    DatasetFileError,
    RawEvent,
    header_text,
    open_text,
    row_id,
)

__all__ = ["NAME", "load"]

NAME = "diginetica"

_VIEW_COLUMNS = ["session_id", "user_id", "item_id", "timeframe", "eventdate"]
_PURCHASE_COLUMNS = [
    "sessionId",
    "userId",
    "timeframe",
    "eventdate",
    "ordernumber",
    "itemId",
]


def load(path: Path) -> Dataset:
    """Read DIGINETICA views, purchases and item categories.

    Args:
        path: the dataset folder.

    Raises:
        DatasetFileError: neither a views nor a purchases file was found, or
            a file cannot be decoded, has a stray double quote or has another
            header.
    """
    views = sorted(path.glob("*item-views*.csv*"))
    purchases = sorted(path.glob("*purchases*.csv*"))
    if not views and not purchases:
        raise DatasetFileError(
            f"no *item-views*.csv or *purchases*.csv in {str(path)!r}; expected "
            "the DIGINETICA folder"
        )
    builder = DatasetBuilder(NAME)
    dates: dict[str, float] = {}
    for views_path in views:
        _read(views_path, _VIEW_COLUMNS, EventType.CLICK, builder, dates, _view_fields)
    for purchases_path in purchases:
        _read(
            purchases_path,
            _PURCHASE_COLUMNS,
            EventType.PURCHASE,
            builder,
            dates,
            _purchase_fields,
        )
    dataset = builder.build()
    categories = sorted(path.glob("product-categories*.csv*"))
    if categories and dataset.events:
        dataset.items = _read_categories(categories[0], dataset, builder)
    return dataset


# (session, user, item, timeframe, eventdate, order number) of one row.
_Fields = tuple[str, str, str, str, str, str | None]


def _view_fields(row: list[str]) -> _Fields:
    session_id, user_id, item_id, timeframe, eventdate = row
    return session_id, user_id, item_id, timeframe, eventdate, None


def _purchase_fields(row: list[str]) -> _Fields:
    session_id, user_id, timeframe, eventdate, order_number, item_id = row
    return session_id, user_id, item_id, timeframe, eventdate, order_number


def _read(
    path: Path,
    columns: list[str],
    event_type: EventType,
    builder: DatasetBuilder,
    dates: dict[str, float],
    fields_of: Callable[[list[str]], _Fields],
) -> None:
    with open_text(path) as text:
        rows = CsvRows(text, path, delimiter=";")
        header = rows.header()
        if header != columns:
            raise DatasetFileError(
                f"{str(path)!r} has {header_text(header)}; expected {';'.join(columns)}"
            )
        for line_number, row in rows:
            if not builder.accept_row(path.name, row, len(columns)):
                continue
            session_id, user_id, item_id, timeframe, eventdate, order = fields_of(row)
            day = dates.get(eventdate)
            try:
                if day is None:
                    day = _midnight(eventdate)
                    dates[eventdate] = day
                offset_seconds = int(timeframe) / 1000.0
            except ValueError:
                builder.reject("invalid_time")
                continue
            # LIMITATION(L-12): the logs give only the day and the milliseconds
            # since the session started, so every session is placed at midnight
            # UTC of its day. Order within a session is real; the time of day
            # across sessions is not.
            builder.append(
                RawEvent(
                    timestamp=day + offset_seconds,
                    event_id=row_id(NAME, path, line_number),
                    event_type=event_type,
                    user_id=user_id
                    if user_id not in ("", "NA")
                    else f"anonymous-{session_id}",
                    item_id=item_id,
                    session_id=session_id,
                    order_id=order or None,
                )
            )


def _midnight(day: str) -> float:
    return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()


def _read_categories(
    path: Path, dataset: Dataset, builder: DatasetBuilder
) -> list[ItemRecord]:
    wanted = {event.item_id for event in dataset.events}
    # The table has no timestamps; its items count as known from the log's start.
    start = dataset.start_time
    items = []
    with open_text(path) as text:
        rows = CsvRows(text, path, delimiter=";")
        rows.header()
        for _, row in rows:
            builder.count_row(path.name)
            if len(row) != 2 or not row[0] or not row[1]:
                builder.reject("product_categories_invalid_row")
                continue
            if row[0] in wanted:
                item = builder.item(
                    item_id=row[0], category_id=row[1], updated_at=start
                )
                if item is not None:
                    items.append(item)
    return items
