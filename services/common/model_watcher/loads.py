"""Loads of announced ranker versions on bounded threads, and the ranker in use.

:class:`RankerLoads` contains the state that the model watcher's thread
updates: the newest announcement, the ranker in use, the failed loads of each
version and the threads of loads that ran past the timeout.

Fallback: compaction keeps only the newest announcement of a model name, so
the earlier versions are looked up in the registry the announced artifact
lives in, where the trainer keeps the last ``CARTWHEEL_TRAINER_KEPT_VERSIONS``.
When the announced version fails in a process that has no ranker yet, the
newest earlier version that loads is used, so a fresh process ranks like the
processes that kept the last good model. A process that has a ranker keeps it.
The announced version's directory is not read again for the fallback, since a
hung read of it may be why it failed. A version that failed or timed out once
is not loaded again in the fallback. Each retry lists the registry again, so a
version whose metadata becomes readable later (a copy finished, a volume
mounted) is still tried.

Retry: while the ranker in use is not the newest announced version and no
read is blocked, the watcher tries that version again ``retry_seconds`` after
its last failed load. An artifact that was unreadable for a while (a volume
mounted late, a copy still in progress) is then picked up without a restart
or a new announcement. A read still blocked delays the retry, so retries
never add blocked threads. After ``load_attempts`` failed or timed-out loads
the watcher logs one ERROR and skips the version until another announcement
arrives, even one of the same version (the trainer announces its champion
again when it starts). The ranker in use keeps scoring meanwhile, and
``cartwheel_model_announcement_skipped`` is 1. A process without a ranker
still lists the earlier versions on each retry, without loading the skipped
one.

Timeout: every artifact read runs on a thread of its own, and the watcher
waits for it at most the load timeout, then counts the load as timed out and
goes on following the topic. Python cannot stop a thread blocked in a read (a
hung network volume), so that thread stays until the read returns. While
``_MAX_BLOCKED_LOADS`` threads are blocked, the next load waits for one of
them to return. A ranker that loads late is still used when it is the newest
announced version or the process has none. A late failure of the newest
version, or any late return while the process has no ranker, makes the
watcher try the newest announcement again. Listing the earlier versions runs
the same way, but a listing that times out is not counted in
``cartwheel_model_loads_total``, which counts ranker loads only. The failed
load that started the fallback is counted already, and the listing's thread
shows in ``cartwheel_model_blocked_loads`` until it returns.

Loading, verifying and warming up a version happens on the load thread.
Scorers only read ``current()``, a single reference that is replaced in one
assignment once the new ranker is ready, so a batch is scored by exactly one
complete model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from models.errors import ArtifactError
from models.multitask.ranker import CandidateInput, Ranker
from models.registry import ModelAnnouncement
from services.common.bounded_calls import BlockedCall, BoundedCalls
from services.common.model_watcher.metrics import (
    MODEL_LOAD_SECONDS,
    MODEL_LOADS,
    LoadOutcome,
)

__all__ = ["RankerLoads"]

logger = logging.getLogger(__name__)

_WARM_UP = [CandidateInput("warm-up")]

# LIMITATION(L-79): a thread blocked in a read cannot be stopped, only left
# behind. Two blocked reads most likely mean the volume is stuck, not one file,
# so a third load waits for one of them to return instead of blocking too.
_MAX_BLOCKED_LOADS = 2

# Names the listing of earlier versions among the calls on the load threads.
_LISTING_PREFIX = "earlier-than-"


def _log_late_listing(call: BlockedCall) -> None:
    """Log a blocked listing of earlier versions that returned."""
    future = call.future
    logger.warning(
        "blocked listing of earlier versions returned announced=%s "
        "blocked_seconds=%.1f error=%s",
        call.name.removeprefix(_LISTING_PREFIX),
        time.monotonic() - call.started,
        future.exception() if future.done() else None,
    )


def _late_ranker(call: BlockedCall) -> Ranker | None:
    """Log a blocked load that returned, and return its ranker if it made one."""
    # The future is not done only if the call raised a BaseException.
    future = call.future
    error = future.exception() if future.done() else None
    logger.warning(
        "blocked model load returned model_version=%s blocked_seconds=%.1f error=%s",
        call.name,
        time.monotonic() - call.started,
        error,
    )
    if not future.done() or error is not None:
        return None
    result = future.result()
    return result if isinstance(result, Ranker) else None


class RankerLoads:
    """Announced versions of one model name, their loads and the ranker in use.

    Only the watcher's thread calls :meth:`announce`,
    :meth:`take_returned_loads`, :meth:`due_retry`, :meth:`can_start_load` and
    :meth:`swap_to`, so only it loads. Any thread may read the rest.

    The arguments are described under the same names in
    :class:`~services.common.model_watcher.watcher.ModelWatcher`.

    Raises:
        ValueError: ``load_attempts`` is below 1.
    """

    def __init__(
        self,
        *,
        loader: Callable[[ModelAnnouncement], Ranker],
        earlier_versions: Callable[[ModelAnnouncement], list[ModelAnnouncement]],
        load_timeout_seconds: float,
        retry_seconds: float,
        load_attempts: int,
        clock: Callable[[], float],
    ) -> None:
        if load_attempts < 1:
            raise ValueError(f"load_attempts={load_attempts}; expected at least 1")
        self._loader = loader
        self._earlier_versions = earlier_versions
        self._retry_seconds = retry_seconds
        self._load_attempts = load_attempts
        self._clock = clock
        # Failed loads of the newest announcement, written by the watcher's
        # thread only. A new announcement starts again at 0.
        self._newest_failures = 0
        # Time of the last failed load, written by the watcher's thread only.
        self._failed_at: float | None = None
        self._current: Ranker | None = None
        self._failed_versions: set[str] = set()
        # Announced versions whose failed fallback was logged, so that a retry
        # that finds no untried earlier version logs no second ERROR.
        self._reported_fallbacks: set[str] = set()
        self._changed = threading.Condition()
        # Written by the watcher's thread only. The metrics thread reads it too.
        self._newest: ModelAnnouncement | None = None
        self._loads = BoundedCalls(
            load_timeout_seconds, _MAX_BLOCKED_LOADS, thread_name_prefix="model-load"
        )
        self._waiting_version: str | None = None

    @property
    def newest(self) -> ModelAnnouncement | None:
        """The newest announcement, None before the first one."""
        return self._newest

    @property
    def timeout_seconds(self) -> float:
        """Seconds to wait for one load before it counts as timed out."""
        return self._loads.timeout_seconds

    @property
    def blocked(self) -> int:
        """Number of loads and listings that ran past the timeout and still block."""
        return self._loads.blocked

    def current(self) -> Ranker | None:
        """Return the ranker to use for the next batch, None before the first model."""
        return self._current

    def is_behind_announcement(self) -> bool:
        """Return whether the ranker in use is not the newest announced version.

        False before the first announcement.
        """
        newest = self._newest
        current = self._current
        if newest is None:
            return False
        return current is None or current.model_version != newest.model_version

    def is_newest_skipped(self) -> bool:
        """Return whether the newest announced version failed all its load attempts.

        It is not loaded again until another announcement arrives.
        """
        return (
            self.is_behind_announcement()
            and self._newest_failures >= self._load_attempts
        )

    def wait_for(self, model_version: str, timeout_seconds: float) -> bool:
        """Block until ``model_version`` is current or known to have failed.

        A load that timed out counts as failed.

        Returns:
            True when it is the current version.
        """
        deadline = time.monotonic() + timeout_seconds
        with self._changed:
            while True:
                current = self._current
                if current is not None and current.model_version == model_version:
                    return True
                remaining = deadline - time.monotonic()
                if model_version in self._failed_versions or remaining <= 0:
                    return False
                self._changed.wait(remaining)

    def announce(self, newest: ModelAnnouncement) -> None:
        """Make ``newest`` the version to load.

        A different announcement than the newest one starts with no failed loads.
        """
        if newest != self._newest:
            self._newest_failures = 0
        self._newest = newest

    def swap_to(self, announcement: ModelAnnouncement) -> None:
        """Load ``announcement`` unless it is the ranker in use or skipped.

        A process without a ranker falls back to an earlier version when the
        announced one is skipped or fails to load.
        """
        current = self._current
        if current is not None and current.model_version == announcement.model_version:
            return
        if self.is_newest_skipped():
            # Only a process without a ranker goes on, to look for an
            # earlier version that appeared since.
            if current is None:
                self._fall_back(announcement)
            return
        if not self._try_load(announcement) and current is None:
            self._fall_back(announcement)

    def _fall_back(self, failed: ModelAnnouncement) -> None:
        """Load the newest version saved before ``failed``, for a fresh process."""
        version = failed.model_version
        if not self.can_start_load(version):
            return

        listed = self._loads.run(
            lambda: self._earlier_versions(failed), f"{_LISTING_PREFIX}{version}"
        )
        if listed is None:
            logger.error(
                "listing earlier versions timed out and its thread stays blocked, "
                "check the registry volume model_version=%s timeout_seconds=%s",
                version,
                self._loads.timeout_seconds,
            )
            return

        earlier = listed.result()
        # A version that failed or timed out before is not loaded again. A late
        # return of a timed-out load is handled by take_returned_loads.
        untried = [c for c in earlier if c.model_version not in self._failed_versions]
        for candidate in untried:
            if not self.can_start_load(candidate.model_version):
                return
            if self._try_load(candidate, instead_of=version):
                return

        if not untried and version in self._reported_fallbacks:
            logger.debug(
                "no earlier version left to try model_version=%s earlier_versions=%d",
                version,
                len(earlier),
            )
            return
        self._reported_fallbacks.add(version)
        logger.error(
            "no earlier version loaded, the heuristic ranks until a version loads "
            "model_version=%s earlier_versions=%d tried=%d",
            version,
            len(earlier),
            len(untried),
        )

    def _try_load(
        self, announcement: ModelAnnouncement, *, instead_of: str | None = None
    ) -> bool:
        version = announcement.model_version
        started = time.perf_counter()
        loaded = self._loads.run(lambda: self._load_and_warm_up(announcement), version)
        if loaded is None:
            logger.error(
                "model load timed out and its thread stays blocked until the read "
                "returns, check the registry volume model_version=%s "
                "timeout_seconds=%s blocked_loads=%d",
                version,
                self._loads.timeout_seconds,
                self._loads.blocked,
            )
            self._reject(version, "timed_out")
            return False
        try:
            ranker = loaded.result()
        except Exception as exc:
            # Artifacts come from outside the process, so any failure to load
            # one (ArtifactError for the known ones) keeps the ranker in use
            # and the watcher following later versions.
            current = self._current
            if current is None:
                line = "model load failed, no ranker in use yet model_version=%s"
                args: tuple[str, ...] = (version,)
            else:
                line = (
                    "model load failed, keeping the ranker in use model_version=%s "
                    "current=%s"
                )
                args = (version, current.model_version)
            if version in self._failed_versions or isinstance(exc, ArtifactError):
                # A retry of a version that failed before, or a known fault of
                # the artifact, whose message names the file and the check:
                # one line, without a traceback.
                logger.error(f"{line} error=%s", *args, exc)
            else:
                logger.exception(line, *args)
            self._reject(version, "failed")
            return False
        self._install(ranker, time.perf_counter() - started, instead_of)
        return True

    def _load_and_warm_up(self, announcement: ModelAnnouncement) -> Ranker:
        ranker = self._loader(announcement)
        ranker.predict("warm-up", {}, _WARM_UP)
        return ranker

    def can_start_load(self, model_version: str) -> bool:
        """Return whether a load may start, logging once per version that waits."""
        if self._loads.can_start():
            self._waiting_version = None
            return True
        if self._waiting_version != model_version:
            self._waiting_version = model_version
            logger.warning(
                "model load waits until a blocked load returns model_version=%s "
                "blocked_loads=%d",
                model_version,
                self._loads.blocked,
            )
        return False

    def take_returned_loads(self) -> bool:
        """Use or drop the blocked loads whose thread returned.

        Returns:
            True when the newest announcement should be tried again.
        """
        returned = self._loads.forget_returned()
        newest = self._newest.model_version if self._newest is not None else None
        should_retry = False
        for call in returned:
            if call.name.startswith(_LISTING_PREFIX):
                _log_late_listing(call)
                continue
            ranker = _late_ranker(call)
            if ranker is not None and self._may_install(ranker, newest):
                instead_of = None if ranker.model_version == newest else newest
                self._install(ranker, time.monotonic() - call.started, instead_of)
            else:
                should_retry = should_retry or call.name == newest
        return should_retry or (bool(returned) and self._current is None)

    def _may_install(self, ranker: Ranker, newest: str | None) -> bool:
        """Return whether a late ranker may become current, never over a newer one."""
        current = self._current
        if current is None:
            return True
        return ranker.model_version == newest and current.model_version != newest

    def due_retry(self) -> ModelAnnouncement | None:
        """Return the newest announcement when it is time to try it again."""
        newest = self._newest
        if self._failed_at is None or self._loads.blocked:
            return None
        if newest is None or not self.is_behind_announcement():
            return None
        if self._clock() - self._failed_at < self._retry_seconds:
            return None
        if not self.is_newest_skipped():
            logger.info(
                "trying the newest announced version again model_version=%s "
                "attempt=%d load_attempts=%d retry_seconds=%s",
                newest.model_version,
                self._newest_failures + 1,
                self._load_attempts,
                self._retry_seconds,
            )
        elif self._current is not None:
            return None
        return newest

    def _reject(self, model_version: str, outcome: LoadOutcome) -> None:
        self._failed_at = self._clock()
        MODEL_LOADS.labels(outcome).inc()
        newest = self._newest
        if newest is not None and newest.model_version == model_version:
            self._newest_failures += 1
            if self._newest_failures == self._load_attempts:
                self._log_skipped(model_version)
        with self._changed:
            self._failed_versions.add(model_version)
            self._changed.notify_all()

    def _log_skipped(self, model_version: str) -> None:
        current = self._current
        logger.error(
            "model version skipped until another announcement, its loads failed "
            "model_version=%s attempts=%d current=%s; restore the artifact and "
            "restart the trainer, which announces its champion again, or wait for "
            "the next promotion",
            model_version,
            self._newest_failures,
            current.model_version if current is not None else None,
        )

    def _install(
        self, ranker: Ranker, load_seconds: float, instead_of: str | None
    ) -> None:
        previous = self._current
        MODEL_LOAD_SECONDS.observe(load_seconds)
        MODEL_LOADS.labels("loaded").inc()
        with self._changed:
            self._current = ranker
            self._changed.notify_all()
        if instead_of is not None:
            logger.warning(
                "earlier model version loaded because the announced one failed "
                "model_version=%s announced=%s load_seconds=%.3f",
                ranker.model_version,
                instead_of,
                load_seconds,
            )
            return
        logger.info(
            "model swapped model_version=%s previous=%s load_seconds=%.3f",
            ranker.model_version,
            previous.model_version if previous is not None else None,
            load_seconds,
        )
