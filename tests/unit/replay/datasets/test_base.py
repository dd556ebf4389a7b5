from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas.events import EventType
from services.replay.datasets.base import (
    CsvRows,
    DatasetBuilder,
    RawEvent,
    map_event_type,
    open_text,
    row_id,
)
from services.replay.errors import DatasetFileError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("view", EventType.CLICK),
        ("pv", EventType.CLICK),
        ("click", EventType.CLICK),
        ("clicks", EventType.CLICK),
        ("cart", EventType.CART_ADD),
        ("carts", EventType.CART_ADD),
        ("addtocart", EventType.CART_ADD),
        ("purchase", EventType.PURCHASE),
        ("buy", EventType.PURCHASE),
        ("orders", EventType.PURCHASE),
        ("transaction", EventType.PURCHASE),
        (" View ", EventType.CLICK),
    ],
)
def test_map_event_type_known_names(raw: str, expected: EventType) -> None:
    assert map_event_type(raw) is expected


@pytest.mark.parametrize("raw", ["fav", "remove_from_cart", "", "purchased"])
def test_map_event_type_unknown_is_none(raw: str) -> None:
    assert map_event_type(raw) is None


def _row(timestamp: float, event_id: str, user_id: str = "u1") -> RawEvent:
    return RawEvent(timestamp, event_id, EventType.CLICK, user_id, "i1")


def test_builder_sorts_ties_in_file_order() -> None:
    builder = DatasetBuilder("test")
    for row in [
        _row(20, "late"),
        _row(10, "tie-a"),
        _row(10, "tie-b"),
        _row(5, "first"),
    ]:
        builder.append(row)

    dataset = builder.build()

    assert [e.event_id for e in dataset.events] == ["first", "tie-a", "tie-b", "late"]


def test_builder_splits_sessions_after_30_idle_minutes() -> None:
    builder = DatasetBuilder("test", derive_sessions=True)
    times = [0, 60, 60 + 1800, 60 + 1801 + 1800, 60 + 1801 + 1800 + 10]
    for number, timestamp in enumerate(times):
        builder.append(_row(timestamp, f"e{number}"))
    builder.append(_row(30, "other-user", user_id="u2"))

    dataset = builder.build()

    sessions = {e.event_id: e.session_id for e in dataset.events}
    assert sessions["e0"] == "u1:1"
    assert sessions["e1"] == "u1:1"
    assert sessions["e2"] == "u1:1"
    assert sessions["e3"] == "u1:2"
    assert sessions["e4"] == "u1:2"
    assert sessions["other-user"] == "u2:1"
    assert dataset.summary.sessions_derived


def test_builder_keeps_given_sessions_without_derivation() -> None:
    builder = DatasetBuilder("test")
    builder.append(_row(0, "e1")._replace(session_id="s-from-data"))

    dataset = builder.build()

    assert dataset.events[0].session_id == "s-from-data"


def test_builder_counts_invalid_rows_by_reason() -> None:
    builder = DatasetBuilder("test")
    builder.append(_row(0, "ok"))
    builder.append(_row(1, "negative")._replace(price=-1.0))
    builder.append(_row(2, "no-user", user_id=""))
    builder.append(_row(1e12, "far-time"))
    builder.map_type("fav")
    builder.map_type("fav")

    dataset = builder.build()

    assert [e.event_id for e in dataset.events] == ["ok"]
    assert dataset.summary.unparseable["invalid_price"] == 1
    assert dataset.summary.unparseable["missing_id"] == 1
    assert dataset.summary.unparseable["invalid_time"] == 1
    assert dataset.summary.skipped_event_types == {"fav": 2}


def test_builder_item_counts_invalid_item() -> None:
    builder = DatasetBuilder("test")

    item = builder.item(
        item_id="i1", brand="x" * 200, updated_at="2019-10-01T00:00:00Z"
    )

    assert item is None
    assert builder.summary.unparseable["invalid_item_brand"] == 1


def test_row_id_is_deterministic() -> None:
    path = Path("/data/events_2019.csv.gz")

    first = row_id("rees46", path, 7)
    second = row_id("rees46", path, 7)

    assert first == second == "rees46:events_2019:7"
    assert row_id("otto", path, 3, 12) == "otto:events_2019:3:12"


def test_open_text_missing_file_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"

    with pytest.raises(DatasetFileError) as raised:
        open_text(missing)

    assert str(raised.value) == f"dataset file {str(missing)!r} not found"


def test_summary_lines_list_skips_and_unparseable() -> None:
    builder = DatasetBuilder("test")
    builder.count_row("file.csv")
    builder.map_type("fav")
    builder.reject("invalid_time")

    lines = builder.build().summary.lines()

    assert lines[0] == "dataset test: file.csv 1 rows"
    assert "skipped event types: fav 1" in lines
    assert "unparseable rows: invalid_time 1" in lines


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    with open_text(path) as text:
        return list(CsvRows(text, path))


def test_csv_rows_number_lines_from_one(
    write_file: Callable[[str, str], Path],
) -> None:
    path = write_file("rows.csv", "a,b\n\n1,2\r\n")

    rows = _read_rows(path)

    assert rows == [(1, ["a", "b"]), (2, []), (3, ["1", "2"])]


def test_csv_rows_header_then_data_rows(
    write_file: Callable[[str, str], Path],
) -> None:
    path = write_file("rows.csv", "a,b\n1,2\n")

    with open_text(path) as text:
        rows = CsvRows(text, path)
        header = rows.header()
        rest = list(rows)

    assert header == ["a", "b"]
    assert rest == [(2, ["1", "2"])]


def test_csv_rows_stop_at_stray_quote(
    write_file: Callable[[str, str], Path],
) -> None:
    path = write_file("quote.csv", 'a,b\n1,2\n3,"brand\n5,6\n7,8\n')

    with pytest.raises(DatasetFileError) as raised:
        _read_rows(path)

    assert str(raised.value) == (
        f"dataset file {str(path)!r} line 3: a field starts with a double quote "
        "that is not closed on that line, so lines 3-5 were read as one row; a "
        "field of this dataset never spans lines, so remove the stray quote and "
        "load again"
    )


def test_csv_rows_stop_at_oversized_quoted_field(
    write_file: Callable[[str, str], Path],
) -> None:
    many_rows = "2019-10-01,view,1,2,,brand,1.0,3,session\n" * 5_000
    path = write_file("quote.csv", 'a,b\n1,"brand\n' + many_rows)

    with pytest.raises(DatasetFileError) as raised:
        _read_rows(path)

    message = str(raised.value)
    assert message.startswith(f"dataset file {str(path)!r} line 2: a field starts")
    assert "so the lines after it ran into one field (field larger than" in message


def test_csv_rows_reject_oversized_single_line(
    write_file: Callable[[str, str], Path],
) -> None:
    path = write_file("long.csv", "a,b\n1," + "x" * 200_000 + "\n")

    with pytest.raises(DatasetFileError, match=r"long\.csv' line 2 cannot be parsed"):
        _read_rows(path)


def _truncated_gzip(path: Path) -> None:
    lines = "".join(f"{number},{number * 7}\n" for number in range(10_000))
    path.write_bytes(gzip.compress(lines.encode())[:300])


# One CSV row, gzip-compressed.
_GZIP_ROW = gzip.compress(b"a,b\n")


def _corrupt_gzip(path: Path) -> None:
    data = bytearray(gzip.compress(bytes(range(256)) * 100))
    data[20:40] = b"\xff" * 20
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("name", "write", "reason"),
    [
        ("cut.csv.gz", _truncated_gzip, "the gzip data is truncated ("),
        ("bad.csv.gz", _corrupt_gzip, "the gzip data is corrupt ("),
        (
            "plain.csv.gz",
            lambda path: path.write_bytes(b"a,b\n"),
            "the name ends in .gz but the file is not gzip-compressed (",
        ),
        (
            "tail.csv.gz",
            lambda path: path.write_bytes(_GZIP_ROW + b"junk"),
            f"the gzip data takes the first {len(_GZIP_ROW)} bytes, and the 4 "
            "bytes after them are not gzip (they start with b'junk')",
        ),
        (
            "binary.csv",
            lambda path: path.write_bytes(b"a,b\n\xff\xfe\n"),
            "the file is not UTF-8 text (byte 0xff cannot be decoded)",
        ),
        (
            "packed.csv",
            lambda path: path.write_bytes(gzip.compress(b"\xff" * 10)),
            "the file is gzip-compressed but its name does not end in .gz",
        ),
    ],
    ids=[
        "truncated",
        "corrupt",
        "not-gzip",
        "gzip-then-junk",
        "not-utf8",
        "gzip-without-gz",
    ],
)
def test_open_text_names_undecodable_file(
    tmp_path: Path, name: str, write: Callable[[Path], object], reason: str
) -> None:
    path = tmp_path / name
    write(path)

    with pytest.raises(DatasetFileError) as raised, open_text(path) as text:
        text.read()

    message = str(raised.value)
    assert message.startswith(f"dataset file {str(path)!r} cannot be read: {reason}")
    assert message.endswith(
        "; expected a complete UTF-8 text file, gzip-compressed exactly when its "
        "name ends in .gz"
    )
    assert len(message.splitlines()) == 1
