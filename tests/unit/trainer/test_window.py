from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.training import TrainingExample
from services.trainer.window import ExampleWindow


def test_window_drops_duplicate_event_ids(
    window_examples: list[TrainingExample],
) -> None:
    window = ExampleWindow(window_seconds=1e6, max_examples=100)

    window.add(window_examples[0])
    window.add(window_examples[0])

    assert len(window) == 1


def test_window_expires_examples_older_than_span(
    window_examples: list[TrainingExample],
) -> None:
    window = ExampleWindow(window_seconds=100, max_examples=10_000)
    for example in window_examples[:300]:
        window.add(example)

    kept = window.snapshot()

    newest = window_examples[299].event_time
    assert all(
        example.event_time >= newest - timedelta(seconds=100) for example in kept
    )
    assert len(kept) == 101


def test_window_caps_examples_dropping_first_arrived(
    window_examples: list[TrainingExample],
) -> None:
    window = ExampleWindow(window_seconds=1e6, max_examples=50)

    for example in window_examples[:80]:
        window.add(example)

    assert [ex.event_id for ex in window.snapshot()] == [
        ex.event_id for ex in window_examples[30:80]
    ]


def test_window_snapshot_is_sorted_by_event_time(
    window_examples: list[TrainingExample],
) -> None:
    window = ExampleWindow(window_seconds=1e6, max_examples=1000)

    for example in reversed(window_examples[:40]):
        window.add(example)

    times = [example.event_time for example in window.snapshot()]
    assert times == sorted(times)


def test_window_rejects_empty_span() -> None:
    with pytest.raises(ValueError, match="window_seconds=0"):
        ExampleWindow(window_seconds=0, max_examples=10)
