from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from schemas.training import TrainingExample
from services.trainer.window import ExampleWindow

REPLAY_START = datetime(2019, 10, 1, tzinfo=UTC)
LIVE_TIME = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY_SECONDS = 86400.0
MINUTE = timedelta(minutes=1)


@pytest.fixture
def make_example(
    window_examples: list[TrainingExample],
) -> Callable[[str, datetime], TrainingExample]:
    """Return a factory of examples with a chosen ``event_id`` and ``event_time``."""

    def make(event_id: str, event_time: datetime) -> TrainingExample:
        return window_examples[0].model_copy(
            update={"event_id": event_id, "event_time": event_time}
        )

    return make


@pytest.fixture
def replay_window(
    make_example: Callable[[str, datetime], TrainingExample],
) -> ExampleWindow:
    """A 7-day window holding 50 examples from a replay of October 2019."""
    window = ExampleWindow(window_seconds=7 * DAY_SECONDS, max_examples=10_000)
    for index in range(50):
        window.add(make_example(f"replay-{index}", REPLAY_START + index * MINUTE))
    return window


def expired_total() -> float:
    return REGISTRY.get_sample_value("cartwheel_trainer_examples_expired_total") or 0.0


def window_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "services.trainer.window"
        and record.levelno == logging.WARNING
    ]


def test_window_drops_duplicate_event_ids(
    window_examples: list[TrainingExample],
) -> None:
    window = ExampleWindow(window_seconds=1e6, max_examples=100)

    window.add(window_examples[0])
    window.add(window_examples[0])

    assert len(window) == 1


def test_window_gauge_follows_adds(replay_window: ExampleWindow) -> None:
    gauge = REGISTRY.get_sample_value("cartwheel_trainer_window_examples")

    assert gauge == len(replay_window) == 50


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


def test_window_jump_drops_all_examples(
    replay_window: ExampleWindow,
    make_example: Callable[[str, datetime], TrainingExample],
) -> None:
    replay_window.add(make_example("live-0", LIVE_TIME))

    assert [ex.event_id for ex in replay_window.snapshot()] == ["live-0"]


def test_window_jump_warning_names_times_and_count(
    replay_window: ExampleWindow,
    make_example: Callable[[str, datetime], TrainingExample],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)

    replay_window.add(make_example("live-0", LIVE_TIME))

    [message] = window_warnings(caplog)
    assert "dropped=50 " in message
    assert "previous_newest=2019-10-01T00:49:00+00:00" in message
    assert "newest=2026-03-01T12:00:00+00:00" in message
    assert "mixing a historical replay with live events restarts it" in message


def test_window_jump_warns_once(
    replay_window: ExampleWindow,
    make_example: Callable[[str, datetime], TrainingExample],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)

    for index in range(7):
        replay_window.add(make_example(f"live-{index}", LIVE_TIME + index * MINUTE))
    for index in range(50, 80):
        replay_window.add(
            make_example(f"replay-{index}", REPLAY_START + index * MINUTE)
        )

    assert len(window_warnings(caplog)) == 1
    assert len(replay_window) == 7


def test_window_second_jump_warns_again(
    replay_window: ExampleWindow,
    make_example: Callable[[str, datetime], TrainingExample],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)

    replay_window.add(make_example("live-0", LIVE_TIME - timedelta(days=365)))
    replay_window.add(make_example("live-1", LIVE_TIME))

    assert len(window_warnings(caplog)) == 2


def test_window_warns_when_half_dropped(
    make_example: Callable[[str, datetime], TrainingExample],
    caplog: pytest.LogCaptureFixture,
) -> None:
    window = ExampleWindow(window_seconds=100, max_examples=1000)
    for index in range(10):
        window.add(make_example(f"e{index}", LIVE_TIME + timedelta(seconds=index)))
    caplog.set_level(logging.WARNING)

    window.add(make_example("late-jump", LIVE_TIME + timedelta(seconds=107)))

    [message] = window_warnings(caplog)
    assert "dropped=7 examples_before=10 " in message
    assert len(window) == 4


def test_window_gradual_expiry_is_silent(
    window_examples: list[TrainingExample], caplog: pytest.LogCaptureFixture
) -> None:
    window = ExampleWindow(window_seconds=100, max_examples=10_000)
    caplog.set_level(logging.WARNING)

    for example in window_examples[:300]:
        window.add(example)

    assert window_warnings(caplog) == []


def test_window_counts_examples_expired_by_age(
    window_examples: list[TrainingExample],
) -> None:
    window = ExampleWindow(window_seconds=100, max_examples=10_000)
    before = expired_total()

    for example in window_examples[:300]:
        window.add(example)

    assert expired_total() - before == 199


def test_window_counts_skipped_late_examples(
    replay_window: ExampleWindow,
    make_example: Callable[[str, datetime], TrainingExample],
) -> None:
    replay_window.add(make_example("live-0", LIVE_TIME))
    before = expired_total()

    for index in range(50, 70):
        replay_window.add(
            make_example(f"replay-{index}", REPLAY_START + index * MINUTE)
        )

    assert expired_total() - before == 20


def test_window_warns_once_for_late_examples(
    make_example: Callable[[str, datetime], TrainingExample],
    caplog: pytest.LogCaptureFixture,
) -> None:
    window = ExampleWindow(window_seconds=7 * DAY_SECONDS, max_examples=1000)
    window.add(make_example("live-0", LIVE_TIME))
    caplog.set_level(logging.WARNING)

    for index in range(20):
        window.add(make_example(f"replay-{index}", REPLAY_START + index * MINUTE))

    [message] = window_warnings(caplog)
    assert "older than the window skipped event_id=replay-0 " in message
    assert "newest=2026-03-01T12:00:00+00:00" in message


def test_window_cap_holds_after_heap_rebuild(
    window_examples: list[TrainingExample],
) -> None:
    window = ExampleWindow(window_seconds=1e6, max_examples=10)

    for example in window_examples[:500]:
        window.add(example)

    assert [ex.event_id for ex in window.snapshot()] == [
        ex.event_id for ex in window_examples[490:500]
    ]


def test_window_keeps_an_example_from_the_year_1(
    make_example: Callable[[str, datetime], TrainingExample],
) -> None:
    window = ExampleWindow(window_seconds=7 * DAY_SECONDS, max_examples=100)
    first_day = datetime(1, 1, 1, tzinfo=UTC)

    window.add(make_example("year-1", first_day))
    window.add(make_example("year-1-later", first_day + MINUTE))
    window.add(make_example("replay", REPLAY_START))

    assert [example.event_id for example in window.snapshot()] == ["replay"]
