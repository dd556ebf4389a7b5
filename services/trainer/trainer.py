"""One refresh of the ranker: build rows, train a challenger, gate it, promote it.

A refresh takes the examples of the sliding window and splits off the newest
events as the held-out slice. It trains a challenger on the rest, evaluates
the challenger and the current champion on that same slice, and promotes the
challenger only if it is not worse (see ``services.trainer.promotion``).
A promoted challenger is saved in the registry, becomes the champion and is
announced on the ``models`` topic. A refresh is skipped when the window has
too few examples, or when the champion was trained on the same examples (same
event ids in the same order) by the same code and network sizes. Other
training settings, such as the number of epochs, take effect with the next
new example.

A challenger is not trained again on the examples of a rejected one while the
champion is the same, because training is seeded and it would be rejected
again. Such a refresh is skipped until a new example arrives or the champion
changes.

A promoted version whose announcement failed is announced again at the start
of each later refresh until the broker acknowledges it, so that a refresh
skipped on unchanged examples does not leave the scorers on the previous one.

A champion that fails to load (missing files, weights that fail their SHA-256,
an incompatible format, a champion file that names no version) is not
announced, and each challenger is judged alone, so one that reaches
``min_click_auc`` replaces it. The failure is logged once per version, without
a traceback, because the error names the file.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from models.errors import ArtifactError
from models.multitask.dataset import TrainingSet, build_training_set
from models.multitask.evaluation import evaluate
from models.multitask.features import FeatureSpec
from models.multitask.model import RankerModule
from models.multitask.train import (
    TrainProgress,
    TrainReport,
    fit_feature_spec,
    train_new_model,
)
from models.registry import (
    ArtifactMetadata,
    DataWindow,
    LoadedArtifact,
    ModelRegistry,
    code_version,
)
from schemas.training import TrainingExample
from services.common.errors import CartwheelError
from services.trainer.lock import TrainingLock
from services.trainer.metrics import (
    HOLDOUT_METRIC,
    TRAINING_ROWS,
    TRAINING_ROWS_PER_SECOND,
)
from services.trainer.promotion import PromotionDecision, decide_promotion
from services.trainer.settings import TrainerSettings

__all__ = [
    "Challenger",
    "PreparedData",
    "RefreshResult",
    "Trainer",
    "TrainingLockLostError",
    "TrainingStoppedError",
]

logger = logging.getLogger(__name__)

Announce = Callable[[ArtifactMetadata, str], object]


class TrainingLockLostError(CartwheelError):
    """Raised inside a refresh when another trainer took the training lock."""


class TrainingStoppedError(CartwheelError):
    """Raised inside a refresh when :meth:`Trainer.stop` was called."""


@dataclass(frozen=True)
class PreparedData:
    """The rows of one refresh: older events to train on, newest events held out."""

    train: TrainingSet
    holdout: TrainingSet
    window: DataWindow


@dataclass(frozen=True)
class Challenger:
    """A newly trained model with the spec it was trained with."""

    model: RankerModule
    spec: FeatureSpec
    report: TrainReport


@dataclass(frozen=True)
class _Champion:
    """The registry's champion as the trainer found it."""

    # None before the first promotion.
    version: str | None
    # None when there is no champion or it failed to load.
    artifact: LoadedArtifact | None

    @property
    def is_unloadable(self) -> bool:
        return self.version is not None and self.artifact is None


@dataclass(frozen=True)
class _Rejection:
    """The examples of a rejected challenger and the champion it was judged against."""

    examples_sha256: str | None
    champion_version: str | None
    is_champion_unloadable: bool


@dataclass(frozen=True)
class RefreshResult:
    """Outcome of one refresh, with the metrics it was decided on."""

    outcome: Literal["promoted", "rejected", "skipped"]
    reason: str
    decision: PromotionDecision | None = None
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] | None = None
    model_version: str | None = None


class Trainer:
    """Runs refreshes against one registry.

    Args:
        settings: trainer settings.
        registry: where artifacts and the champion pointer live.
        announce: called with the metadata and artifact path of a promoted
            version; None skips announcing (offline use).
        lock: the training lock, checked during training; None when the
            caller needs no coordination.
    """

    def __init__(
        self,
        settings: TrainerSettings,
        registry: ModelRegistry,
        announce: Announce | None = None,
        lock: TrainingLock | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._announce = announce
        self._lock = lock
        self._stopping = threading.Event()
        # Champion versions whose load failure was logged, so that each
        # refresh does not repeat it.
        self._unloadable_versions: set[str] = set()
        # Settings and code do not change in a process, so the same examples
        # and champion would give the same rejection.
        self._last_rejection: _Rejection | None = None
        # The promoted version whose announcement failed, if any.
        self._unannounced: str | None = None

    def announce_champion(self) -> str | None:
        """Verify the registry's champion, announce it again and return its version.

        The compacted models topic keeps the latest announcement, unless the
        broker lost its data, as the local Tansu broker does on a restart.
        The scorers would then rank with the heuristic until the next
        promotion. A scorer ignores an announcement of the version it runs.
        The champion is loaded and verified as a scorer loads it, and one that
        fails is not announced, since every scorer would fail on it too.

        Returns:
            The champion's version; None when there is no champion, it fails
            to load, or there is no ``announce``.

        Raises:
            InfrastructureError: the broker did not acknowledge it in time.
        """
        if self._announce is None:
            return None
        artifact = self._load_champion().artifact
        if artifact is None:
            return None
        self._send_announcement(artifact.metadata, artifact.path)
        return artifact.metadata.model_version

    def stop(self) -> None:
        """Stop training after its current batch, without promoting.

        The flag stays set, so later refreshes stop the same way. Safe to call
        from a signal handler. A refresh already past its training finishes
        and may still promote.
        """
        self._stopping.set()

    def refresh(
        self, examples: Sequence[TrainingExample], reason: str
    ) -> RefreshResult:
        """Train on the examples and promote the challenger if it is not worse.

        Raises:
            InfrastructureError: the broker did not acknowledge an announcement
                in time. A promotion stays in the registry and is announced
                again by the next refresh.
        """
        logger.info("refresh started reason=%s examples=%s", reason, len(examples))
        if self._unannounced is not None:
            self._announce_again(self._unannounced)
        # Loaded once per refresh, and only when there are enough examples to
        # train: the skip check and the judgement share it.
        champion = (
            self._load_champion()
            if len(examples) >= self._settings.min_examples
            else _Champion(None, None)
        )
        skipped = self._skip_repeated_training(champion, examples)
        if skipped is not None:
            return skipped
        prepared = self.prepare(examples)
        if prepared is None:
            return RefreshResult(
                "skipped",
                f"{len(examples)} examples, fewer than {self._settings.min_examples}",
            )
        challenger = self.train_challenger(prepared.train)
        result = self._judge(challenger, prepared, champion)
        if result.outcome == "rejected":
            self._last_rejection = _Rejection(
                prepared.window.examples_sha256,
                champion.version,
                champion.is_unloadable,
            )
        return result

    def _skip_repeated_training(
        self, champion: _Champion, examples: Sequence[TrainingExample]
    ) -> RefreshResult | None:
        """Return a skipped result when training now would repeat earlier work."""
        if champion.version is None and self._last_rejection is None:
            return None
        digest = _examples_digest(examples)
        if champion.artifact is not None and self._would_repeat(
            champion.artifact.metadata, digest
        ):
            # Training is seeded, so the same examples, code and network would
            # give the same weights under a new version, and every process
            # would swap to it. A process that failed to load the champion
            # tries it again on its own, up to CARTWHEEL_SCORER_MODEL_LOAD_ATTEMPTS
            # times, and again after a trainer starts and announces it once more.
            logger.info(
                "refresh skipped, no new examples since the champion "
                "examples=%s window_end=%s champion=%s",
                len(examples),
                champion.artifact.metadata.data_window.end,
                champion.version,
            )
            return RefreshResult(
                "skipped",
                f"the champion was trained on these {len(examples)} examples",
            )
        current = _Rejection(digest, champion.version, champion.is_unloadable)
        if current != self._last_rejection:
            return None
        logger.info(
            "refresh skipped, a challenger trained on these examples was rejected "
            "against the same champion examples=%s champion=%s",
            len(examples),
            champion.version,
        )
        return RefreshResult(
            "skipped",
            f"a challenger trained on these {len(examples)} examples was rejected "
            "against the same champion",
        )

    def prepare(self, examples: Sequence[TrainingExample]) -> PreparedData | None:
        """Build rows and split them by time; None when examples are too few."""
        if len(examples) < self._settings.min_examples:
            logger.info(
                "refresh skipped examples=%s min_examples=%s",
                len(examples),
                self._settings.min_examples,
            )
            return None
        started = time.perf_counter()
        dataset = build_training_set(examples, self._settings.dataset_config())
        train, holdout = dataset.split_by_time(self._settings.holdout_fraction)
        times = [example.event_time for example in examples]
        window = DataWindow(
            start=min(times),
            end=max(times),
            examples=len(examples),
            rows=len(train),
            examples_sha256=_examples_digest(examples),
        )
        logger.info(
            "training rows built rows=%s train_rows=%s holdout_rows=%s seconds=%.2f",
            len(dataset),
            len(train),
            len(holdout),
            time.perf_counter() - started,
        )
        return PreparedData(train, holdout, window)

    def train_challenger(self, train: TrainingSet) -> Challenger:
        """Fit a feature spec and train a multi-task model on the training rows.

        Raises:
            TrainingLockLostError: another trainer took the lock meanwhile.
        """
        spec = fit_feature_spec(train)
        model, report = train_new_model(
            spec,
            self._settings.network_config(),
            train,
            self._settings.train_config(),
            on_progress=self._on_progress,
            on_batch=self._check_still_training,
        )
        TRAINING_ROWS.set(report.rows)
        TRAINING_ROWS_PER_SECOND.set(report.rows_per_second)
        logger.info(
            "challenger trained rows=%s epochs=%s seconds=%.2f rows_per_second=%.0f",
            report.rows,
            report.epochs,
            report.seconds,
            report.rows_per_second,
        )
        return Challenger(model, spec, report)

    def judge(self, challenger: Challenger, prepared: PreparedData) -> RefreshResult:
        """Evaluate challenger and champion on the held-out rows, then act."""
        return self._judge(challenger, prepared, self._load_champion())

    def _judge(
        self,
        challenger: Challenger,
        prepared: PreparedData,
        champion: _Champion,
    ) -> RefreshResult:
        challenger_metrics = evaluate(
            challenger.model, challenger.spec, prepared.holdout
        )
        champion_metrics = _champion_metrics(champion.artifact, prepared.holdout)
        for name, value in challenger_metrics.items():
            HOLDOUT_METRIC.labels("challenger", name).set(value)
        for name, value in (champion_metrics or {}).items():
            HOLDOUT_METRIC.labels("champion", name).set(value)
        decision = decide_promotion(
            challenger_metrics,
            champion_metrics,
            tolerance=self._settings.promotion_tolerance,
            min_click_auc=self._settings.min_click_auc,
        )
        if not decision.is_promoted:
            _log_rejection(champion, decision)
            return RefreshResult(
                "rejected",
                decision.describe(),
                decision,
                challenger_metrics,
                champion_metrics,
            )
        metadata = self._registry.save(
            self._settings.model_name,
            challenger.model,
            challenger.spec,
            prepared.window,
            _artifact_metrics(challenger_metrics, champion_metrics),
        )
        self._registry.promote(metadata)
        logger.info(
            "challenger promoted model_version=%s reasons=%s",
            metadata.model_version,
            decision.describe(),
        )
        try:
            self._registry.prune(
                self._settings.model_name, self._settings.kept_versions
            )
        except OSError:
            # A version left behind costs disk, not correctness.
            logger.exception(
                "deleting old artifacts failed model=%s", self._settings.model_name
            )
        self._send_announcement(
            metadata, self._registry.path_of(metadata.model_version)
        )
        return RefreshResult(
            "promoted",
            decision.describe(),
            decision,
            challenger_metrics,
            champion_metrics,
            metadata.model_version,
        )

    def _send_announcement(self, metadata: ArtifactMetadata, path: Path) -> None:
        """Announce a version; remember it until the broker acknowledges it."""
        if self._announce is None:
            return
        self._unannounced = metadata.model_version
        self._announce(metadata, str(path.resolve()))
        self._unannounced = None

    def _announce_again(self, version: str) -> None:
        """Announce the champion whose announcement failed, if it still is one."""
        champion = self._load_champion()
        if champion.version != version or champion.artifact is None:
            # Another trainer promoted and announced since, or the champion
            # fails to load now and must not be announced.
            self._unannounced = None
            return
        logger.info(
            "announcing the champion again, its announcement failed model_version=%s",
            version,
        )
        self._send_announcement(champion.artifact.metadata, champion.artifact.path)

    def _load_champion(self) -> _Champion:
        """Load and verify the champion. Its artifact is None when loading fails.

        A champion that fails to load is replaced even on unchanged data, and
        the challenger is judged alone.
        """
        name = self._settings.model_name
        try:
            version = self._registry.champion_version(name)
        except ArtifactError as exc:
            # Without a version, the champion file stands for the champion, so
            # the next promotion, which rewrites that file, replaces it.
            version = str(self._registry.champion_path(name))
            self._warn_unloadable(version, exc)
            return _Champion(version, None)
        if version is None:
            return _Champion(None, None)
        try:
            artifact = self._registry.load(version)
        except ArtifactError as exc:
            self._warn_unloadable(version, exc)
            return _Champion(version, None)
        self._unloadable_versions.discard(version)
        return _Champion(version, artifact)

    def _warn_unloadable(self, version: str, exc: ArtifactError) -> None:
        """Log a champion's load failure once per version."""
        if version in self._unloadable_versions:
            return
        self._unloadable_versions.add(version)
        # The error names the file, the failed check and the repair, and a
        # traceback would add only the trainer's own call stack. The line adds
        # what the trainer does until the champion loads.
        logger.warning(
            "champion failed to load, it is not announced and challengers are "
            "judged alone model_version=%s error=%s; until it loads, the first "
            "challenger whose click AUC reaches CARTWHEEL_TRAINER_MIN_CLICK_AUC "
            "replaces it",
            version,
            exc,
        )

    def _would_repeat(self, champion: ArtifactMetadata, examples_sha256: str) -> bool:
        """Return whether training now would repeat the champion's training."""
        return (
            champion.data_window.examples_sha256 == examples_sha256
            and champion.code_version == code_version()
            and champion.architecture == self._settings.network_config().to_dict()
        )

    def _on_progress(self, progress: TrainProgress) -> None:
        logger.info(
            "training progress epoch=%s batch=%s/%s loss=%.4f",
            progress.epoch,
            progress.batch,
            progress.batches_per_epoch,
            progress.loss,
        )

    def _check_still_training(self) -> None:
        # Called after every batch, because progress reports come every 50
        # batches, and 50 batches took 8 s in a demo on a busy 2-core machine.
        if self._stopping.is_set():
            raise TrainingStoppedError(
                "training stopped because the trainer is shutting down; "
                "this refresh stops without promoting"
            )
        if self._lock is not None and self._lock.is_lost:
            raise TrainingLockLostError(
                f"training lock {self._lock.key!r} was taken by another trainer; "
                "this refresh stops without promoting"
            )


def _examples_digest(examples: Sequence[TrainingExample]) -> str:
    """Return the SHA-256 of the examples' event ids, in order."""
    digest = hashlib.sha256()
    for example in examples:
        event_id = example.event_id.encode()
        # The length prefix keeps ("ab", "c") apart from ("a", "bc").
        digest.update(len(event_id).to_bytes(4, "big") + event_id)
    return digest.hexdigest()


def _log_rejection(champion: _Champion, decision: PromotionDecision) -> None:
    if champion.is_unloadable:
        logger.warning(
            "challenger rejected, the champion still fails to load "
            "model_version=%s reasons=%s",
            champion.version,
            decision.describe(),
        )
    elif champion.version is None:
        logger.warning(
            "challenger rejected, no champion yet reasons=%s", decision.describe()
        )
    else:
        logger.warning(
            "challenger rejected, champion kept model_version=%s reasons=%s",
            champion.version,
            decision.describe(),
        )


def _champion_metrics(
    champion: LoadedArtifact | None, holdout: TrainingSet
) -> dict[str, float] | None:
    if champion is None:
        return None
    metrics = evaluate(champion.model, champion.spec, holdout)
    logger.info(
        "champion evaluated model_version=%s metrics=%s",
        champion.metadata.model_version,
        _rounded(metrics),
    )
    return metrics


def _artifact_metrics(
    challenger: dict[str, float], champion: dict[str, float] | None
) -> dict[str, float]:
    metrics = {f"holdout_{name}": value for name, value in challenger.items()}
    for name, value in (champion or {}).items():
        metrics[f"champion_holdout_{name}"] = value
    return metrics


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 4) for name, value in metrics.items()}
