"""The online-learning stage of the hot path, and the signals it gives scoring.

Delivery: the hot-path consumer is at-least-once and replays a whole batch
after a crash. This stage is idempotent per ``event_id``. The pending-label
script records applied ids in Redis atomically with its changes and returns
only ids it has not seen before. The models learn only from those ids and
from the examples that the same script resolved and deleted.

Ordering: events of one partition are handled in partition order. Labels are
resolved by each partition's event-time watermark (see
:mod:`services.learner.labels`).

Malformed input never reaches this stage: the consumer validates and
dead-letters it before the features are applied.

Learning is test-then-train: every example is scored by the current model
before the model learns it, and the rolling ROC AUC and log loss of those
scores are exported per model.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import numpy as np
import redis

from models.online import (
    AffinityModel,
    ConversionModel,
    DriftMonitor,
    OnlineExample,
    PrequentialEvaluator,
    PrequentialResult,
)
from schemas.events import EventType
from schemas.features import CandidateMatrix
from services.common.errors import InvalidSettingsError
from services.common.lifecycle import ensure_writable_directory
from services.common.retrain import request_retrain
from services.hotpath.stages import AppliedEvent
from services.learner import metrics
from services.learner.checkpoints import restore_evaluators, save_evaluators
from services.learner.labels import LabelTask, PendingLabelStore, ResolvedExample
from services.learner.settings import LearnerSettings
from services.learner.signals import (
    AFFINITY_MODEL,
    ONLINE_AFFINITY,
    ONLINE_CART_PROB,
    ONLINE_PURCHASE_PROB,
    SIGNAL_NAMES,
    signal_matrix,
)

__all__ = [
    "AFFINITY_MODEL",
    "LearningObserver",
    "ONLINE_AFFINITY",
    "ONLINE_CART_PROB",
    "ONLINE_PURCHASE_PROB",
    "SIGNAL_NAMES",
    "LearningStage",
    "pair_features",
]

logger = logging.getLogger(__name__)

LearningObserver = Callable[[str, OnlineExample, bool, PrequentialResult], None]
"""Called after each example is learned: model name, example, label, result."""


def pair_features(
    user_features: Mapping[str, float], item_features: Mapping[str, float]
) -> dict[str, float]:
    """Merge user and item features into one example's features.

    Names do not collide because the feature store prefixes them with their
    entity (``user_``, ``item_``, ``pair_``).
    """
    merged = dict(user_features)
    merged.update(item_features)
    return merged


def _fresh_evaluators(settings: LearnerSettings) -> dict[str, PrequentialEvaluator]:
    def evaluator(model: ConversionModel | AffinityModel) -> PrequentialEvaluator:
        monitor = DriftMonitor(settings.drift_delta, settings.drift_grace_period)
        return PrequentialEvaluator(model, settings.metrics_window, monitor)

    conversion = {
        task: evaluator(
            ConversionModel(
                task,
                learner=settings.conversion_learner,
                learning_rate=settings.conversion_learning_rate,
                seed=settings.seed,
            )
        )
        for task in (EventType.CART_ADD.value, EventType.PURCHASE.value)
    }
    affinity = AffinityModel(
        user_buckets=settings.affinity_user_buckets,
        item_buckets=settings.affinity_item_buckets,
        pair_buckets=settings.affinity_pair_buckets,
        n_factors=settings.affinity_factors,
        learning_rate=settings.affinity_learning_rate,
        negatives=settings.affinity_negatives,
        seed=settings.seed,
    )
    return {**conversion, AFFINITY_MODEL: evaluator(affinity)}


def _warn_on_changed_learner(
    evaluators: Mapping[str, PrequentialEvaluator], settings: LearnerSettings
) -> None:
    for name, evaluator in evaluators.items():
        model = evaluator.model
        if (
            isinstance(model, ConversionModel)
            and model.learner != settings.conversion_learner
        ):
            logger.warning(
                "restored model keeps its learner model=%s learner=%s configured=%s; "
                "delete the checkpoint to switch",
                name,
                model.learner,
                settings.conversion_learner,
            )


class LearningStage:
    """Per-event online learning with delayed labels, drift and checkpoints.

    Args:
        settings: the stage's settings.
        client: Redis connection for pending labels and retrain requests.
        clock: wall-clock Unix seconds, for checkpoint timing and drift times.
        has_checkpoint: whether the stage restores, locks and writes this
            instance's checkpoint file. With False the stage starts from fresh
            models and never reads, creates or locks anything in
            ``settings.checkpoint_dir``, as an offline evaluation beside a
            running hot path needs.
    """

    name = "learning"

    def __init__(
        self,
        settings: LearnerSettings,
        client: redis.Redis,
        clock: Callable[[], float] = time.time,
        *,
        has_checkpoint: bool = True,
    ) -> None:
        self._settings = settings
        self._has_checkpoint = has_checkpoint
        self._client = client
        self._clock = clock
        self._key = (
            settings.checkpoint_key.get_secret_value().encode()
            if settings.checkpoint_key is not None
            else None
        )

        self._store = PendingLabelStore(
            client,
            settings.redis.key_prefix,
            [
                LabelTask(
                    EventType.CART_ADD.value,
                    EventType.CLICK,
                    settings.cart_horizon_seconds,
                ),
                LabelTask(
                    EventType.PURCHASE.value,
                    EventType.CART_ADD,
                    settings.purchase_horizon_seconds,
                ),
            ],
            allowed_lateness_seconds=settings.allowed_lateness_seconds,
            dedupe_horizon_seconds=settings.dedupe_horizon_seconds,
            max_pending_per_pair=settings.max_pending_per_pair,
            max_pending_per_task=settings.max_pending_per_task,
            max_resolutions_per_batch=settings.max_resolutions_per_batch,
            max_resolutions_per_event=settings.max_resolutions_per_event,
        )

        # Each outcome starts at 0, so that the first failure is an increase.
        for outcome in ("written", "restored", "rejected", "failed"):
            metrics.CHECKPOINTS.labels(outcome=outcome)
        self._checkpoint_lock: IO[bytes] | None = None
        fresh = _fresh_evaluators(settings)
        restored = None
        if has_checkpoint:
            self._check_checkpoint_dir()
            if settings.is_enabled:
                self._checkpoint_lock = _claim_checkpoint(self.checkpoint_path)
            restored = restore_evaluators(
                self.checkpoint_path, self._key, expected_names=fresh
            )
        self.evaluators = restored or fresh
        if restored is not None:
            _warn_on_changed_learner(restored, settings)
        # A model's drift count starts at 0 for the same reason: without the
        # series, the first drift is no increase and the dashboard shows no data.
        for model_name in self.evaluators:
            metrics.DRIFTS.labels(model=model_name)
        self._last_checkpoint = clock()
        # Updates per model at the last checkpoint written or restored. Fresh
        # models count as saved, because writing them would only add noise.
        self._checkpointed_updates = self.model_updates
        self._watermarks: dict[int, float] = {}
        self._pending: dict[int, dict[str, int]] = {}
        self.observers: list[LearningObserver] = []

        logger.info(
            "learning stage ready is_enabled=%s has_checkpoint=%s restored=%s "
            "model_versions=%s",
            settings.is_enabled,
            has_checkpoint,
            restored is not None,
            self.model_versions,
        )

    def _check_checkpoint_dir(self) -> None:
        if self._settings.is_enabled:
            ensure_writable_directory(
                self._settings.checkpoint_dir, "CARTWHEEL_LEARNER_CHECKPOINT_DIR"
            )
        if self.checkpoint_path.is_dir():
            raise InvalidSettingsError(
                f"invalid setting CARTWHEEL_LEARNER_CHECKPOINT_DIR="
                f"{str(self._settings.checkpoint_dir)!r}: {self.checkpoint_path} is "
                "a directory, but the checkpoint file goes there; remove it or "
                "choose another folder"
            )

    @property
    def checkpoint_path(self) -> Path:
        """The file this instance checkpoints its models to."""
        return self._settings.checkpoint_dir / f"{self._settings.instance_name}.ckpt"

    @property
    def model_updates(self) -> dict[str, int]:
        """Examples each online model has learned, by model name.

        A model with few updates gives signals close to its starting point
        (0.5 for ALMA), which a scorer may want to weight down.
        """
        return {name: ev.model.n_updates for name, ev in self.evaluators.items()}

    @property
    def has_unsaved_learning(self) -> bool:
        """Whether the models learned since the checkpoint this stage wrote or restored.

        Fresh models count as saved, so a stage that learned nothing writes nothing.
        """
        return self.model_updates != self._checkpointed_updates

    @property
    def model_versions(self) -> dict[str, str]:
        """The ``model_version`` of each online model, by model name."""
        return {name: ev.model.model_version for name, ev in self.evaluators.items()}

    def process(self, batch: Sequence[AppliedEvent]) -> None:
        """Record labels, learn from fresh events and resolved examples.

        Raises:
            redis.RedisError: Redis failed; the consumer retries the batch, and
                whatever the failed call had applied is skipped as duplicate.
        """
        if not self._settings.is_enabled or not batch:
            return
        started = time.perf_counter()
        by_partition: dict[int, list[AppliedEvent]] = defaultdict(list)
        for applied in batch:
            by_partition[applied.partition].append(applied)

        for partition, applied_events in by_partition.items():
            outcome = self._store.apply(
                partition,
                [
                    (a.event, pair_features(a.user_features, a.item_features))
                    for a in applied_events
                ],
            )
            fresh = set(outcome.fresh_event_ids)
            metrics.DUPLICATES.inc(len(applied_events) - len(fresh))
            metrics.PENDING_DROPPED.inc(outcome.pending_dropped)
            metrics.PENDING_EVICTED.inc(outcome.pending_evicted)
            metrics.UNDECODABLE.inc(outcome.undecodable)
            self._watermarks[partition] = outcome.watermark
            self._pending[partition] = outcome.pending
            fresh_events = []
            for applied in applied_events:
                # discard() makes a duplicate within the batch learn once.
                if applied.event.event_id in fresh:
                    fresh.discard(applied.event.event_id)
                    fresh_events.append(applied)
            # Chunks let a user's repeated events in one batch teach the model
            # before the later ones are scored.
            chunk = self._settings.affinity_chunk_events
            for start in range(0, len(fresh_events), chunk):
                self._learn_affinity(fresh_events[start : start + chunk])
            for example in outcome.resolved:
                self._learn_conversion(example)

        self._export_metrics()
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        if (
            self._has_checkpoint
            and self.has_unsaved_learning
            and self._clock() - self._last_checkpoint
            >= self._settings.checkpoint_interval_seconds
        ):
            try:
                self.checkpoint()
            except OSError:
                # A checkpoint only bounds what a crash loses, so a full or
                # broken disk must not stop the slates. The next interval
                # tries again.
                self._last_checkpoint = self._clock()
                metrics.CHECKPOINTS.labels(outcome="failed").inc()
                logger.exception(
                    "checkpoint failed, learning goes on path=%s",
                    self.checkpoint_path,
                )

    def _learn_affinity(self, fresh: Sequence[AppliedEvent]) -> None:
        evaluator = self.evaluators[AFFINITY_MODEL]
        model = evaluator.model
        if not isinstance(model, AffinityModel):
            raise TypeError(
                f"the affinity model has type {type(model).__name__}; "
                "expected AffinityModel"
            )
        examples: list[OnlineExample] = []
        labels: list[bool] = []
        for applied in fresh:
            positive = OnlineExample(
                applied.event.user_id,
                applied.event.item_id,
                event_id=applied.event.event_id,
            )
            negatives = model.sample_negatives(positive)
            examples += [positive, *negatives]
            labels += [True] + [False] * len(negatives)
            model.remember_item(applied.event.item_id)

        results = evaluator.score_then_learn_many(examples, labels)
        self._record(AFFINITY_MODEL, examples, labels, results)

    def _learn_conversion(self, resolved: ResolvedExample) -> None:
        example = OnlineExample(
            resolved.user_id, resolved.item_id, resolved.features, resolved.event_id
        )
        result = self.evaluators[resolved.task].score_then_learn(
            example, resolved.label
        )
        self._record(resolved.task, [example], [resolved.label], [result])
        if result.is_drift and self._settings.request_retrain_on_drift:
            self._request_retrain(resolved.task)

    def _record(
        self,
        model_name: str,
        examples: Sequence[OnlineExample],
        labels: Sequence[bool],
        results: Sequence[PrequentialResult],
    ) -> None:
        positives = sum(labels)
        metrics.EXAMPLES.labels(model=model_name, label="1").inc(positives)
        metrics.EXAMPLES.labels(model=model_name, label="0").inc(
            len(labels) - positives
        )
        for observer in self.observers:
            for example, label, result in zip(examples, labels, results, strict=True):
                observer(model_name, example, label, result)
        for result in results:
            if result.is_drift:
                self._log_drift(model_name)

    def _log_drift(self, model_name: str) -> None:
        metrics.DRIFTS.labels(model=model_name).inc()
        logger.info(
            "drift detected model=%s model_version=%s roc_auc=%.4f log_loss=%.4f",
            model_name,
            self.evaluators[model_name].model.model_version,
            self.evaluators[model_name].roc_auc,
            self.evaluators[model_name].log_loss,
        )

    def _request_retrain(self, model_name: str) -> None:
        detected_at = datetime.fromtimestamp(self._clock(), UTC)
        request_retrain(
            self._client,
            self._settings.redis.key_prefix,
            reason=f"drift in the prequential loss of the online {model_name} model",
            detected_at=detected_at,
        )
        metrics.RETRAIN_REQUESTS.inc()

    def _export_metrics(self) -> None:
        for model_name, evaluator in self.evaluators.items():
            if evaluator.n_examples:
                metrics.ROLLING_ROC_AUC.labels(model=model_name).set(evaluator.roc_auc)
                metrics.ROLLING_LOG_LOSS.labels(model=model_name).set(
                    evaluator.log_loss
                )
        if self._watermarks:
            metrics.WATERMARK.set(max(self._watermarks.values()))
        totals: dict[str, int] = defaultdict(int)
        for counts in self._pending.values():
            for task, count in counts.items():
                totals[task] += count
        for task, total in totals.items():
            metrics.PENDING.labels(model=task).set(total)

    def signals(
        self,
        user_id: str,
        user_features: Mapping[str, float],
        candidates: Sequence[tuple[str, Mapping[str, float]]],
    ) -> list[dict[str, float]]:
        """Return the online signals of each candidate item for one user.

        Args:
            user_id: the user being scored.
            user_features: the user's current features.
            candidates: (item_id, item features) per candidate, in any order.

        Returns:
            One dict per candidate, in the candidates' order, with the keys
            ``ONLINE_CART_PROB``, ``ONLINE_PURCHASE_PROB`` and ``ONLINE_AFFINITY``.

        Only the features named in :mod:`schemas.features` are read, from the
        user's vector (``USER_FEATURES``) and each candidate's vector
        (``ITEM_FEATURES`` and ``PAIR_FEATURES``); other names are ignored.
        """
        matrix = self.signal_matrix([(user_id, user_features, candidates)])
        return [
            {
                ONLINE_CART_PROB: cart,
                ONLINE_PURCHASE_PROB: purchase,
                ONLINE_AFFINITY: aff,
            }
            for cart, purchase, aff in matrix.tolist()
        ]

    def signal_matrix(
        self,
        requests: Sequence[
            tuple[
                str,
                Mapping[str, float],
                Sequence[tuple[str, Mapping[str, float]]] | CandidateMatrix,
            ]
        ],
    ) -> np.ndarray:
        """Return the online signals of every candidate of several users at once.

        See :func:`services.learner.signals.signal_matrix`, which this applies
        to the stage's current models.
        """
        return signal_matrix(self.evaluators, requests)

    def checkpoint(self) -> None:
        """Write the models' state to this instance's checkpoint file.

        Raises:
            RuntimeError: the stage was built with ``has_checkpoint=False``.
        """
        if not self._has_checkpoint:
            raise RuntimeError(
                "this learning stage was built with has_checkpoint=False, so it "
                f"writes no checkpoint to {self.checkpoint_path}"
            )
        # LIMITATION(L-31): resolved examples leave Redis when they are learned,
        # so after a crash the model misses what it learned since this call.
        # LIMITATION(L-33): each instance checkpoints the models it trained on
        # its own partitions; instances never merge or exchange model state.
        updates = self.model_updates
        size = save_evaluators(self.checkpoint_path, self.evaluators, self._key)
        self._last_checkpoint = self._clock()
        self._checkpointed_updates = updates
        logger.info(
            "checkpoint written path=%s bytes=%d model_versions=%s",
            self.checkpoint_path,
            size,
            self.model_versions,
        )

    def close(self) -> None:
        """Write a final checkpoint if the models learned since the last one.

        Nothing is written with ``has_checkpoint=False`` or without new learning.
        Fresh models written on close would become the folder's newest ``*.ckpt``,
        which the API reads by default in place of a trained one.
        """
        if self._settings.is_enabled and self._has_checkpoint:
            if self.has_unsaved_learning:
                self.checkpoint()
            else:
                logger.info(
                    "no checkpoint written on close, because the models learned "
                    "nothing since start or the last checkpoint path=%s",
                    self.checkpoint_path,
                )
        if self._checkpoint_lock is not None:
            self._checkpoint_lock.close()


def _claim_checkpoint(path: Path) -> IO[bytes] | None:
    """Lock ``path``'s lock file for this process; warn when another holds it.

    Two processes with the same checkpoint file overwrite each other's
    learning, and each restores the other's models after a restart. The
    lock is advisory (flock), so it detects processes on this host and in
    containers that share the volume. Returns the open lock file, which
    holds the lock until it is closed, or None without the lock.
    """
    handle = open(path.with_name(f"{path.name}.lock"), "ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        logger.warning(
            "another process writes the learner checkpoint path=%s; give each "
            "hot-path process its own CARTWHEEL_LEARNER_INSTANCE_NAME",
            path,
        )
        handle.close()
        return None
    except OSError as exc:
        # Some shared volumes reject locks: an NFS mount whose lock manager
        # does not respond fails with ENOLCK. The lock only detects a second
        # process with this instance name, so the stage starts without it.
        logger.warning(
            "learner checkpoint not locked, so a second process with this "
            "CARTWHEEL_LEARNER_INSTANCE_NAME goes unnoticed path=%s error=%s",
            path,
            exc,
        )
        handle.close()
        return None
    return handle
