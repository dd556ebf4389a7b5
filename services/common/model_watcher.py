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
load (missing, corrupt, incompatible) is rejected with an ERROR naming the
version, and the ranker in use stays.

Loading, verifying and warming up a version happens on the watcher's thread.
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

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    Message,
    TopicPartition,
)
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from models.errors import ArtifactIncompatibleError
from models.multitask.ranker import CandidateInput, Ranker
from models.registry import ModelAnnouncement, load_artifact
from services.common.errors import TopicMissingError
from services.common.kafka import consumer_config
from services.common.settings import KafkaSettings

__all__ = ["MODEL_LOADS", "MODEL_WATCHER_RUNNING", "ModelWatcher", "load_ranker"]

logger = logging.getLogger(__name__)

MODEL_LOADS = Counter(
    "cartwheel_model_loads_total",
    "Ranker versions loaded from announcements, by outcome (loaded or failed)",
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
    "1 while the model watcher follows the models topic, 0 once it stopped on "
    "an error (new versions are then not loaded until a restart)",
    ["topic"],
)

_METADATA_TIMEOUT_SECONDS = 10.0
_WARM_UP = [CandidateInput("warm-up")]


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


class ModelWatcher:
    """Keeps the newest announced ranker of one model name loaded.

    Args:
        kafka: connection settings.
        topic: the models topic.
        model_name: the announcements' key to follow, e.g. ``ranker``.
        loader: turns an announcement into a ranker; raises ArtifactError
            when it cannot.
        poll_timeout_seconds: maximum wait of one Kafka poll.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        model_name: str,
        *,
        loader: Callable[[ModelAnnouncement], Ranker] = load_ranker,
        poll_timeout_seconds: float = 0.2,
    ) -> None:
        self.topic = topic
        self.model_name = model_name
        self._kafka = kafka
        self._loader = loader
        self._poll_timeout = poll_timeout_seconds
        self._current: Ranker | None = None
        self._failed_versions: set[str] = set()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def current(self) -> Ranker | None:
        """Return the ranker to use for the next batch, None before the first model."""
        return self._current

    def start(self) -> None:
        """Assign the topic and start following it in a daemon thread.

        Raises:
            TopicMissingError: the models topic does not exist.
        """
        consumer = Consumer(
            consumer_config(self._kafka, f"cartwheel-model-watcher-{self.model_name}")
        )
        metadata = consumer.list_topics(self.topic, timeout=_METADATA_TIMEOUT_SECONDS)
        found = metadata.topics.get(self.topic)
        if found is None or found.error is not None or not found.partitions:
            consumer.close()
            raise TopicMissingError(
                f"topic {self.topic!r} is missing; run 'cartwheel topics create'"
            )
        consumer.assign(
            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in found.partitions]
        )
        self._thread = threading.Thread(
            target=self._follow, args=(consumer,), name="model-watcher", daemon=True
        )
        self._thread.start()
        MODEL_WATCHER_RUNNING.labels(self.topic).set(1)
        logger.info(
            "model watcher started topic=%s model=%s", self.topic, self.model_name
        )

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop following; the ranker in use stays available."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)

    def wait_for(self, model_version: str, timeout_seconds: float) -> bool:
        """Block until ``model_version`` is current or known to have failed.

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
        try:
            while not self._stop.is_set():
                messages = consumer.consume(500, timeout=self._poll_timeout)
                newest = self._newest_announcement(messages)
                if newest is not None:
                    self._swap_to(newest)
        except Exception:
            MODEL_WATCHER_RUNNING.labels(self.topic).set(0)
            logger.exception(
                "model watcher stopped, new versions are not loaded until a "
                "restart topic=%s",
                self.topic,
            )
        finally:
            consumer.close()

    # LIMITATION(L-79): only the newest announcement is tried. When it fails to
    # load in a process that has no ranker yet, that process ranks
    # heuristically until the next promotion; an artifact read that blocks
    # (a hung network volume) stalls the watcher with no error.
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
        version = announcement.model_version
        current = self._current
        if current is not None and current.model_version == version:
            return
        started = time.perf_counter()
        try:
            ranker = self._loader(announcement)
            ranker.predict("warm-up", {}, _WARM_UP)
        except Exception:
            # Artifacts come from outside the process, so any failure to load
            # one (ArtifactError for the known ones) keeps the ranker in use
            # and the watcher following later versions.
            MODEL_LOADS.labels("failed").inc()
            logger.exception(
                "model load failed, keeping current model_version=%s current=%s",
                version,
                current.model_version if current is not None else None,
            )
            with self._changed:
                self._failed_versions.add(version)
                self._changed.notify_all()
            return
        MODEL_LOAD_SECONDS.observe(time.perf_counter() - started)
        MODEL_LOADS.labels("loaded").inc()
        with self._changed:
            self._current = ranker
            self._changed.notify_all()
        logger.info(
            "model swapped model_version=%s previous=%s load_seconds=%.3f",
            version,
            current.model_version if current is not None else None,
            time.perf_counter() - started,
        )
