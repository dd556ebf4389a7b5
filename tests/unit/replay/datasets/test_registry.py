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
    with pytest.raises(DatasetFileError, match="CARTWHEEL_REPLAY_DATA_DIR"):
        load_dataset("taobao", tmp_path)
