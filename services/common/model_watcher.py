"""Hot swap of the ranker: follow the ``models`` topic and load new versions.

Delivery: at-least-once, without a consumer group. The watcher assigns itself
every partition of the compacted ``models`` topic from the beginning and loads
only the newest announcement of its model name in each polled batch, so a
backlog of old versions is skipped. A redelivered announcement of the version
already loaded changes nothing.

Ordering: announcements of one model name share a key, so they arrive in the
order the trainer promoted them.

Malformed input: an announcement that is not valid JSON for
``ModelAnnouncement`` is skipped with a WARNING. An artifact that fails to
load (missing, corrupt, incompatible) or takes longer than the load timeout is
rejected with an ERROR naming the version. A ranker already in use stays.

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

Missing topic: the hot path verifies its topics and stops at start when the
models topic is missing, like any topic it needs. The API serves without a
trained ranker, so its watcher waits for the topic instead, retrying at most
every 30 s, and the heuristic ranks until a version loads.

Lag: ``cartwheel_model_behind_announcement`` is 1 while the ranker in use is
not the newest announced version (none yet, or an earlier one). A gauge rather
than the load counter shows it, because a fresh process can fail its first load
before Prometheus first scrapes it, and a counter whose first sample is already
1 shows no increase.

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
from pathlib import Path
from typing import Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from models.errors import ArtifactError, ArtifactIncompatibleError
from models.multitask.ranker import CandidateInput, Ranker
from models.registry import ModelAnnouncement, ModelRegistry, load_artifact
from services.common.bounded_calls import BlockedCall, BoundedCalls
from services.common.errors import TopicMissingError
from services.common.kafka import (
    consumer_config,
    unresponsive_broker_error,
    wait_for_broker,
)
from services.common.settings import KafkaSettings
from services.common.topic_wait import retry_until_open

__all__ = [
    "MODEL_ANNOUNCEMENT_SKIPPED",
    "MODEL_BEHIND_ANNOUNCEMENT",
    "MODEL_BLOCKED_LOADS",
    "MODEL_LOADS",
    "MODEL_WATCHER_RUNNING",
    "ModelWatcher",
    "earlier_announcements",
    "load_ranker",
]

logger = logging.getLogger(__name__)

LoadOutcome = Literal["loaded", "failed", "timed_out"]

MODEL_LOADS = Counter(
    "cartwheel_model_loads_total",
    "Ranker versions loaded from announcements, by outcome (loaded, failed or "
    "timed_out). A timed-out load that is used when it returns also counts as "
    "loaded",
    ["outcome"],
)
MODEL_LOAD_SECONDS = Histogram(
    "cartwheel_model_load_seconds",
    "Time to load, verify and warm up one announced ranker version",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# Labelled, so that a process without a watcher exports no sample at all.
MODEL_WATCHER_RUNNING = Gauge(
    "cartwheel_model_watcher_running",
    "1 while the model watcher follows the models topic, 0 while the API's "
    "watcher waits for the topic to exist or once a watcher stopped on an error "
    "(new versions are then not loaded until a restart)",
    ["topic"],
)
MODEL_BLOCKED_LOADS = Gauge(
    "cartwheel_model_blocked_loads",
    "Artifact reads that ran past the load timeout and still block a thread",
    ["topic"],
)
MODEL_BEHIND_ANNOUNCEMENT = Gauge(
    "cartwheel_model_behind_announcement",
    "1 while the ranker in use is not the newest announced version (none yet, "
    "or an earlier one), 0 when it is or before the first announcement",
    ["topic"],
)

MODEL_ANNOUNCEMENT_SKIPPED = Gauge(
    "cartwheel_model_announcement_skipped",
    "1 while the newest announced version failed all its load attempts and is "
    "not tried again until another announcement, 0 otherwise",
    ["topic"],
)

_METADATA_TIMEOUT_SECONDS = 10.0
_WARM_UP = [CandidateInput("warm-up")]
_OUTCOMES: tuple[LoadOutcome, ...] = ("loaded", "failed", "timed_out")

# LIMITATION(L-79): a thread blocked in a read cannot be stopped, only left
# behind. Two blocked reads most likely mean the volume is stuck, not one file,
# so a third load waits for one of them to return instead of blocking too.
_MAX_BLOCKED_LOADS = 2

# Names the listing of earlier versions among the calls on the load threads.
_LISTING_PREFIX = "earlier-than-"


def load_ranker(announcement: ModelAnnouncement) -> Ranker:
    """Load and verify the artifact an announcement points to.

    Raises:
        ArtifactError: the artifact is missing, corrupt, incompatible or
            contains another version than announced.
    """
    artifact = load_artifact(Path(announcement.artifact_uri))
    found = artifact.metadata.model_version
    if found != announcement.model_version:
        raise ArtifactIncompatibleError(
            f"artifact at {announcement.artifact_uri} is model_version={found!r}, "
            f"announced {announcement.model_version!r}; announce the right path"
        )
    return Ranker.from_artifact(artifact)


def earlier_announcements(announcement: ModelAnnouncement) -> list[ModelAnnouncement]:
    """Return the versions saved before an announced one, newest first.

    They are read from the registry that contains the announced artifact,
    since the compacted topic may no longer contain their announcements. Each comes as
    an announcement of its registry path whose ``announced_at`` is the
    artifact's creation time, because the registry keeps no announcement times. A
    version is earlier when it was created before the announcement. The
    announced version's directory is never read: a hung read of its metadata may
    be why it failed, and it would block the listing as well. So a version saved
    after the announced one but before its announcement counts as earlier too.
    """
    artifact = Path(announcement.artifact_uri)
    version = announcement.model_version
    if artifact.name != version or artifact.parent.name != announcement.model_name:
        logger.warning(
            "no earlier versions to fall back to, the artifact is outside a "
            "registry model_version=%s uri=%s",
            version,
            artifact,
        )
        return []
    registry = ModelRegistry(artifact.parent.parent)
    try:
        history = registry.history(announcement.model_name, exclude={version})
    except OSError:
        logger.exception(
            "listing earlier versions failed model_version=%s registry=%s",
            version,
            registry.root,
        )
        return []
    return [
        ModelAnnouncement(
            model_name=metadata.model_name,
            model_version=metadata.model_version,
            artifact_uri=str(registry.path_of(metadata.model_version)),
            announced_at=metadata.created_at,
        )
        for metadata in reversed(history)
        if metadata.created_at < announcement.announced_at
    ]


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


class ModelWatcher:
    """Keeps the newest announced ranker of one model name loaded.

    Args:
        kafka: connection settings.
        topic: the models topic.
        model_name: the announcements' key to follow, e.g. ``ranker``.
        loader: turns an announcement into a ranker; raises ArtifactError
            when it cannot.
        earlier_versions: returns the versions to fall back to when an
            announced one fails in a process without a ranker, newest first.
        load_timeout_seconds: seconds to wait for one load, or for the list
            of earlier versions, before it counts as timed out.
        retry_seconds: seconds after a failed load before the newest announced
            version is tried again, while the ranker in use is not that version.
        load_attempts: failed or timed-out loads of one announcement, the
            first included, after which its version is skipped until the
            next announcement.
        poll_timeout_seconds: maximum wait of one Kafka poll.
        clock: monotonic seconds, for the retry delay.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        model_name: str,
        *,
        loader: Callable[[ModelAnnouncement], Ranker] = load_ranker,
        earlier_versions: Callable[
            [ModelAnnouncement], list[ModelAnnouncement]
        ] = earlier_announcements,
        load_timeout_seconds: float = 60.0,
        retry_seconds: float = 300.0,
        load_attempts: int = 3,
        poll_timeout_seconds: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if load_attempts < 1:
            raise ValueError(f"load_attempts={load_attempts}; expected at least 1")
        self.topic = topic
        self.model_name = model_name
        self._kafka = kafka
        self._loader = loader
        self._earlier_versions = earlier_versions
        self._poll_timeout = poll_timeout_seconds
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
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        # Written by the watcher's thread only. The metrics thread reads it too.
        self._newest: ModelAnnouncement | None = None
        self._loads = BoundedCalls(
            load_timeout_seconds, _MAX_BLOCKED_LOADS, thread_name_prefix="model-load"
        )
        self._waiting_version: str | None = None

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

    def start(self, *, wait_for_topic: bool = False) -> None:
        """Assign the topic and start following it in a daemon thread.

        A watcher that is already following its topic is left as it is.

        Args:
            wait_for_topic: when the models topic is missing, return at once
                and retry in the thread until it exists (see
                :func:`~services.common.topic_wait.retry_until_open`), then
                follow it. ``cartwheel_model_watcher_running`` is 0 while the
                thread waits, and :meth:`current` returns None.

        Raises:
            BrokerUnreachableError: no broker listens at the bootstrap address
                or none returned the topic's metadata in time. The message
                names the address and ``CARTWHEEL_KAFKA_BOOTSTRAP``.
            TopicMissingError: the models topic does not exist, and
                ``wait_for_topic`` is False.
        """
        if self._thread is not None and self._thread.is_alive():
            return
        # Each outcome starts at 0, so that the first failure is an increase.
        for outcome in _OUTCOMES:
            MODEL_LOADS.labels(outcome)
        MODEL_BLOCKED_LOADS.labels(self.topic).set_function(lambda: self._loads.blocked)
        MODEL_BEHIND_ANNOUNCEMENT.labels(self.topic).set_function(
            lambda: float(self.is_behind_announcement())
        )
        MODEL_ANNOUNCEMENT_SKIPPED.labels(self.topic).set_function(
            lambda: float(self.is_newest_skipped())
        )
        try:
            consumer = self._open()
        except TopicMissingError as exc:
            if not wait_for_topic:
                raise
            MODEL_WATCHER_RUNNING.labels(self.topic).set(0)
            logger.warning(
                "model watcher waits for the models topic, the heuristic ranks "
                "until it exists and a model is announced: %s",
                exc,
            )
            self._thread = threading.Thread(
                target=self._wait_then_follow,
                args=(exc,),
                name="model-watcher",
                daemon=True,
            )
            self._thread.start()
            return
        self._thread = threading.Thread(
            target=self._follow, args=(consumer,), name="model-watcher", daemon=True
        )
        self._thread.start()
        MODEL_WATCHER_RUNNING.labels(self.topic).set(1)
        self._log_started()

    def _open(self) -> Consumer:
        """Return a consumer assigned to every partition from the beginning."""
        # The shared check turns a TLS handshake the broker rejects into one
        # line that names the client certificate settings.
        wait_for_broker(self._kafka, timeout_seconds=_METADATA_TIMEOUT_SECONDS)
        consumer = Consumer(
            consumer_config(self._kafka, f"cartwheel-model-watcher-{self.model_name}")
        )
        try:
            metadata = consumer.list_topics(
                self.topic, timeout=_METADATA_TIMEOUT_SECONDS
            )
        except KafkaException as exc:
            consumer.close()
            raise unresponsive_broker_error(
                self._kafka, _METADATA_TIMEOUT_SECONDS, exc
            ) from exc
        found = metadata.topics.get(self.topic)
        if found is None or found.error is not None or not found.partitions:
            consumer.close()
            raise TopicMissingError(
                f"topic {self.topic!r} is missing; run 'cartwheel topics create'"
            )
        consumer.assign(
            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in found.partitions]
        )
        return consumer

    def _wait_then_follow(self, first_error: TopicMissingError) -> None:
        try:
            consumer = retry_until_open(
                self._open,
                self._stop,
                reader="model watcher",
                topic=self.topic,
                first_error=first_error,
            )
        except Exception:
            logger.exception(
                "model watcher stopped while waiting for its topic, new versions "
                "are not loaded until a restart topic=%s",
                self.topic,
            )
            return
        if consumer is None:
            return
        MODEL_WATCHER_RUNNING.labels(self.topic).set(1)
        self._log_started()
        self._follow(consumer)

    def _log_started(self) -> None:
        logger.info(
            "model watcher started topic=%s model=%s load_timeout_seconds=%s",
            self.topic,
            self.model_name,
            self._loads.timeout_seconds,
        )

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop following; the ranker in use stays available.

        A load in progress is not waited for beyond ``timeout_seconds``.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)

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

    def _follow(self, consumer: Consumer) -> None:
        pending: ModelAnnouncement | None = None
        try:
            while not self._stop.is_set():
                messages = consumer.consume(500, timeout=self._poll_timeout)
                newest = self._newest_announcement(messages)
                if newest is not None:
                    if newest != self._newest:
                        self._newest_failures = 0
                    self._newest = pending = newest
                if self._take_returned_loads():
                    pending = self._newest
                if pending is None:
                    pending = self._due_retry()
                if pending is not None and self._can_start_load(pending.model_version):
                    self._swap_to(pending)
                    pending = None
        except Exception:
            MODEL_WATCHER_RUNNING.labels(self.topic).set(0)
            logger.exception(
                "model watcher stopped, new versions are not loaded until a "
                "restart topic=%s",
                self.topic,
            )
        finally:
            consumer.close()

    def _newest_announcement(self, messages: list[Message]) -> ModelAnnouncement | None:
        # Only the last announcement of a batch matters: older versions in the
        # same batch were superseded before anyone could use them.
        newest = None
        for message in messages:
            if message.error() is not None:
                logger.warning(
                    "consume error topic=%s error=%s", self.topic, message.error()
                )
                continue
            if message.key() != self.model_name.encode():
                continue
            try:
                newest = ModelAnnouncement.model_validate_json(message.value() or b"")
            except ValidationError as exc:
                logger.warning(
                    "invalid model announcement skipped topic=%s partition=%s "
                    "offset=%s errors=%s",
                    self.topic,
                    message.partition(),
                    message.offset(),
                    exc.error_count(),
                )
        return newest

    def _swap_to(self, announcement: ModelAnnouncement) -> None:
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
        if not self._can_start_load(version):
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
        # return of a timed-out load is handled by _take_returned_loads.
        untried = [c for c in earlier if c.model_version not in self._failed_versions]
        for candidate in untried:
            if not self._can_start_load(candidate.model_version):
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

    def _can_start_load(self, model_version: str) -> bool:
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

    def _take_returned_loads(self) -> bool:
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

    def _due_retry(self) -> ModelAnnouncement | None:
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
