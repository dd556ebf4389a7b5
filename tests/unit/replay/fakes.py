"""A stand-in for confluent-kafka's Producer, for unit tests of the replay."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError


class FakeProducer:
    """Record produced messages; optionally fail every delivery.

    Only the confluent-kafka calls the replay makes are modelled: ``produce``,
    ``poll``, ``flush``, ``purge`` and ``close``. ``poll`` advances the
    injected clock by its timeout.
    """

    def __init__(
        self,
        config: dict[str, Any],
        clock: list[float] | None = None,
        failure: str | None = None,
    ) -> None:
        self.config = config
        self.messages: list[tuple[str, bytes | None, bytes | None]] = []
        self.polls: list[float] = []
        self.flushes = 0
        self._clock = clock
        self._failure = failure
        self._pending: list[tuple[Any, str]] = []
        self.is_closed = False

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        on_delivery: Any = None,
    ) -> None:
        self.messages.append((topic, key, value))
        if self._failure is not None:
            callback = on_delivery or self.config["on_delivery"]
            self._pending.append((callback, topic))

    def poll(self, timeout: float = 0.0) -> int:
        self.polls.append(timeout)
        if self._clock is not None:
            self._clock[0] += timeout
        served = len(self._pending)
        for callback, topic in self._pending:
            callback(_FakeError(self._failure or ""), _FakeMessage(topic))
        self._pending = []
        return served

    def flush(self, timeout: float = 0.0) -> int:
        self.flushes += 1
        self.poll(0)
        return 0

    def purge(self) -> None:
        self._pending = []

    def close(self) -> bool:
        self.is_closed = True
        return True

    def on_topic(self, topic: str) -> list[tuple[bytes | None, bytes | None]]:
        """Return the (key, value) pairs produced to ``topic``."""
        return [(key, value) for name, key, value in self.messages if name == topic]


class _FakeError:
    def __init__(self, text: str) -> None:
        self._text = text

    def code(self) -> int:
        return KafkaError._MSG_TIMED_OUT

    def __str__(self) -> str:
        return self._text


class _FakeMessage:
    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic
