from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from services.replay.datasets import retailrocket

EVENTS_HEADER = "timestamp,visitorid,event,itemid,transactionid\n"


def test_retailrocket_matches_shared_source(
    shared_dataset: Callable[[str], tuple[Path, dict[str, int]]],
) -> None:
    folder, lines = shared_dataset("retailrocket")

    dataset = retailrocket.load(folder)

    for name, count in lines.items():
        assert dataset.summary.rows_read[name] == count - 1, name
    assert dataset.summary.events_by_type == {
        "click": 7_219,
        "cart_add": 207,
        "purchase": 36,
    }
    assert not dataset.summary.unparseable


def test_retailrocket_transactions_keep_order_ids(
    shared_dataset: Callable[[str], tuple[Path, dict[str, int]]],
) -> None:
    folder, _ = shared_dataset("retailrocket")

    dataset = retailrocket.load(folder)

    purchases = [e for e in dataset.events if e.event_type == "purchase"]
    assert all(e.order_id for e in purchases)
    assert len({e.order_id for e in purchases}) < len(purchases)


def test_retailrocket_reads_raw_properties_and_tree(
    write_file: Callable[[str, str], Path],
) -> None:
    events = write_file(
        "rr/events.csv",
        EVENTS_HEADER
        + "1433221332000,7,view,100,\n"
        + "1433221333000,7,addtocart,100,\n"
        + "1433221334000,7,transaction,100,55\n"
        + "1433221335000,7,wishlist,100,\n",
    )
    write_file("rr/category_tree.csv", "categoryid,parentid\n3,1\n1,\n9,3\n")
    write_file(
        "rr/item_properties.csv",
        "timestamp,itemid,property,value\n"
        + "1433000000000,100,790,n1200.000\n"
        + "1433100000000,100,790,n1500.000\n"
        + "1433000000000,100,categoryid,9\n"
        + "1433000000000,200,790,n10.000\n"
        + "1433000000000,100,888,n5.000\n",
    )

    dataset = retailrocket.load(events.parent)

    assert [e.event_type.value for e in dataset.events] == [
        "click",
        "cart_add",
        "purchase",
    ]
    assert dataset.events[2].order_id == "55"
    assert dataset.summary.skipped_event_types == {"wishlist": 1}
    assert len(dataset.items) == 1
    item = dataset.items[0]
    assert item.item_id == "100"
    assert item.price == pytest.approx(1500.0)
    assert item.category_id == "9"
    assert item.category_path == "1/3/9"


def test_retailrocket_reads_every_property_part(
    write_file: Callable[[str, str], Path],
) -> None:
    events = write_file(
        "rr/events.csv",
        EVENTS_HEADER + "1433221332000,7,view,100,\n" + "1433221333000,7,view,200,\n",
    )
    write_file("rr/category_tree.csv", "categoryid,parentid\n3,\n")
    write_file(
        "rr/item_properties_part1.csv",
        "timestamp,itemid,property,value\n"
        + "1433100000000,100,790,n1500.000\n"
        + "1433000000000,200,790,n20.000\n",
    )
    write_file(
        "rr/item_properties_part2.csv",
        "timestamp,itemid,property,value\n"
        + "1433000000000,100,790,n1200.000\n"
        + "1433000000000,100,categoryid,3\n"
        + "1433200000000,200,790,n25.000\n",
    )

    dataset = retailrocket.load(events.parent)

    items = {item.item_id: item for item in dataset.items}
    assert sorted(items) == ["100", "200"]
    assert items["100"].category_id == "3"
    assert items["100"].price == pytest.approx(1500.0)
    assert items["200"].category_id is None
    assert items["200"].price == pytest.approx(25.0)
    assert dataset.summary.rows_read["item_properties_part1.csv"] == 2
    assert dataset.summary.rows_read["item_properties_part2.csv"] == 3
    assert not dataset.summary.notes


def test_retailrocket_derives_sessions_per_visitor(
    write_file: Callable[[str, str], Path],
) -> None:
    path = write_file(
        "events.csv",
        EVENTS_HEADER
        + "1433221332000,7,view,100,\n"
        + "1433223132001,7,view,101,\n"
        + "1433221333000,8,view,100,\n",
    )

    dataset = retailrocket.load(path)

    assert [e.session_id for e in dataset.events] == ["7:1", "8:1", "7:2"]


def test_category_paths_stop_on_cycles() -> None:
    paths = retailrocket.category_paths({"1": "2", "2": "1"})

    assert paths["1"].split("/")[-1] == "1"
    assert len(paths["1"].split("/")) == 32
