from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from schemas.events import EventType
from services.replay.datasets import REES46_SAMPLE, rees46
from services.replay.errors import DatasetFileError

HEADER = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,"
    "user_id,user_session\n"
)


def test_rees46_sample_matches_published_counts() -> None:
    dataset = rees46.load(REES46_SAMPLE)

    assert dataset.summary.rows_read[REES46_SAMPLE.name] == 11_562
    assert dataset.summary.events_by_type == {
        "click": 11_313,
        "cart_add": 110,
        "purchase": 139,
    }
    assert not dataset.summary.unparseable
    assert not dataset.summary.skipped_event_types


def test_rees46_sample_ordered_unique_ids() -> None:
    dataset = rees46.load(REES46_SAMPLE)

    times = [event.event_time for event in dataset.events]
    assert times == sorted(times)
    assert len({event.event_id for event in dataset.events}) == len(dataset.events)


def test_rees46_sample_ids_repeat_across_loads() -> None:
    first = rees46.load(REES46_SAMPLE)
    second = rees46.load(REES46_SAMPLE)

    assert [e.event_id for e in first.events] == [e.event_id for e in second.events]


def test_rees46_sample_items_carry_brand_category_price() -> None:
    dataset = rees46.load(REES46_SAMPLE)

    items = {item.item_id: item for item in dataset.items}
    assert len(items) == len({event.item_id for event in dataset.events})
    first = items["44600062"]
    assert first.brand == "shiseido"
    assert first.category_id == "2103807459595387724"
    assert first.price == pytest.approx(35.79)
    assert first.stock is None


def test_rees46_matches_shared_source(
    shared_dataset: Callable[[str], tuple[Path, dict[str, int]]],
) -> None:
    folder, lines = shared_dataset("rees46-multicategory-store")
    name = "events_2019-10-01_0000-0240utc.csv.gz"

    dataset = rees46.load(folder / name)

    assert dataset.summary.rows_read[name] == lines[name] - 1
    assert dataset.summary.events == 11_562


def test_rees46_maps_fields_and_counts_bad_rows(
    write_file: Callable[[str, str], Path],
) -> None:
    path = write_file(
        "rees.csv",
        HEADER
        + "2019-10-01 00:00:05 UTC,purchase,1,10,a.b,acme,9.50,u1,s1\n"
        + "2019-10-01 00:00:01 UTC,cart,1,10,a.b,acme,9.50,u1,s1\n"
        + "2019-10-01 00:00:02 UTC,remove_from_cart,1,10,,,9.50,u1,s1\n"
        + "not a time,view,1,10,,,9.50,u1,s1\n"
        + "2019-10-01 00:00:03 UTC,view,1,10,,,cheap,u1,s1\n"
        + "2019-10-01 00:00:03 UTC,view,1,10,,,-2,u1,s1\n"
        + "2019-10-01 00:00:03 UTC,view,,10,,,1,u1,s1\n"
        + "2019-10-01 00:00:03 UTC,view,1\n",
    )

    dataset = rees46.load(path)

    assert [e.event_type for e in dataset.events] == [
        EventType.CART_ADD,
        EventType.PURCHASE,
    ]
    purchase = dataset.events[1]
    assert purchase.event_id == "rees46:rees:2"
    assert purchase.session_id == "s1"
    assert purchase.price == pytest.approx(9.5)
    assert dataset.summary.skipped_event_types == {"remove_from_cart": 1}
    assert dataset.summary.unparseable == {
        "invalid_time": 1,
        "invalid_price": 2,
        "missing_id": 1,
        "wrong_column_count": 1,
    }


def test_rees46_stops_at_stray_quote(
    write_file: Callable[[str, str], Path],
) -> None:
    row = "2019-10-01 00:00:01 UTC,view,1,10,a.b,{brand},9.50,u1,s1\n"
    path = write_file(
        "quote.csv",
        HEADER + row.format(brand="acme") * 2 + row.format(brand='"acme') + row * 5,
    )

    with pytest.raises(DatasetFileError, match=r"quote\.csv' line 4: a field starts"):
        rees46.load(path)


def test_rees46_counts_quote_closed_on_line(
    write_file: Callable[[str, str], Path],
) -> None:
    row = "2019-10-01 00:00:01 UTC,view,1,10,a.b,{brand},9.50,u1,s1\n"
    path = write_file(
        "quote.csv",
        HEADER
        + '2019-10-01 00:00:01 UTC,view,1,10,a.b,"acme,9"50,u1,s1\n'
        + row.format(brand="x"),
    )

    dataset = rees46.load(path)

    assert dataset.summary.events == 1
    assert dataset.summary.unparseable == {"wrong_column_count": 1}


def test_rees46_names_an_empty_file(write_file: Callable[[str, str], Path]) -> None:
    path = write_file("empty.csv", "")

    with pytest.raises(
        DatasetFileError, match=r"has no header line \(the file is empty\)"
    ):
        rees46.load(path)


def test_rees46_rejects_foreign_header(write_file: Callable[[str, str], Path]) -> None:
    path = write_file("other.csv", "a,b,c\n1,2,3\n")

    with pytest.raises(DatasetFileError, match="REES46 columns"):
        rees46.load(path)
