"""The hot path's entry point to the learning stage.

Set ``services.learner.factory:build_learning_stage`` in the hot path's stage
list to run it. The hot path builds its stages from ``module:function`` names
(``CARTWHEEL_HOTPATH_STAGES``), and each function takes the hot-path settings
and its Redis client.
"""

from __future__ import annotations

import logging

import redis

from services.common.settings import load_settings, masked_settings
from services.hotpath.settings import HotPathSettings
from services.learner.settings import LearnerSettings
from services.learner.stage import LearningStage

__all__ = ["build_learning_stage"]

logger = logging.getLogger(__name__)


def build_learning_stage(
    hotpath_settings: HotPathSettings, client: redis.Redis
) -> LearningStage:
    """Build the learning stage from ``CARTWHEEL_LEARNER_*`` on the hot path's Redis.

    The stage uses the hot path's Redis block rather than its own, so pending
    labels and features always share one key prefix.

    Raises:
        InvalidSettingsError: a ``CARTWHEEL_LEARNER_*`` variable is invalid.
    """
    settings = load_settings(LearnerSettings, redis=hotpath_settings.redis)
    logger.info("learner settings %s", masked_settings(settings))
    if settings.checkpoint_key is None:
        # LIMITATION(L-36): without a key, checkpoints are not signed.
        logger.warning(
            "no CARTWHEEL_LEARNER_CHECKPOINT_KEY set; checkpoints carry a SHA-256 "
            "digest, which detects corruption but not tampering (L-36)"
        )
    return LearningStage(settings, client)
