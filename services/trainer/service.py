"""The trainer's main loop: keep the window filled and refresh on time or request.

Between refreshes the loop reads training examples from Kafka. A refresh
starts when the refresh interval has passed or when a retrain request from the
online learner's drift detector is pending. Only the trainer that takes the
training lock refreshes. The others keep reading and try again later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from services.common.errors import InfrastructureError
from services.common.outage import OutageLog
from services.common.retrain import request_retrain, take_retrain_request
from services.trainer.announcer import ModelAnnouncer
from services.trainer.lock import TrainingLock
from services.trainer.metrics import REFRESH_SECONDS, REFRESHES
from services.trainer.reader import ExampleReader
from services.trainer.trainer import (
    RefreshResult,
    Trainer,
    TrainingLockLostError,
    TrainingStoppedError,
)
from services.trainer.window import ExampleWindow

__all__ = ["TrainerService"]

logger = logging.getLogger(__name__)


# At tens of thousands of examples a second this covers a few million. The
# trainer reads the rest of a longer topic while it serves requests.
_LOAD_TIMEOUT_SECONDS = 300.0
_REDIS_RETRY_SECONDS = 5.0


class TrainerService:
    """Reads examples and runs refreshes until stopped.

    Args:
        trainer: runs one refresh.
        reader: fills the window from Kafka.
        window: the sliding window.
        lock: the training lock shared by all trainers of this model.
        client: Redis connection for retrain requests.
        key_prefix: the deployment's Redis key prefix.
        refresh_interval_seconds: wall-clock seconds between scheduled refreshes.
        retrain_poll_seconds: how often a pending retrain request is checked.
        poll_timeout_seconds: maximum wait of one Kafka poll.
        announcer: polled after each read of examples, so that its
            librdkafka log lines reach the logger. NOTE: nothing polls it
            during a refresh, so lines written then are logged when it ends.
        clock: monotonic clock in seconds.
    """

    def __init__(
        self,
        trainer: Trainer,
        reader: ExampleReader,
        window: ExampleWindow,
        lock: TrainingLock,
        client: redis.Redis,
        key_prefix: str,
        *,
        refresh_interval_seconds: float,
        retrain_poll_seconds: float,
        poll_timeout_seconds: float = 1.0,
        announcer: ModelAnnouncer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trainer = trainer
        self._reader = reader
        self._window = window
        self._lock = lock
        self._client = client
        self._key_prefix = key_prefix
        self._interval = refresh_interval_seconds
        self._retrain_poll = retrain_poll_seconds
        self._poll_timeout = poll_timeout_seconds
        self._announcer = announcer
        self._clock = clock
        self._stop = threading.Event()
        self._redis_outage = OutageLog(logger, "redis", "refresh check", clock=clock)
        self._next_refresh = clock() + refresh_interval_seconds
        self._next_request_check = clock()
        # Each outcome starts at 0, so that Prometheus counts the first refresh
        # after a start as an increase, not as the first sample of a series.
        for outcome in ("promoted", "rejected", "skipped", "failed"):
            REFRESHES.labels(outcome)

    def stop(self) -> None:
        """Ask the loop to return after the current step.

        A training run in progress stops after its current batch, so a
        shutdown does not wait for a long refresh to finish.
        """
        self._stop.set()
        self._trainer.stop()

    def run(self) -> None:
        """Loop until ``stop``; the reader is closed on the way out."""
        logger.info(
            "trainer running topic=%s refresh_interval_seconds=%s",
            self._reader.topic,
            self._interval,
        )
        try:
            self._load_window()
            while not self._stop.is_set():
                self._reader.poll_into(self._window, self._poll_timeout)
                self._poll_announcer()
                try:
                    self.step()
                except redis.exceptions.RedisError as exc:
                    # The lock and the retrain requests live in Redis, so a
                    # stalled Redis delays the next refresh instead of ending
                    # the trainer. The lock's TTL frees the lock meanwhile.
                    self._redis_outage.failed(exc, self._seconds_to_next_redis_call())
                    self._stop.wait(_REDIS_RETRY_SECONDS)
        finally:
            self._reader.close()
            logger.info("trainer stopped")

    def _load_window(self) -> None:
        # A retrain request waiting at start would otherwise train on the
        # first poll's examples instead of the whole window on the topic.
        deadline = self._clock() + _LOAD_TIMEOUT_SECONDS
        while (
            not self._stop.is_set()
            and not self._reader.is_caught_up()
            and self._clock() < deadline
        ):
            self._reader.poll_into(self._window, self._poll_timeout)
            self._poll_announcer()
        logger.info(
            "training window loaded examples=%d is_caught_up=%s",
            len(self._window),
            self._reader.is_caught_up(),
        )

    def _seconds_to_next_redis_call(self) -> float:
        # The loop wakes every few seconds, but a step calls Redis only when a
        # refresh is due or the retrain requests are next checked.
        due = min(self._next_refresh, self._next_request_check)
        return max(_REDIS_RETRY_SECONDS, due - self._clock())

    def _poll_announcer(self) -> None:
        if self._announcer is not None:
            self._announcer.poll()

    def step(self) -> RefreshResult | None:
        """Refresh when due or requested and this trainer gets the lock."""
        now = self._clock()
        is_scheduled = now >= self._next_refresh
        if not is_scheduled and now < self._next_request_check:
            return None
        self._next_request_check = now + self._retrain_poll
        is_acquired = self._lock.acquire()
        # Most steps send Redis no command, so an outage ends only here, once
        # the lock call succeeds.
        self._redis_outage.recovered()
        if not is_acquired:
            if is_scheduled:
                logger.info(
                    "refresh skipped, the training lock is taken key=%s", self._lock.key
                )
                self._next_refresh = now + self._interval
            return None
        try:
            request = take_retrain_request(self._client, self._key_prefix)
            if request is None and not is_scheduled:
                return None
            reason = (
                "schedule" if request is None else f"retrain request ({request.reason})"
            )
            self._next_refresh = now + self._interval
            with self._lock.renewing():
                result = self._refresh(reason)
            if result is None and request is not None and self._stop.is_set():
                # The refresh ended with the trainer, so the request goes back
                # for the next trainer to take instead of waiting for the schedule.
                request_retrain(
                    self._client, self._key_prefix, request.reason, request.detected_at
                )
                logger.info(
                    "retrain request put back for the next trainer reason=%s",
                    request.reason,
                )
            return result
        finally:
            self._lock.release()

    def _refresh(self, reason: str) -> RefreshResult | None:
        started = time.perf_counter()
        try:
            result = self._trainer.refresh(self._window.snapshot(), reason)
        except TrainingStoppedError:
            logger.info(
                "refresh stopped, the trainer is shutting down reason=%s", reason
            )
            return None
        except TrainingLockLostError:
            logger.exception("refresh stopped reason=%s", reason)
            REFRESHES.labels("failed").inc()
            return None
        except InfrastructureError as exc:
            # The message names the server and what to check; a traceback
            # would add only the trainer's own call stack.
            logger.error("refresh failed reason=%s error=%s", reason, exc)
            REFRESHES.labels("failed").inc()
            return None
        except Exception:
            # A failed refresh must not stop the trainer: the champion stays,
            # and the next interval tries again.
            logger.exception("refresh failed reason=%s", reason)
            REFRESHES.labels("failed").inc()
            return None
        REFRESHES.labels(result.outcome).inc()
        if result.outcome != "skipped":
            REFRESH_SECONDS.observe(time.perf_counter() - started)
        logger.info(
            "refresh finished outcome=%s model_version=%s seconds=%.1f",
            result.outcome,
            result.model_version,
            time.perf_counter() - started,
        )
        return result
