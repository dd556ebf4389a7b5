"""Building blocks shared by the dataset adapters.

An adapter reads the raw files of one public dataset and hands each usable row
to a :class:`DatasetBuilder` as a :class:`RawEvent`. The builder sorts the rows
by event time (stable, so rows with the same time keep their file order),
derives sessions where the data has none, and turns every row into a validated
:class:`~schemas.events.Event`. Rows that cannot be used are counted by reason
in the :class:`AdapterSummary`, never dropped silently. A file that cannot be
decoded, or a stray double quote that would merge rows (see :class:`CsvRows`),
stops the load with the file's name instead.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from schemas.catalog import ItemRecord
from schemas.events import Event, EventType
from services.replay.errors import (
    DECODE_ERRORS,
    GZIP_MAGIC,
    DatasetFileError,
    describe_read_error,
)

__all__ = [
    "SESSION_IDLE_SECONDS",
    "AdapterSummary",
    "CsvRows",
    "Dataset",
    "DatasetBuilder",
    "DatasetFileError",
    "RawEvent",
    "map_event_type",
    "header_text",
    "open_text",
    "parse_price",
    "row_id",
    "utc_from_seconds",
]

# A user who stays idle this long starts a new session. Thirty minutes is a
# common web-analytics default for the session timeout.
SESSION_IDLE_SECONDS = 30 * 60

_EVENT_TYPE_ALIASES: dict[str, EventType] = {
    "view": EventType.CLICK,
    "pv": EventType.CLICK,
    "click": EventType.CLICK,
    "clicks": EventType.CLICK,
    "cart": EventType.CART_ADD,
    "carts": EventType.CART_ADD,
    "addtocart": EventType.CART_ADD,
    "purchase": EventType.PURCHASE,
    "buy": EventType.PURCHASE,
    "orders": EventType.PURCHASE,
    "transaction": EventType.PURCHASE,
}


def map_event_type(raw: str) -> EventType | None:
    """Map a dataset's event type to Cartwheel's, or None when it has no match.

    ``view``, ``pv``, ``click`` and ``clicks`` become click; ``cart``,
    ``carts`` and ``addtocart`` become cart_add; ``purchase``, ``buy``,
    ``orders`` and ``transaction`` become purchase. Matching ignores case and
    surrounding spaces.
    """
    return _EVENT_TYPE_ALIASES.get(raw.strip().lower())


def utc_from_seconds(seconds: float) -> datetime:
    """Return the UTC datetime of a Unix time in seconds."""
    return datetime.fromtimestamp(seconds, UTC)


def parse_price(text: str) -> float | None:
    """Parse a price column: an empty cell is None, anything else a float.

    Raises:
        ValueError: the text is not a number.
    """
    text = text.strip()
    if not text:
        return None
    return float(text)


def open_text(path: Path) -> AbstractContextManager[io.TextIOWrapper]:
    """Open a text file for reading, decompressing it when the name ends in .gz.

    Use the result in a ``with`` block: inside it, a file that cannot be
    decoded (gzip data that is truncated or corrupt, a .gz name on a plain
    file, bytes that are not UTF-8) raises a DatasetFileError naming the file.

    Raises:
        DatasetFileError: the file does not exist, or is a folder; inside the
            block, the file cannot be decoded.
    """
    if path.is_dir():
        raise DatasetFileError(
            f"dataset file {str(path)!r} is a folder; expected the file itself"
        )
    if not path.is_file():
        raise DatasetFileError(f"dataset file {str(path)!r} not found")
    if path.suffix == ".gz":
        return _decoding(
            path,
            io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline=""),
        )
    return _decoding(path, open(path, encoding="utf-8", newline=""))  # noqa: SIM115


@contextmanager
def _decoding(path: Path, text: io.TextIOWrapper) -> Iterator[io.TextIOWrapper]:
    """Close ``text`` after the block, and name the file when it cannot be decoded."""
    with text:
        try:
            yield text
        except DECODE_ERRORS as exc:
            raise DatasetFileError(
                f"dataset file {str(path)!r} cannot be read: "
                f"{_decode_problem(path, exc)}; expected a complete UTF-8 text "
                "file, gzip-compressed exactly when its name ends in .gz"
            ) from exc


def _decode_problem(path: Path, exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError) and path.suffix != ".gz":
        with open(path, "rb") as raw:
            if raw.read(2) == GZIP_MAGIC:
                return "the file is gzip-compressed but its name does not end in .gz"
    return describe_read_error(exc, path)


def header_text(header: Sequence[str] | None) -> str:
    """Describe a file's first CSV row for an error: the row, or that it is empty."""
    if not header:
        return "no header line (the file is empty)"
    return f"header {list(header)!r}"


class CsvRows:
    """The rows of a dataset's CSV file, each with its line number.

    The supported datasets contain ids, times, event types, prices and
    category or brand names, and none of these spans lines. A row that does
    has a stray double quote: the field it opens runs on to the next quote,
    however many lines later, and takes the rows in between with it. A row with the
    wrong number of columns is counted and skipped, but such a row stops the
    load with the line of the quote, because the rows it took are lost and
    nothing counts them.

    Args:
        text: the open file, as :func:`open_text` yields it.
        path: the file, named in errors.
        delimiter: the column separator.
    """

    def __init__(
        self, text: Iterable[str], path: Path, *, delimiter: str = ","
    ) -> None:
        self._reader = csv.reader(text, delimiter=delimiter)
        self._path = path

    def header(self) -> list[str] | None:
        """Read the next row (the header, on a new file), or None at its end."""
        for _, row in self:
            return row
        return None

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        """Yield (line number, row) pairs, counting lines from 1.

        Raises:
            DatasetFileError: a row spans lines, or a line cannot be parsed.
        """
        reader = self._reader
        line_number = reader.line_num
        try:
            for row in reader:
                line_number += 1
                if reader.line_num != line_number:
                    raise self._stray_quote(
                        line_number,
                        f"so lines {line_number}-{reader.line_num} were read as "
                        "one row",
                    )
                yield line_number, row
        except csv.Error as exc:
            start = line_number + 1
            if reader.line_num > start:
                raise self._stray_quote(
                    start, f"so the lines after it ran into one field ({exc})"
                ) from exc
            raise DatasetFileError(
                f"dataset file {str(self._path)!r} line {start} cannot be parsed "
                f"as CSV ({exc}); fix or remove that line and load again"
            ) from exc

    def _stray_quote(self, line_number: int, consequence: str) -> DatasetFileError:
        return DatasetFileError(
            f"dataset file {str(self._path)!r} line {line_number}: a field starts "
            f"with a double quote that is not closed on that line, {consequence}; "
            "a field of this dataset never spans lines, so remove the stray quote "
            "and load again"
        )


class RawEvent(NamedTuple):
    """One usable row of a dataset, before sorting and validation.

    ``event_id`` is built from the dataset name and the row's identity (file and
    line), so that replaying the same file twice yields the same ids.
    """

    timestamp: float
    event_id: str
    event_type: EventType
    user_id: str
    item_id: str
    session_id: str | None = None
    price: float | None = None
    quantity: int | None = None
    order_id: str | None = None


@dataclass
class AdapterSummary:
    """Counts of the rows an adapter read, turned into events, skipped or rejected."""

    dataset: str
    rows_read: Counter[str] = field(default_factory=Counter)
    events_by_type: Counter[str] = field(default_factory=Counter)
    skipped_event_types: Counter[str] = field(default_factory=Counter)
    unparseable: Counter[str] = field(default_factory=Counter)
    sessions_derived: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        """Number of events the adapter produced."""
        return sum(self.events_by_type.values())

    def lines(self) -> list[str]:
        """Return the summary as short human-readable lines."""
        lines = [
            f"dataset {self.dataset}: "
            + ", ".join(
                f"{name} {count} rows" for name, count in self.rows_read.items()
            ),
            "events: "
            + (_format_counts(self.events_by_type) or "none")
            + (
                " (sessions derived from a 30-minute idle gap)"
                if self.sessions_derived
                else ""
            ),
        ]
        if self.skipped_event_types:
            lines.append(
                "skipped event types: " + _format_counts(self.skipped_event_types)
            )
        if self.unparseable:
            lines.append("unparseable rows: " + _format_counts(self.unparseable))
        lines.extend(self.notes)
        return lines


def _format_counts(counts: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


@dataclass
class Dataset:
    """A dataset turned into Cartwheel events (in event-time order) and items."""

    name: str
    events: list[Event]
    items: list[ItemRecord]
    summary: AdapterSummary

    @property
    def start_time(self) -> datetime:
        """Event time of the first event."""
        return self.events[0].event_time

    @property
    def end_time(self) -> datetime:
        """Event time of the last event."""
        return self.events[-1].event_time


class DatasetBuilder:
    """Collect raw rows, then sort them, derive sessions and validate them.

    Args:
        dataset: the dataset's registry name, used in the summary.
        derive_sessions: split each user's events into sessions at idle gaps of
            ``SESSION_IDLE_SECONDS`` (for data without session ids).
    """

    def __init__(self, dataset: str, *, derive_sessions: bool = False) -> None:
        # LIMITATION(L-14): every row is held in memory until the sort, which
        # suits the samples (at most about 100,000 rows) but not a full
        # dataset month such as REES46's 42 million October rows.
        self.summary = AdapterSummary(dataset, sessions_derived=derive_sessions)
        self._derive_sessions = derive_sessions
        self._rows: list[RawEvent] = []

    def count_row(self, file_name: str) -> None:
        """Count one data row read from ``file_name``."""
        self.summary.rows_read[file_name] += 1

    def accept_row(self, file_name: str, row: list[str], columns: int) -> bool:
        """Count one row; return False after rejecting it for a wrong width."""
        self.summary.rows_read[file_name] += 1
        if len(row) != columns:
            self.summary.unparseable["wrong_column_count"] += 1
            return False
        return True

    def reject(self, reason: str) -> None:
        """Count one row that could not be parsed, by reason."""
        self.summary.unparseable[reason] += 1

    def map_type(self, raw_event_type: str) -> EventType | None:
        """Map a row's event type, counting it as skipped when it has no match."""
        event_type = map_event_type(raw_event_type)
        if event_type is None:
            self.summary.skipped_event_types[raw_event_type.strip() or "<empty>"] += 1
        return event_type

    def append(self, row: RawEvent) -> bool:
        """Add a row, or reject it when its user or item id is empty."""
        if not row.user_id or not row.item_id:
            self.summary.unparseable["missing_id"] += 1
            return False
        self._rows.append(row)
        return True

    def item(self, **fields: Any) -> ItemRecord | None:
        """Return a validated item, or None after counting why it is invalid."""
        try:
            return ItemRecord(**fields)
        except ValidationError as exc:
            self.reject(f"invalid_item_{exc.errors()[0]['loc'][0]}")
            return None

    def build(self, items: list[ItemRecord] | None = None) -> Dataset:
        """Sort the rows by event time, derive sessions and validate every row."""
        # list.sort is stable, so rows with equal times keep their file order.
        self._rows.sort(key=_timestamp_of)
        rows: Iterator[RawEvent] = iter(self._rows)
        if self._derive_sessions:
            rows = _with_idle_sessions(self._rows)
        events = []
        for row in rows:
            try:
                event = Event(
                    event_id=row.event_id,
                    event_type=row.event_type,
                    user_id=row.user_id,
                    item_id=row.item_id,
                    event_time=utc_from_seconds(row.timestamp),
                    session_id=row.session_id,
                    price=row.price,
                    quantity=row.quantity,
                    order_id=row.order_id,
                )
            except ValidationError as exc:
                self.reject(f"invalid_{exc.errors()[0]['loc'][0]}")
                continue
            except (OverflowError, OSError, ValueError):
                self.reject("invalid_time")
                continue
            events.append(event)
            self.summary.events_by_type[event.event_type.value] += 1
        self._rows = []
        return Dataset(self.summary.dataset, events, items or [], self.summary)


def _timestamp_of(row: RawEvent) -> float:
    return row.timestamp


def _with_idle_sessions(rows: list[RawEvent]) -> Iterator[RawEvent]:
    """Give each row a session id ``<user_id>:<n>`` that changes at idle gaps."""
    last_seen: dict[str, tuple[float, int]] = {}
    for row in rows:
        previous = last_seen.get(row.user_id)
        if previous is None:
            number = 1
        elif row.timestamp - previous[0] > SESSION_IDLE_SECONDS:
            number = previous[1] + 1
        else:
            number = previous[1]
        last_seen[row.user_id] = (row.timestamp, number)
        yield row._replace(session_id=f"{row.user_id}:{number}")


def row_id(dataset: str, path: Path, line_number: int, *parts: object) -> str:
    """Return a deterministic event id from the dataset, file and row identity.

    The id is ``<dataset>:<file name without extensions>:<line>[:<part>...]``,
    so replaying the same file again yields the same ids.
    """
    stem = path.name.split(".", 1)[0]
    suffix = "".join(f":{part}" for part in parts)
    return f"{dataset}:{stem}:{line_number}{suffix}"
