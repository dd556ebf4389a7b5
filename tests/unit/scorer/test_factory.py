from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import pytest

from services.hotpath.stages import AppliedEvent
from services.scorer.factory import _StagesInOrder
from services.scorer.protocols import Ranker
from services.scorer.stage import ScoringStage


class RecordingStage:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self._log = log

    def process(self, batch: Sequence[AppliedEvent]) -> None:
        self._log.append(f"process {self.name}")

    def close(self) -> None:
        self._log.append(f"close {self.name}")

    def start(self) -> None:
        self._log.append(f"start {self.name}")

    def assigned(self, resume_offsets: Mapping[int, int]) -> None:
        self._log.append(f"assigned {self.name} {dict(resume_offsets)}")


class FailingCloseStage(RecordingStage):
    def close(self) -> None:
        super().close()
        raise RuntimeError(f"{self.name} close failed")


class FailingAssignedStage(RecordingStage):
    def assigned(self, resume_offsets: Mapping[int, int]) -> None:
        raise RuntimeError("warm-up failed")


class PlainStage:
    """A stage without ``start`` or ``poll``."""

    name = "plain"

    def process(self, batch: Sequence[AppliedEvent]) -> None:
        pass

    def close(self) -> None:
        pass


def test_stages_in_order_process_in_order_and_close_in_reverse() -> None:
    log: list[str] = []
    combined = _StagesInOrder(
        [RecordingStage("learning", log), RecordingStage("scoring", log)]
    )

    combined.process([])
    combined.close()

    assert combined.name == "learning+scoring"
    assert log == [
        "process learning",
        "process scoring",
        "close scoring",
        "close learning",
    ]


def test_stages_in_order_close_earlier_stages_when_a_close_fails() -> None:
    log: list[str] = []
    combined = _StagesInOrder(
        [RecordingStage("learning", log), FailingCloseStage("scoring", log)]
    )

    with pytest.raises(RuntimeError, match="scoring close failed"):
        combined.close()

    assert log == ["close scoring", "close learning"]


def test_stages_in_order_raise_later_close_failure_with_earlier_as_context() -> None:
    log: list[str] = []
    combined = _StagesInOrder(
        [FailingCloseStage("learning", log), FailingCloseStage("scoring", log)]
    )

    with pytest.raises(RuntimeError, match="learning close failed") as failure:
        combined.close()

    assert str(failure.value.__context__) == "scoring close failed"


def test_stages_in_order_start_in_order() -> None:
    log: list[str] = []
    combined = _StagesInOrder(
        [RecordingStage("learning", log), PlainStage(), RecordingStage("scoring", log)]
    )

    combined.start()

    assert log == ["start learning", "start scoring"]


def test_stages_in_order_forward_assigned() -> None:
    log: list[str] = []
    combined = _StagesInOrder(
        [RecordingStage("learning", log), PlainStage(), RecordingStage("scoring", log)]
    )

    combined.assigned({0: 12, 3: 40})

    assert log == [
        "assigned learning {0: 12, 3: 40}",
        "assigned scoring {0: 12, 3: 40}",
    ]


def test_stages_in_order_assigned_survives_failure() -> None:
    log: list[str] = []
    combined = _StagesInOrder(
        [FailingAssignedStage("learning", log), RecordingStage("scoring", log)]
    )

    combined.assigned({1: 5})

    assert log == ["assigned scoring {1: 5}"]


class FollowedSource:
    def __init__(self) -> None:
        self.starts = 0

    def current(self) -> Ranker | None:
        return None

    def start(self) -> None:
        self.starts += 1


class FixedSource:
    def current(self) -> Ranker | None:
        return None


def _scoring_stage(models: Any) -> ScoringStage:
    # start() touches only the model source, so the other parts are not built.
    unused = cast(Any, None)
    return ScoringStage(unused, unused, unused, models=models)


def test_scoring_stage_start_starts_a_followed_model_source() -> None:
    source = FollowedSource()
    stage = _scoring_stage(source)

    assert source.starts == 0
    stage.start()

    assert source.starts == 1


def test_scoring_stage_start_leaves_other_sources_alone() -> None:
    _scoring_stage(FixedSource()).start()
    _scoring_stage(None).start()
