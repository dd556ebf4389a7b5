"""The scoring stage of the hot path: one slate per surface per applied event.

Delivery: at-least-once. :meth:`ScoringStage.process` returns only after every
slate of the batch is acknowledged by the broker, so the hot-path consumer
commits offsets only past events whose slates exist. A replayed batch yields
slates with the same ``recommendation_id`` (derived from the trigger event id
and the surface), so consumers can drop duplicates.

Ordering: events are handled in batch order. Features and learning have
already applied the whole batch, so the slate for event N sees event N.

Malformed input never reaches this stage: the consumer validates and
dead-letters it before the features are applied.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence

import redis
from confluent_kafka import KafkaException, Producer

from services.common.redis_features import FeatureStore
from services.common.stop_request import StopRequest
from services.hotpath.stages import AppliedEvent
from services.scorer.metrics import BATCH_SECONDS, MODEL_IN_USE
from services.scorer.protocols import FollowedModelSource, ModelSource, SignalSource
from services.scorer.publisher import SlatePublisher
from services.scorer.session_knn import SessionIndex, session_key
from services.scorer.settings import ScorerSettings
from services.scorer.slates import SlateBuilder, Trigger
from services.scorer.store import RedisCandidateStore
from services.scorer.warmup import WarmupResult, warm_session_index

__all__ = ["ScoringStage", "build_scoring_stage", "session_key", "trigger_of"]

logger = logging.getLogger(__name__)

_CLOSE_TIMEOUT_SECONDS = 5.0
# The warm-up runs in the consumer's rebalance callback, so it is kept well
# below the group's max.poll.interval.ms (300 s by default).
_WARMUP_TIMEOUT_SECONDS = 30.0


def trigger_of(applied: AppliedEvent) -> Trigger:
    """Return the trigger that an applied event makes."""
    event = applied.event
    return Trigger(
        event_id=event.event_id,
        user_id=event.user_id,
        item_id=event.item_id,
        event_type=event.event_type,
        event_time=event.event_timestamp,
        session_key=session_key(event.user_id, event.session_id),
        received_at=applied.received_at,
    )


class ScoringStage:
    """Turn each applied event into slates and publish them.

    Args:
        builder: builds the slates of a batch.
        sessions: the session-kNN index that the builder reads.
        publisher: sends slates to Kafka and Redis.
        models: the ranker's source, started by :meth:`start` when it follows
            announcements.
        warmer: refills ``sessions`` with the events before the given resume
            offsets of newly assigned partitions; None skips the warm-up.
        clock: monotonic seconds, for the batch timing metric.
    """

    name = "scoring"

    def __init__(
        self,
        builder: SlateBuilder,
        sessions: SessionIndex,
        publisher: SlatePublisher,
        *,
        models: ModelSource | None = None,
        warmer: Callable[[Mapping[int, int]], WarmupResult] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._builder = builder
        self._sessions = sessions
        self._publisher = publisher
        self._models = models
        self._warmer = warmer
        # The next offset per partition whose events the session index holds,
        # so a rebalance that hands back the same partitions reads nothing.
        self._indexed_until: dict[int, int] = {}
        self._clock = clock
        self._model_version: str | None = None

    def process(self, batch: Sequence[AppliedEvent]) -> None:
        """Build and publish the slates of a batch, in order; raise to retry it."""
        if not batch:
            return
        started = self._clock()
        triggers = [trigger_of(applied) for applied in batch]
        # LIMITATION(L-55): the batch's events of other users reach the
        # session index here, and item-to-item lists and trending before this
        # stage, so a slate can reflect another user's slightly later event.
        for trigger in triggers:
            self._sessions.add(trigger.session_key, trigger.item_id, trigger.event_time)
        for applied in batch:
            until = self._indexed_until.get(applied.partition, 0)
            self._indexed_until[applied.partition] = max(until, applied.offset + 1)

        slates_per_trigger = self._builder.build(triggers)
        slates = [slate for group in slates_per_trigger for slate in group]
        self._publisher.publish(slates)
        self._publisher.flush()

        self._note_model(slates_per_trigger[-1][0].model_version)
        BATCH_SECONDS.observe(self._clock() - started)
        logger.debug(
            "batch scored events=%d slates=%d partition=%s last_offset=%s",
            len(batch),
            len(slates),
            batch[-1].partition,
            batch[-1].offset,
        )

    def start(self) -> None:
        """Start following the ranker's announcements, if the source follows them.

        Raises:
            BrokerUnreachableError: no broker listens at the bootstrap address.
            TopicMissingError: the models topic does not exist.
        """
        if isinstance(self._models, FollowedModelSource):
            self._models.start()

    def assigned(self, resume_offsets: Mapping[int, int]) -> None:
        """Read the recent events of newly assigned partitions into the session index.

        Partitions whose events up to the resume offset this stage already
        indexed are skipped. A failed or partial warm-up is logged and leaves
        what it read, because session-kNN fills again from new events.
        """
        if self._warmer is None:
            return
        to_warm = {
            partition: offset
            for partition, offset in resume_offsets.items()
            if self._indexed_until.get(partition, 0) < offset
        }
        if not to_warm:
            return
        started = time.monotonic()
        try:
            result = self._warmer(to_warm)
        except KafkaException as exc:
            logger.warning("session index warm-up failed error=%s", exc)
            return
        if result.is_complete:
            for partition, offset in to_warm.items():
                until = self._indexed_until.get(partition, 0)
                self._indexed_until[partition] = max(until, offset)
        logger.info(
            "session index warmed partitions=%s events=%d skipped=%d sessions=%d "
            "is_complete=%s seconds=%.1f",
            sorted(to_warm),
            result.events,
            result.skipped,
            len(self._sessions),
            result.is_complete,
            time.monotonic() - started,
        )

    def poll(self) -> None:
        """Serve the slate producer's delivery reports and log lines."""
        self._publisher.poll()

    def stop(self) -> None:
        """Let the slate flushes give up once no broker accepts connections.

        The hot path calls it when it is asked to stop, from its signal
        handler. A flush that gives up raises ``BrokerGoneError``, so the
        batch's offsets are not committed and its slates come again with it.
        """
        self._publisher.stop()

    def close(self) -> None:
        """Wait a few seconds for the slates still queued.

        The producer belongs to the caller. Each wave's slates were flushed
        before its offsets could be committed, so a slate lost here belongs
        to a batch that is replayed. A short wait keeps shutdown quick while
        the broker is down.
        """
        self._publisher.flush(_CLOSE_TIMEOUT_SECONDS)

    def _note_model(self, model_version: str) -> None:
        if model_version == self._model_version:
            return
        if self._model_version is not None:
            MODEL_IN_USE.labels(self._model_version).set(0)
        MODEL_IN_USE.labels(model_version).set(1)
        logger.info("ranking with model model_version=%s", model_version)
        self._model_version = model_version


def build_scoring_stage(
    settings: ScorerSettings,
    client: redis.Redis,
    producer: Producer,
    *,
    models: ModelSource | None = None,
    signals: SignalSource | None = None,
    features: FeatureStore | None = None,
) -> ScoringStage:
    """Wire a scoring stage to Redis, a producer, the ranker and the learner.

    Args:
        settings: the scorer settings.
        client: the Redis connection of the feature store.
        producer: the hot path's producer; the stage flushes it after each batch.
        models: where the trained ranker comes from (a ``ModelWatcher``).
        signals: the online-learning stage, for its per-candidate signals.
        features: the feature store; built from ``client`` when omitted.
    """
    prefix = settings.redis.key_prefix
    store = RedisCandidateStore(
        features or FeatureStore(client, prefix),
        cache_ttl_seconds=settings.item_cache_ttl_seconds,
        cache_size=settings.item_cache_size,
    )
    candidates = settings.candidates
    sessions = SessionIndex(
        candidates.session_index_size,
        candidates.session_max_items,
        candidates.session_samples_per_item,
        max_total_items=candidates.session_index_items,
    )
    warmer = None
    if candidates.session_warmup_events > 0:
        warmer = functools.partial(
            warm_session_index,
            sessions,
            settings.kafka,
            settings.topics.events,
            events_per_partition=candidates.session_warmup_events,
            timeout_seconds=_WARMUP_TIMEOUT_SECONDS,
        )
    builder = SlateBuilder(store, sessions, settings, models=models, signals=signals)
    publisher = SlatePublisher(
        producer,
        settings.topics,
        client,
        prefix,
        settings.latest_slate_ttl_seconds,
        stop=StopRequest(settings.kafka),
    )
    if models is None:
        logger.warning(
            "no model source configured; ranking with the heuristic ranker only"
        )
    return ScoringStage(builder, sessions, publisher, models=models, warmer=warmer)
