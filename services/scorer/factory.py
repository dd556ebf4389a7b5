"""The hot path's entry points to the scoring stage.

The hot path builds its stages from ``module:function`` names
(``CARTWHEEL_HOTPATH_STAGES``), and each function takes the hot-path settings
and its Redis client. Scoring needs the learning stage's online signals, so
``build_learning_and_scoring`` builds both and runs them as one stage, in
order; ``build_scoring`` runs scoring without online signals.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import redis
import torch
from confluent_kafka import Producer
from pydantic_settings import BaseSettings

from services.common.kafka import producer_config
from services.common.model_watcher import ModelWatcher
from services.common.settings import load_settings, masked_settings
from services.hotpath.settings import HotPathSettings
from services.hotpath.stages import AppliedEvent, Stage
from services.learner.factory import build_learning_stage
from services.learner.settings import LearnerSettings
from services.scorer.protocols import SignalSource
from services.scorer.settings import ScorerSettings
from services.scorer.stage import ScoringStage, build_scoring_stage

__all__ = ["STAGE_SETTINGS", "build_learning_and_scoring", "build_scoring"]

logger = logging.getLogger(__name__)

_MODEL_NAME = "ranker"

# The settings classes each factory loads, so that the hot path checks their
# variables together with its own before it builds any stage.
STAGE_SETTINGS: dict[str, tuple[type[BaseSettings], ...]] = {
    "build_learning_and_scoring": (LearnerSettings, ScorerSettings),
    "build_scoring": (ScorerSettings,),
}
# LIMITATION(L-57): the ranker's thread count is fixed, because a setting would
# also need the generated configuration page regenerated.
_TORCH_THREADS = 1


class _StagesInOrder:
    """Several stages run as one, in order; closes them in reverse order."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self._stages = list(stages)
        self.name = "+".join(stage.name for stage in stages)

    def process(self, batch: Sequence[AppliedEvent]) -> None:
        for stage in self._stages:
            stage.process(batch)

    def close(self) -> None:
        _close_in_reverse(self._stages)

    def start(self) -> None:
        for stage in self._stages:
            start = getattr(stage, "start", None)
            if callable(start):
                start()

    def stop(self) -> None:
        for stage in self._stages:
            stop = getattr(stage, "stop", None)
            if callable(stop):
                stop()

    def poll(self) -> None:
        for stage in self._stages:
            poll = getattr(stage, "poll", None)
            if callable(poll):
                poll()

    def assigned(self, resume_offsets: Mapping[int, int]) -> None:
        # Without this the scoring stage behind the learning stage never warms
        # its session index. A failed stage only starts with less state, so the
        # stages after it are still called.
        for stage in self._stages:
            assigned = getattr(stage, "assigned", None)
            if not callable(assigned):
                continue
            try:
                assigned(resume_offsets)
            except Exception:
                logger.exception(
                    "stage failed to prepare assigned partitions stage=%s",
                    stage.name,
                )


def _close_in_reverse(stages: Sequence[Stage]) -> None:
    """Close the last stage first, and every earlier one even when a close fails.

    The learning stage then still writes its checkpoint when the scoring
    stage cannot deliver its last slates. A failure is raised after the
    earlier stages closed; a later failure carries it as its context.
    """
    if not stages:
        return
    try:
        stages[-1].close()
    finally:
        _close_in_reverse(stages[:-1])


def build_scoring(
    hotpath_settings: HotPathSettings,
    client: redis.Redis,
    signals: SignalSource | None = None,
) -> ScoringStage:
    """Build the scoring stage from ``CARTWHEEL_SCORER_*`` and the hot path's blocks.

    The ranker follows the ``models`` topic from the stage's ``start``; until
    a model is announced the heuristic ranker scores.

    Raises:
        InvalidSettingsError: a ``CARTWHEEL_SCORER_*`` variable is invalid.
    """
    settings = load_settings(
        ScorerSettings,
        kafka=hotpath_settings.kafka,
        redis=hotpath_settings.redis,
        topics=hotpath_settings.topics,
    )
    logger.info("scorer settings %s", masked_settings(settings))
    # One PyTorch thread: with two, a ranker call on a wave took 2 to 28 ms
    # instead of about 2 ms while other processes held the second core.
    torch.set_num_threads(_TORCH_THREADS)
    watcher = ModelWatcher(
        settings.kafka,
        settings.topics.models,
        _MODEL_NAME,
        load_timeout_seconds=settings.model_load_timeout_seconds,
        retry_seconds=settings.model_retry_seconds,
        load_attempts=settings.model_load_attempts,
    )
    # The hot path polls the stage on every loop, so librdkafka's lines can go
    # through logging.
    producer = Producer(
        producer_config(
            settings.kafka,
            linger_ms=settings.producer_linger_ms,
            is_polled_steadily=True,
        )
    )
    if signals is None:
        # LIMITATION(L-52): without the learning stage, slates rank without the
        # River signals; use build_learning_and_scoring to get them.
        logger.warning("scoring without online-learning signals (L-52)")
    return build_scoring_stage(
        settings, client, producer, models=watcher, signals=signals
    )


def build_learning_and_scoring(
    hotpath_settings: HotPathSettings, client: redis.Redis
) -> Stage:
    """Build the learning and scoring stages, run in that order as one stage."""
    learning = build_learning_stage(hotpath_settings, client)
    scoring = build_scoring(hotpath_settings, client, signals=learning)
    return _StagesInOrder([learning, scoring])
