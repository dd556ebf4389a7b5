from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from services.replay.datasets import taobao
from services.replay.errors import DatasetFileError


def test_taobao_matches_shared_source(
    shared_dataset: Callable[[str], tuple[Path, dict[str, int]]],
) -> None:
    folder, lines = shared_dataset("taobao-userbehavior")
    name = "UserBehavior_sample_before-2017-12-02cst.csv.gz"

    dataset = taobao.load(folder / name)

    assert dataset.summary.rows_read[name] == lines[name] - 1 == 3_166
    assert dataset.summary.events_by_type == {
        "click": 2_905,
        "cart_add": 122,
        "purchase": 55,
    }
    assert dataset.summary.skipped_event_types == {"fav": 84}
    assert not dataset.summary.unparseable


def test_taobao_reads_headerless_file_and_derives_sessions(
    write_file: Callable[[str, str], Path],
) -> None:
    path = write_file(
        "UserBehavior.csv",
        "1,100,5,pv,1511544070\n"
        "1,101,6,buy,1511544071\n"
        "1,100,5,fav,1511544072\n"
        "1,102,7,cart,1511550000\n"
        "1,103,7,pv,soon\n",
    )

    dataset = taobao.load(path)

    assert [e.session_id for e in dataset.events] == ["1:1", "1:1", "1:2"]
    assert [e.event_type.value for e in dataset.events] == [
        "click",
        "purchase",
        "cart_add",
    ]
    assert dataset.summary.unparseable == {"invalid_time": 1}
    assert {item.item_id: item.category_id for item in dataset.items} == {
        "100": "5",
        "101": "6",
        "102": "7",
    }


def test_taobao_names_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe\x00binary")

    with pytest.raises(DatasetFileError) as raised:
        taobao.load(path)

    assert str(raised.value).startswith(
        f"dataset file {str(path)!r} cannot be read: the file is not UTF-8 text"
    )
