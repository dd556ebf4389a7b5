"""The training lock: at most one trainer trains at a time across processes.

A Redis key set with NX and a TTL contains a random token. Only the holder of the
token renews or releases it, through Lua scripts that compare the token first,
so a trainer that stalled past the TTL cannot delete a lock another trainer
has taken since. While a refresh runs, a thread renews the lock every third of
the TTL; when a renewal finds the lock gone, ``is_lost`` turns true and the
training loop stops at its next progress check.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from services.common.outage import OutageLog
from services.trainer.metrics import LOCK_HELD

__all__ = ["TrainingLock"]

logger = logging.getLogger(__name__)

_RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class TrainingLock:
    """A Redis lease with a TTL and an owner token.

    Args:
        client: Redis connection.
        key: the lock's key, e.g. ``<prefix>:trainer:lock:<model_name>``.
        ttl_seconds: how long the lock outlives its last renewal.
    """

    def __init__(self, client: redis.Redis, key: str, ttl_seconds: float) -> None:
        self._client = client
        self.key = key
        self._ttl_ms = int(ttl_seconds * 1000)
        self._token = uuid.uuid4().hex
        self._lost = threading.Event()
        # Kept across holds: a refresh may end before Redis is back.
        self._renewal_outage = OutageLog(
            logger, "redis", "training lock renewal", context={"key": key}
        )

    @property
    def is_lost(self) -> bool:
        """True when a renewal during the current hold found the lock gone."""
        return self._lost.is_set()

    def acquire(self) -> bool:
        """Take the lock if it is free; return whether this trainer now owns it."""
        is_acquired = bool(
            self._client.set(self.key, self._token, nx=True, px=self._ttl_ms)
        )
        if is_acquired:
            self._lost.clear()
            LOCK_HELD.set(1)
        return is_acquired

    def renew(self) -> bool:
        """Extend the TTL; return False when the lock is no longer this trainer's."""
        renewed = self._client.eval(
            _RENEW_SCRIPT, 1, self.key, self._token, self._ttl_ms
        )
        return bool(renewed)

    def release(self) -> None:
        """Delete the lock if this trainer still holds it."""
        self._client.eval(_RELEASE_SCRIPT, 1, self.key, self._token)
        LOCK_HELD.set(0)

    @contextmanager
    def renewing(self) -> Iterator[TrainingLock]:
        """Renew the held lock in a background thread until the block exits."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self._renew_until, args=(stop,), name="trainer-lock", daemon=True
        )
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()

    def _renew_until(self, stop: threading.Event) -> None:
        interval = self._ttl_ms / 3000.0
        while not stop.wait(interval):
            try:
                is_renewed = self.renew()
            except redis.RedisError as exc:
                self._renewal_outage.failed(exc, interval)
                continue
            self._renewal_outage.recovered()
            if not is_renewed:
                logger.error(
                    "training lock lost key=%s; stopping the refresh", self.key
                )
                self._lost.set()
                LOCK_HELD.set(0)
                return
