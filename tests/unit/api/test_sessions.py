from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import KafkaError

from schemas.events import Event, EventType
from services.api.sessions import SessionFollower, SharedSessionIndex
from services.common.settings import KafkaSettings
from services.scorer.session_knn import session_key

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _click(user_id: str, item_id: str, session_id: str | None, seconds: int) -> Event:
    return Event(
        event_id=f"{user_id}-{item_id}-{seconds}",
        event_type=EventType.CLICK,
        user_id=user_id,
        item_id=item_id,
        event_time=START + timedelta(seconds=seconds),
        session_id=session_id,
    )


def test_shared_index_adds_events_to_their_sessions() -> None:
    index = SharedSessionIndex(max_sessions=10, max_items=10, samples_per_item=10)

    index.add_events([_click("ann", "x", "s1", 0), _click("ann", "y", "s1", 5)])

    assert index.session_items(session_key("ann", "s1")) == ["x", "y"]
    assert len(index) == 1


def test_shared_index_session_key_of_returns_newest_session() -> None:
    index = SharedSessionIndex(max_sessions=10, max_items=10, samples_per_item=10)

    index.add_events([_click("ann", "x", "s1", 0), _click("ann", "y", "s2", 5)])

    assert index.session_key_of("ann") == session_key("ann", "s2")


def test_unknown_user_gets_history_key() -> None:
    index = SharedSessionIndex(max_sessions=10, max_items=10, samples_per_item=10)

    assert index.session_key_of("bob") == session_key("bob", None)


def test_shared_index_forgets_oldest_users() -> None:
    index = SharedSessionIndex(max_sessions=2, max_items=10, samples_per_item=10)

    index.add_events(
        [
            _click("ann", "x", "s1", 0),
            _click("bob", "x", "s1", 1),
            _click("cid", "x", "s1", 2),
        ]
    )

    assert index.session_key_of("ann") == session_key("ann", None)
    assert index.session_key_of("cid") == session_key("cid", "s1")


def test_shared_index_evicts_oldest_sessions_beyond_total_items() -> None:
    index = SharedSessionIndex(
        max_sessions=10, max_items=2, samples_per_item=10, max_total_items=2
    )

    index.add_events(
        [
            _click("ann", "x", "s1", 0),
            _click("bob", "y", "s1", 1),
            _click("cid", "z", "s1", 2),
        ]
    )

    assert index.session_items(session_key("ann", "s1")) == []
    assert len(index) == 2


def test_shared_index_recommends_items_of_neighbour_sessions() -> None:
    index = SharedSessionIndex(max_sessions=10, max_items=10, samples_per_item=10)
    index.add_events(
        [
            _click("ann", "x", "s1", 0),
            _click("ann", "y", "s1", 5),
            _click("bob", "x", "s9", 10),
        ]
    )
    now = (START + timedelta(seconds=10)).timestamp()

    votes = index.recommend(session_key("bob", "s9"), now, 10, 3600.0)

    assert [item_id for item_id, _ in votes] == ["x", "y"]


def test_session_follower_rejects_negative_warmup() -> None:
    index = SharedSessionIndex(max_sessions=10, max_items=10, samples_per_item=10)

    with pytest.raises(ValueError, match="warmup_events"):
        SessionFollower(
            index, KafkaSettings(bootstrap="127.0.0.1:9"), "events", warmup_events=-1
        )


class _Message:
    """A consumed message or error event, as ``Consumer.consume`` returns them."""

    def __init__(self, value: bytes | None = None, error: KafkaError | None = None):
        self._value = value
        self._error = error

    def error(self) -> KafkaError | None:
        return self._error

    def value(self) -> bytes | None:
        return self._value

    def partition(self) -> int:
        return 0


class _Consumer:
    """Return one prepared poll result per ``consume`` call."""

    def __init__(self, polls: list[list[_Message]]) -> None:
        self._polls = polls

    def consume(self, num_messages: int, timeout: float) -> list[_Message]:
        return self._polls.pop(0)


def test_session_follower_logs_repeated_read_error_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    index = SharedSessionIndex(max_sessions=10, max_items=10, samples_per_item=10)
    follower = SessionFollower(
        index, KafkaSettings(bootstrap="127.0.0.1:9"), "events", warmup_events=0
    )
    missing_topic = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, "topic deleted")
    click = _click("ann", "x", "s1", 0).model_dump_json().encode()
    consumer = _Consumer(
        [
            [_Message(error=missing_topic), _Message(error=missing_topic)],
            [_Message(error=missing_topic)],
            [_Message(value=click), _Message(error=missing_topic)],
        ]
    )

    with caplog.at_level(logging.WARNING, logger="services.api.sessions"):
        for _ in range(3):
            follower._read(consumer, set())  # type: ignore[arg-type]

    failures = [r for r in caplog.records if "events read failed" in r.getMessage()]
    assert len(failures) == 2
    assert "topic deleted" in failures[0].getMessage()
