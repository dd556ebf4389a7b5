from __future__ import annotations

from collections.abc import Sequence

from services.hotpath.stages import AppliedEvent
from services.scorer.factory import _StagesInOrder


class RecordingStage:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self._log = log

    def process(self, batch: Sequence[AppliedEvent]) -> None:
        self._log.append(f"process {self.name}")

    def close(self) -> None:
        self._log.append(f"close {self.name}")


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
