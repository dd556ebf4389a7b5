from __future__ import annotations

from pathlib import Path

import pytest

from services.replay.datasets import (
    DATASETS,
    REES46_SAMPLE,
    get_dataset,
    load_dataset,
    replayable_names,
)
from services.replay.errors import (
    DatasetFileError,
    DatasetUnavailableError,
    UnknownDatasetError,
)


def test_registry_lists_every_dataset() -> None:
    assert set(DATASETS) == {
        "rees46",
        "retailrocket",
        "taobao",
        "yoochoose",
        "diginetica",
        "otto",
        "olist",
    }
    assert all(info.description for info in DATASETS.values())


def test_rees46_default_is_committed_sample(tmp_path: Path) -> None:
    assert get_dataset("rees46").default_path(tmp_path) == REES46_SAMPLE
    assert REES46_SAMPLE.is_file()


def test_shared_defaults_follow_data_dir(tmp_path: Path) -> None:
    path = get_dataset("otto").default_path(tmp_path)

    assert path.parent.parent == tmp_path


def test_olist_is_registered_but_not_replayable() -> None:
    info = get_dataset("olist")

    assert info.loader is None
    assert info.unavailable_reason is not None
    with pytest.raises(DatasetUnavailableError, match="no user events"):
        load_dataset("olist", Path("."))


def test_unknown_dataset_lists_replayable_names() -> None:
    with pytest.raises(UnknownDatasetError) as raised:
        get_dataset("movielens")

    message = str(raised.value)
    assert message.endswith(f"expected one of {', '.join(replayable_names())}")
    assert "rees46" in message
    assert "olist" not in message


def test_replayable_names_exclude_olist() -> None:
    names = replayable_names()

    assert names == sorted(set(DATASETS) - {"olist"})


def test_missing_data_dir_names_setting(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileError) as raised:
        load_dataset(
            "taobao",
            tmp_path,
            path_option="--path",
            data_dir_source="CARTWHEEL_LEARNER_DATA_DIR",
        )

    message = str(raised.value)
    assert message.endswith(
        "is empty; pass --path with the dataset's file or folder, or set "
        "CARTWHEEL_LEARNER_DATA_DIR to the folder of the datasets"
    )
    assert "CARTWHEEL_REPLAY_DATA_DIR" not in message


def test_missing_data_dir_names_option(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileError) as raised:
        load_dataset("retailrocket", tmp_path / "missing", data_dir_source="--data-dir")

    message = str(raised.value)
    assert message.endswith(
        "which does not exist; pass --data-dir with the folder of the datasets"
    )
    assert "--path" not in message


def test_missing_given_path_names_its_option(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"

    with pytest.raises(DatasetFileError) as raised:
        load_dataset(
            "rees46",
            tmp_path,
            missing,
            path_option="--path",
            data_dir_source="CARTWHEEL_REPLAY_DATA_DIR",
        )

    assert str(raised.value) == (
        f"dataset file {str(missing)!r} not found; check the file or folder "
        "given with --path"
    )


def test_folder_as_dataset_file_rejected(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileError) as raised:
        load_dataset("rees46", tmp_path, tmp_path, path_option="--path")

    assert str(raised.value).startswith(
        f"dataset file {str(tmp_path)!r} is a folder; expected the file itself;"
    )


def test_file_as_data_folder_rejected(tmp_path: Path) -> None:
    data_dir = tmp_path / "samples.txt"
    data_dir.write_text("")

    with pytest.raises(DatasetFileError) as raised:
        load_dataset("otto", data_dir, data_dir_source="CARTWHEEL_REPLAY_DATA_DIR")

    assert f"{str(data_dir)!r}, which is a file, not a folder;" in str(raised.value)


def test_empty_data_dir_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileError) as raised:
        load_dataset(
            "otto",
            tmp_path,
            path_option="--path",
            data_dir_source="CARTWHEEL_REPLAY_DATA_DIR",
        )

    assert str(raised.value) == (
        "dataset 'otto' not found: looked for "
        f"{get_dataset('otto').relative_path!r} in the data folder "
        f"{str(tmp_path)!r}, which is empty; pass --path with the dataset's file "
        "or folder, or set CARTWHEEL_REPLAY_DATA_DIR to the folder of the datasets"
    )


def test_data_dir_without_dataset_lists_contents(tmp_path: Path) -> None:
    (tmp_path / "taobao-userbehavior").mkdir()
    (tmp_path / "notes.txt").write_text("")

    with pytest.raises(DatasetFileError) as raised:
        load_dataset("diginetica", tmp_path, data_dir_source="--data-dir")

    assert str(raised.value) == (
        "dataset 'diginetica' not found: looked for 'diginetica-cikm2016' in the "
        f"data folder {str(tmp_path)!r}, which has no 'diginetica-cikm2016' "
        "(it contains notes.txt, taobao-userbehavior); pass --data-dir with the "
        "folder of the datasets"
    )


def test_empty_dataset_folder_is_reported(tmp_path: Path) -> None:
    (tmp_path / "otto-recsys").mkdir()

    with pytest.raises(DatasetFileError) as raised:
        load_dataset("otto", tmp_path, data_dir_source="CARTWHEEL_REPLAY_DATA_DIR")

    message = str(raised.value)
    assert f"in the data folder {str(tmp_path)!r}, but " in message
    assert f"{str(tmp_path / 'otto-recsys')!r} is empty;" in message


def test_missing_file_without_sources_gives_no_options(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileError) as raised:
        load_dataset("otto", tmp_path)

    message = str(raised.value)
    assert message.endswith("; check that the dataset's files are in place")
    assert "--" not in message
    assert "CARTWHEEL_" not in message


def test_file_of_other_dataset_is_rejected() -> None:
    with pytest.raises(DatasetFileError) as raised:
        load_dataset("otto", REES46_SAMPLE.parent, REES46_SAMPLE)

    message = str(raised.value)
    assert message.startswith(f"no otto events in {str(REES46_SAMPLE)!r} (")
    assert "unparseable: invalid_json" in message
    assert "name the dataset they belong to" in message


def test_file_without_rows_is_rejected(tmp_path: Path) -> None:
    header_only = tmp_path / "events.csv"
    header_only.write_text(
        "event_time,event_type,product_id,category_id,category_code,brand,price,"
        "user_id,user_session\n"
    )

    with pytest.raises(DatasetFileError, match="no rees46 events in .*0 rows read"):
        load_dataset("rees46", tmp_path, header_only)
