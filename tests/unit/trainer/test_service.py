"""The trainer's loop, with stub clients: no broker or Redis is reached."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from services.common.errors import InfrastructureError
from services.trainer.service import TrainerService
from services.trainer.trainer import TrainingStoppedError
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


class _IdleTrainer:
    def stop(self) -> None:
        pass


class _StalledLock:
    key = "cw:trainer:lock:ranker"

    def __init__(self) -> None:
        self.attempts = threading.Semaphore(0)

    def acquire(self) -> bool:
        self.attempts.release()
        raise redis.exceptions.TimeoutError("Timeout reading from socket")


def _service(**stubs: Any) -> TrainerService:
    """Return a trainer loop on stubs that refreshes whenever it may."""
    parts: dict[str, Any] = {
        "trainer": _IdleTrainer(),
        "reader": _IdleReader(),
        "window": ExampleWindow(3600.0, 10),
        "lock": None,
        "client": None,
        "key_prefix": "cw",
        "refresh_interval_seconds": 0.0,
        "retrain_poll_seconds": 0.0,
        "poll_timeout_seconds": 0.0,
    }
    parts.update(stubs)
    return TrainerService(**parts)


def _start(service: TrainerService, failures: list[Any]) -> threading.Thread:
    runner = threading.Thread(
        target=lambda: _run(service, failures), name="trainer-under-test"
    )
    runner.start()
    return runner


def test_trainer_outlives_a_redis_timeout() -> None:
    reader, lock = _IdleReader(), _StalledLock()
    service = _service(reader=reader, lock=lock)
    failures: list[Any] = []

    runner = _start(service, failures)
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
    service = _service(
        lock=_FreeLock(),
        refresh_interval_seconds=3600.0,
        retrain_poll_seconds=3600.0,
        announcer=announcer,
    )
    announcer.service = service

    service.run()

    assert announcer.polls == 1


class _HeldLock:
    key = "cw:trainer:lock:ranker"

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass

    @contextmanager
    def renewing(self) -> Iterator[_HeldLock]:
        yield self


class _NoRequests:
    def getdel(self, key: str) -> None:
        return None


class _LongTrainer:
    """Trains until stopped, as a refresh on a large window does."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def refresh(self, examples: Any, reason: str) -> None:
        self.started.set()
        if not self._stopping.wait(30):
            raise AssertionError("the refresh was never told to stop")
        raise TrainingStoppedError(
            "training stopped because the trainer is shutting down"
        )


def _stop_during_refresh(client: Any) -> tuple[threading.Thread, list[Any]]:
    """Run a trainer loop on ``client``, stop it mid-refresh; return its thread."""
    trainer = _LongTrainer()
    service = _service(trainer=trainer, lock=_HeldLock(), client=client)
    failures: list[Any] = []
    runner = _start(service, failures)
    assert trainer.started.wait(10)
    service.stop()
    runner.join(10)
    return runner, failures


def test_stop_interrupts_refresh_in_progress() -> None:
    runner, failures = _stop_during_refresh(_NoRequests())

    assert not runner.is_alive()
    assert failures == []


class _PendingRequest:
    """A Redis stub with one pending retrain request that records writes."""

    def __init__(self) -> None:
        self.written: list[dict[str, Any]] = []

    def getdel(self, key: str) -> bytes:
        return json.dumps(
            {
                "reason": "drift in cart_add",
                "detected_at": "2026-01-02T03:04:05+00:00",
                "requested_at": "2026-01-02T03:04:06+00:00",
                "count": 1,
            }
        ).encode()

    def eval(
        self, script: str, key_count: int, key: str, document: str, ttl: int
    ) -> int:
        self.written.append(json.loads(document))
        return 1


def test_stopped_refresh_puts_request_back() -> None:
    client = _PendingRequest()

    runner, failures = _stop_during_refresh(client)

    assert not runner.is_alive()
    assert failures == []
    assert len(client.written) == 1
    assert client.written[0]["reason"] == "drift in cart_add"
    assert client.written[0]["detected_at"] == "2026-01-02T03:04:05+00:00"


class _UnannouncedTrainer:
    """Fails its refresh as an unreachable broker does, then stops the loop."""

    def __init__(self) -> None:
        self.service: TrainerService | None = None

    def stop(self) -> None:
        pass

    def refresh(self, examples: Any, reason: str) -> None:
        if self.service is not None:
            self.service.stop()
        raise InfrastructureError("announcing model_version='v1' failed: timed out")


def test_infrastructure_failure_logged_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trainer = _UnannouncedTrainer()
    service = _service(trainer=trainer, lock=_HeldLock(), client=_NoRequests())
    trainer.service = service

    with caplog.at_level(logging.ERROR, logger="services.trainer.service"):
        service.run()

    [record] = [r for r in caplog.records if "refresh failed" in r.getMessage()]
    assert "announcing model_version='v1' failed" in record.getMessage()
    assert record.exc_info is None


def test_redis_outage_line_gives_real_wait(caplog: pytest.LogCaptureFixture) -> None:
    lock = _StalledLock()
    service = _service(
        lock=lock,
        refresh_interval_seconds=3600.0,
        retrain_poll_seconds=30.0,
        clock=lambda: 1000.0,
    )
    failures: list[Any] = []

    with caplog.at_level(logging.WARNING, logger="services.trainer.service"):
        runner = _start(service, failures)
        assert lock.attempts.acquire(timeout=10)
        service.stop()
        runner.join(10)

    assert failures == []
    assert "redis failed, retrying refresh check" in caplog.text
    assert "delay_seconds=30" in caplog.text
