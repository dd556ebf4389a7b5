from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from services.replay.datasets import yoochoose


def test_yoochoose_matches_shared_source(
    shared_dataset: Callable[[str], tuple[Path, dict[str, int]]],
) -> None:
    folder, lines = shared_dataset("yoochoose-recsys2015")
    name = "yoochoose-clicks-100k_train_full.tsv.gz"

    dataset = yoochoose.load(folder / name)

    assert dataset.summary.rows_read[name] == lines[name] - 1 == 70_278
    assert dataset.summary.events_by_type == {"click": 70_278}
    assert not dataset.summary.unparseable


def test_yoochoose_raw_sample_matches_shared_source(
    shared_dataset: Callable[[str], tuple[Path, dict[str, int]]],
) -> None:
    folder, lines = shared_dataset("yoochoose-recsys2015")
    name = "yoochoose-clicks-sample_raw.dat.gz"

    dataset = yoochoose.load(folder / name)

    # The raw challenge format has no header line.
    assert dataset.summary.rows_read[name] == lines[name] == 406
    assert dataset.summary.events == 406
    assert len({e.session_id for e in dataset.events}) == 107


def test_yoochoose_reads_buys_next_to_raw_clicks(
    write_file: Callable[[str, str], Path],
) -> None:
    clicks = write_file(
        "yc/yoochoose-clicks.dat",
        "3,2014-04-02T13:17:46.940Z,214716935,0\n"
        "3,2014-04-02T13:26:02.515Z,214774687,7\n"
        "3,yesterday,214774687,7\n",
    )
    write_file(
        "yc/yoochoose-buys.dat",
        "3,2014-04-02T13:30:00.000Z,214774687,1046,2\n"
        "3,2014-04-02T13:30:00.000Z,214716935,0,0\n",
    )

    dataset = yoochoose.load(clicks)

    assert [e.event_type.value for e in dataset.events] == [
        "click",
        "click",
        "purchase",
        "purchase",
    ]
    paid = dataset.events[2]
    assert paid.user_id == paid.session_id == "3"
    assert paid.price == pytest.approx(1046.0)
    assert paid.quantity == 2
    assert dataset.events[3].price is None
    assert dataset.events[3].quantity is None
    assert dataset.summary.unparseable == {"invalid_time": 1}
    assert [(i.item_id, i.category_id) for i in dataset.items] == [("214774687", "7")]


def test_yoochoose_notes_missing_buys(write_file: Callable[[str, str], Path]) -> None:
    clicks = write_file("clicks.tsv", "SessionId\tItemId\tTime\n3\t9\t1396437466.94\n")

    dataset = yoochoose.load(clicks)

    assert dataset.summary.events == 1
    assert "no yoochoose-buys.dat next to the clicks" in dataset.summary.notes
