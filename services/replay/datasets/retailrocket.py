"""Retailrocket e-commerce dataset (Kaggle ``retailrocket/ecommerce-dataset``).

Files, looked up in the dataset folder:

* events (``events*.csv[.gz]``): ``timestamp,visitorid,event,itemid,
  transactionid`` with Unix-ms timestamps and the types view, addtocart and
  transaction. There are no session ids, so sessions are derived from a
  30-minute idle gap per visitor. ``transactionid`` becomes the ``order_id``.
* category tree (``category_tree.csv[.gz]``): ``categoryid,parentid``.
* item properties (``item_properties*.csv[.gz]``, every matching file, such
  as Kaggle's ``item_properties_part1.csv`` and ``item_properties_part2.csv``),
  either Kaggle's raw ``timestamp,itemid,property,value`` or the processed
  numeric form ``itemid,property,num_value``. Property ``categoryid`` gives
  the item's category (and, with the tree, its path) and property ``790`` its
  price.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from schemas.catalog import ItemRecord
from services.replay.datasets.base import (
    CsvRows,
    Dataset,
    DatasetBuilder,
    DatasetFileError,
    RawEvent,
    header_text,
    open_text,
    row_id,
    utc_from_seconds,
)

__all__ = ["NAME", "category_paths", "load"]

NAME = "retailrocket"

# LIMITATION(L-10): property 790 is read as the item price. Retailrocket does
# not document it; the community treats it as the price, and its values sit in
# the publisher's scaled units rather than a currency.
_PRICE_PROPERTY = "790"
_CATEGORY_PROPERTY = "categoryid"
_MAX_TREE_DEPTH = 32


@dataclass
class _ItemAttributes:
    category_id: str | None = None
    price: float | None = None
    updated_at: float | None = None
    # Unix seconds of the raw row that set each property, so that the newest
    # snapshot wins in whichever file or row order it is read.
    property_times: dict[str, float] = field(default_factory=dict)


def load(path: Path) -> Dataset:
    """Read the Retailrocket events, category tree and item properties.

    Args:
        path: the dataset folder, or the events file itself (the tree and the
            properties are then looked up next to it).

    Raises:
        DatasetFileError: no events file was found, or a file cannot be
            decoded, has a stray double quote or has another header.
    """
    events_path = _find(path, "events*.csv*") if path.is_dir() else path
    if events_path is None:
        raise DatasetFileError(
            f"no events*.csv[.gz] in {str(path)!r}; expected the Retailrocket "
            "folder or events file"
        )
    folder = events_path.parent
    builder = DatasetBuilder(NAME, derive_sessions=True)
    item_ids = _read_events(events_path, builder)

    tree_path = _find(folder, "category_tree.csv*")
    tree = _read_tree(tree_path, builder) if tree_path else {}
    attributes: dict[str, _ItemAttributes] = {}
    for properties_path in sorted(folder.glob("item_properties*.csv*")):
        _read_properties(properties_path, item_ids, builder, attributes)
    # LIMITATION(L-11): the processed item-property sample has no categoryid
    # rows, so its items get no category even though the tree is complete.
    if tree and not any(a.category_id for a in attributes.values()):
        builder.summary.notes.append(
            f"category tree: {len(tree)} categories, not joined to items because "
            "the item properties hold no categoryid rows"
        )
    dataset = builder.build()
    dataset.items = _items(attributes, category_paths(tree), dataset, builder)
    return dataset


def category_paths(tree: dict[str, str | None]) -> dict[str, str]:
    """Return each category's path from its root, as ids joined by ``/``."""
    paths: dict[str, str] = {}
    for category_id in tree:
        chain = [category_id]
        parent = tree.get(category_id)
        while parent is not None and len(chain) < _MAX_TREE_DEPTH:
            chain.append(parent)
            parent = tree.get(parent)
        paths[category_id] = "/".join(reversed(chain))
    return paths


def _find(folder: Path, pattern: str) -> Path | None:
    matches = sorted(folder.glob(pattern))
    return matches[0] if matches else None


def _read_events(path: Path, builder: DatasetBuilder) -> set[str]:
    item_ids: set[str] = set()
    with open_text(path) as text:
        rows = CsvRows(text, path)
        header = rows.header()
        expected = ["timestamp", "visitorid", "event", "itemid", "transactionid"]
        if header != expected:
            raise DatasetFileError(
                f"{str(path)!r} has {header_text(header)}; "
                f"expected {','.join(expected)}"
            )
        for line_number, row in rows:
            if not builder.accept_row(path.name, row, len(expected)):
                continue
            time_text, visitor_id, raw_type, item_id, transaction_id = row
            event_type = builder.map_type(raw_type)
            if event_type is None:
                continue
            try:
                timestamp = int(time_text) / 1000.0
            except ValueError:
                builder.reject("invalid_time")
                continue
            item_ids.add(item_id)
            builder.append(
                RawEvent(
                    timestamp=timestamp,
                    event_id=row_id(NAME, path, line_number),
                    event_type=event_type,
                    user_id=visitor_id,
                    item_id=item_id,
                    order_id=transaction_id or None,
                )
            )
    return item_ids


def _read_tree(path: Path, builder: DatasetBuilder) -> dict[str, str | None]:
    tree: dict[str, str | None] = {}
    with open_text(path) as text:
        rows = CsvRows(text, path)
        rows.header()
        for _, row in rows:
            builder.count_row(path.name)
            if len(row) != 2 or not row[0]:
                builder.reject("category_tree_invalid_row")
                continue
            tree[row[0]] = row[1] or None
    return tree


def _read_properties(
    path: Path,
    item_ids: set[str],
    builder: DatasetBuilder,
    attributes: dict[str, _ItemAttributes],
) -> None:
    """Add the price and category of the items that occur in the events.

    A raw row applies unless the property was already set by a row with a
    later timestamp. The processed form has no timestamps, so its rows apply
    in file order.
    """
    with open_text(path) as text:
        rows = CsvRows(text, path)
        header = rows.header() or []
        is_raw = header == ["timestamp", "itemid", "property", "value"]
        if not is_raw and header != ["itemid", "property", "num_value"]:
            raise DatasetFileError(
                f"{str(path)!r} has {header_text(header)}; expected "
                "timestamp,itemid,property,value or itemid,property,num_value"
            )
        for _, row in rows:
            builder.count_row(path.name)
            if len(row) != len(header):
                builder.reject("item_properties_wrong_column_count")
                continue
            timestamp = None
            if is_raw:
                time_text, item_id, name, value = row
            else:
                item_id, name, value = row
                time_text = ""
            if item_id not in item_ids or name not in (
                _PRICE_PROPERTY,
                _CATEGORY_PROPERTY,
            ):
                continue
            try:
                if time_text:
                    timestamp = int(time_text) / 1000.0
                entry = attributes.setdefault(item_id, _ItemAttributes())
                if timestamp is not None and timestamp < entry.property_times.get(
                    name, timestamp
                ):
                    continue
                if name == _CATEGORY_PROPERTY:
                    entry.category_id = value
                else:
                    # The raw format writes numbers as tokens such as "n552.000".
                    entry.price = float(value.removeprefix("n"))
            except ValueError:
                builder.reject("item_properties_invalid_value")
                continue
            if timestamp is not None:
                entry.property_times[name] = timestamp
                entry.updated_at = max(entry.updated_at or timestamp, timestamp)


def _items(
    attributes: dict[str, _ItemAttributes],
    paths: dict[str, str],
    dataset: Dataset,
    builder: DatasetBuilder,
) -> list[ItemRecord]:
    if not dataset.events:
        return []
    # The processed properties have no timestamps; such items count as known
    # from the start of the log.
    start = dataset.start_time
    items = []
    for item_id, entry in sorted(attributes.items()):
        price = entry.price if entry.price is not None and entry.price >= 0 else None
        updated_at = entry.updated_at
        item = builder.item(
            item_id=item_id,
            category_id=entry.category_id,
            category_path=paths.get(entry.category_id or ""),
            price=price,
            updated_at=start if updated_at is None else utc_from_seconds(updated_at),
        )
        if item is not None:
            items.append(item)
    return items
