from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.common.lifecycle import tune_garbage_collection


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_tuning_raises_young_threshold_and_freezes() -> None:
    young, middle, old = gc.get_threshold()

    tune_garbage_collection(young + 1000)

    assert gc.get_threshold() == (young + 1000, middle, old)
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("restore_gc")
def test_zero_threshold_changes_nothing() -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()

    tune_garbage_collection(0)

    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen
