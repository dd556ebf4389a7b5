"""The trainer's loop, with stub clients: no broker or Redis is reached."""

from __future__ import annotations

import threading
from typing import Any

import redis

from services.trainer.service import TrainerService
from services.trainer.window import ExampleWindow


class _IdleReader:
    topic = "training-examples"

    def __init__(self) -> None:
        self.is_closed = False

    def poll_into(self, window: ExampleWindow, timeout_seconds: float) -> int:
        return 0

    def is_caught_up(self) -> bool:
        return True

    def close(self) -> None:
        self.is_closed = True


class _StalledLock:
    key = "cw:trainer:lock:ranker"

    def __init__(self) -> None:
        self.attempts = threading.Semaphore(0)

    def acquire(self) -> bool:
        self.attempts.release()
        raise redis.exceptions.TimeoutError("Timeout reading from socket")


def test_trainer_outlives_a_redis_timeout() -> None:
    reader, lock = _IdleReader(), _StalledLock()
    service = TrainerService(
        trainer=None,  # type: ignore[arg-type]
        reader=reader,  # type: ignore[arg-type]
        window=ExampleWindow(3600.0, 10),
        lock=lock,  # type: ignore[arg-type]
        client=None,  # type: ignore[arg-type]
        key_prefix="cw",
        refresh_interval_seconds=0.0,
        retrain_poll_seconds=0.0,
        poll_timeout_seconds=0.0,
    )
    failures: list[Any] = []
    runner = threading.Thread(
        target=lambda: _run(service, failures), name="trainer-under-test"
    )

    runner.start()
    assert lock.attempts.acquire(timeout=10)
    service.stop()
    runner.join(10)

    assert not runner.is_alive()
    assert failures == []
    assert reader.is_closed


def _run(service: TrainerService, failures: list[Any]) -> None:
    try:
        service.run()
    except Exception as exc:
        failures.append(exc)


class _FreeLock:
    key = "cw:trainer:lock:ranker"

    def acquire(self) -> bool:
        return False


class _StoppingAnnouncer:
    """Counts polls and stops the service at the first one."""

    def __init__(self) -> None:
        self.polls = 0
        self.service: TrainerService | None = None

    def poll(self) -> None:
        self.polls += 1
        if self.service is not None:
            self.service.stop()


def test_trainer_loop_polls_announcer() -> None:
    announcer = _StoppingAnnouncer()
    service = TrainerService(
        trainer=None,  # type: ignore[arg-type]
        reader=_IdleReader(),  # type: ignore[arg-type]
        window=ExampleWindow(3600.0, 10),
        lock=_FreeLock(),  # type: ignore[arg-type]
        client=None,  # type: ignore[arg-type]
        key_prefix="cw",
        refresh_interval_seconds=3600.0,
        retrain_poll_seconds=3600.0,
        poll_timeout_seconds=0.0,
        announcer=announcer,  # type: ignore[arg-type]
    )
    announcer.service = service

    service.run()

    assert announcer.polls == 1
