from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.replay.datasets import diginetica
from services.replay.errors import DatasetFileError


def test_diginetica_matches_shared_source(
    shared_dataset: Callable[[str], tuple[Path, dict[str, int]]],
) -> None:
    folder, lines = shared_dataset("diginetica-cikm2016")

    dataset = diginetica.load(folder)

    for name, count in lines.items():
        assert dataset.summary.rows_read[name] == count - 1, name
    assert dataset.summary.events_by_type == {"click": 10_599, "purchase": 14_643}
    assert not dataset.summary.unparseable
    # Every viewed and purchased item has a category in this table.
    assert len(dataset.items) == len({e.item_id for e in dataset.events})


def test_diginetica_places_events_at_day_plus_timeframe(
    write_file: Callable[[str, str], Path],
) -> None:
    write_file(
        "dg/sample_train-item-views.csv",
        "session_id;user_id;item_id;timeframe;eventdate\n"
        "1;NA;81766;526309;2016-05-09\n"
        "1;NA;81767;abc;2016-05-09\n",
    )
    write_file(
        "dg/train-purchases.csv",
        "sessionId;userId;timeframe;eventdate;ordernumber;itemId\n"
        "150;18278;17100868;2016-05-06;16421;25911\n",
    )
    folder = write_file(
        "dg/product-categories.csv", "itemId;categoryId\n81766;1096\n99;1\n"
    ).parent

    dataset = diginetica.load(folder)

    purchase, view = dataset.events
    assert purchase.order_id == "16421"
    assert purchase.user_id == "18278"
    assert purchase.event_time == datetime(2016, 5, 6, tzinfo=UTC) + timedelta(
        milliseconds=17100868
    )
    assert view.user_id == "anonymous-1"
    assert view.session_id == "1"
    assert dataset.summary.unparseable == {"invalid_time": 1}
    assert [(i.item_id, i.category_id) for i in dataset.items] == [("81766", "1096")]


def test_diginetica_empty_folder_names_expected_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileError, match=r"no \*item-views\*\.csv or "):
        diginetica.load(tmp_path)
