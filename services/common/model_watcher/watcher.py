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

Missing topic: the hot path verifies its topics and stops at start when the
models topic is missing, like any topic it needs. The API serves without a
trained ranker, so its watcher waits for the topic instead, retrying at most
every 30 s, and the heuristic ranks until a version loads.

Lag: ``cartwheel_model_behind_announcement`` is 1 while the ranker in use is
not the newest announced version (none yet, or an earlier one). A gauge rather
than the load counter shows it, because a fresh process can fail its first load
before Prometheus first scrapes it, and a counter whose first sample is already
1 shows no increase.

:mod:`services.common.model_watcher.loads` describes how a version is loaded,
retried, skipped or replaced by an earlier one, and what a load timeout does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)
from pydantic import ValidationError

from models.multitask.ranker import Ranker
from models.registry import ModelAnnouncement
from services.common.errors import TopicMissingError
from services.common.kafka import (
    consumer_config,
    unresponsive_broker_error,
    wait_for_broker,
)
from services.common.model_watcher.announcements import (
    earlier_announcements,
    load_ranker,
)
from services.common.model_watcher.loads import RankerLoads
from services.common.model_watcher.metrics import (
    LOAD_OUTCOMES,
    MODEL_ANNOUNCEMENT_SKIPPED,
    MODEL_BEHIND_ANNOUNCEMENT,
    MODEL_BLOCKED_LOADS,
    MODEL_LOADS,
    MODEL_WATCHER_RUNNING,
)
from services.common.settings import KafkaSettings
from services.common.topic_wait import retry_until_open

__all__ = ["ModelWatcher"]

logger = logging.getLogger(__name__)

_METADATA_TIMEOUT_SECONDS = 10.0


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
        self.topic = topic
        self.model_name = model_name
        self._kafka = kafka
        self._poll_timeout = poll_timeout_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loads = RankerLoads(
            loader=loader,
            earlier_versions=earlier_versions,
            load_timeout_seconds=load_timeout_seconds,
            retry_seconds=retry_seconds,
            load_attempts=load_attempts,
            clock=clock,
        )

    def current(self) -> Ranker | None:
        """Return the ranker to use for the next batch, None before the first model."""
        return self._loads.current()

    def is_behind_announcement(self) -> bool:
        """Return whether the ranker in use is not the newest announced version.

        False before the first announcement.
        """
        return self._loads.is_behind_announcement()

    def is_newest_skipped(self) -> bool:
        """Return whether the newest announced version failed all its load attempts.

        It is not loaded again until another announcement arrives.
        """
        return self._loads.is_newest_skipped()

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
        for outcome in LOAD_OUTCOMES:
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
        return self._loads.wait_for(model_version, timeout_seconds)

    def _follow(self, consumer: Consumer) -> None:
        pending: ModelAnnouncement | None = None
        try:
            while not self._stop.is_set():
                messages = consumer.consume(500, timeout=self._poll_timeout)
                newest = self._newest_announcement(messages)
                if newest is not None:
                    self._loads.announce(newest)
                    pending = newest
                if self._loads.take_returned_loads():
                    pending = self._loads.newest
                if pending is None:
                    pending = self._loads.due_retry()
                if pending is not None and self._loads.can_start_load(
                    pending.model_version
                ):
                    self._loads.swap_to(pending)
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
