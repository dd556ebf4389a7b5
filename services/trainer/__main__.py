"""Run the trainer: ``python -m services.trainer``.

Load settings, configure logging and PyTorch threads, serve /metrics, then
read training examples and refresh the ranker until SIGINT or SIGTERM.
"""

from __future__ import annotations

import logging
import sys

import redis
import torch

from models.registry import ModelRegistry
from services.common.entrypoint import parse_service_arguments, run_entry_point
from services.common.errors import InfrastructureError
from services.common.kafka import TopicSpec, verify_topics
from services.common.lifecycle import (
    ensure_writable_directory,
    serve_metrics,
    stop_on_signals,
)
from services.common.logging import configure_logging
from services.common.redis_check import verify_redis
from services.common.settings import load_settings, masked_settings
from services.trainer.announcer import ModelAnnouncer
from services.trainer.lock import TrainingLock
from services.trainer.reader import ExampleReader
from services.trainer.service import TrainerService
from services.trainer.settings import TrainerSettings
from services.trainer.trainer import Trainer
from services.trainer.window import ExampleWindow

__all__ = ["build_service", "main", "run"]

logger = logging.getLogger(__name__)


def build_service(settings: TrainerSettings) -> TrainerService:
    """Connect to Kafka and Redis and build the trainer loop."""
    topics = settings.topics
    verify_topics(
        settings.kafka,
        [
            TopicSpec(topics.training_examples, topics.partitions),
            TopicSpec(topics.models, 1, is_compacted=True, has_fixed_count=True),
        ],
    )
    verify_redis(settings.redis)
    client = redis.Redis.from_url(
        settings.redis.url.get_secret_value(), socket_timeout=10.0
    )
    lock = TrainingLock(
        client,
        f"{settings.redis.key_prefix}:trainer:lock:{settings.model_name}",
        settings.lock_ttl_seconds,
    )
    ensure_writable_directory(settings.registry_dir, "CARTWHEEL_TRAINER_REGISTRY_DIR")
    announcer = ModelAnnouncer(settings.kafka, topics.models)
    trainer = Trainer(
        settings, ModelRegistry(settings.registry_dir), announcer.announce, lock
    )
    _announce_champion(trainer)
    reader = ExampleReader(
        settings.kafka,
        topics.training_examples,
        settings.window_seconds,
        group_id=f"cartwheel-trainer-{settings.model_name}",
    )
    window = ExampleWindow(settings.window_seconds, settings.max_window_examples)
    return TrainerService(
        trainer,
        reader,
        window,
        lock,
        client,
        settings.redis.key_prefix,
        refresh_interval_seconds=settings.refresh_interval_seconds,
        retrain_poll_seconds=settings.retrain_poll_seconds,
        poll_timeout_seconds=settings.poll_timeout_seconds,
        announcer=announcer,
    )


def _announce_champion(trainer: Trainer) -> None:
    """Announce the champion at start, so a models topic that lost it gets it back.

    A champion that fails to load is reported by the trainer and not announced.
    """
    try:
        version = trainer.announce_champion()
    except InfrastructureError as exc:
        # The champion stays announced where the topic still contains it, and
        # the trainer's next refresh announces it again.
        logger.warning("champion not announced at start error=%s", exc)
        return
    if version is not None:
        logger.info("champion announced at start model_version=%s", version)


def run(settings: TrainerSettings) -> None:
    """Serve /metrics and run the trainer until SIGINT or SIGTERM."""
    logger.info("trainer starting settings=%s", masked_settings(settings))
    # The trainer shares its machine with the hot path, so it uses a fixed
    # number of threads instead of PyTorch's default of one per core.
    torch.set_num_threads(settings.torch_threads)
    serve_metrics(settings, settings.metrics_port, settings.metrics_host)
    service = build_service(settings)

    stop_on_signals(service.stop)
    service.run()


def main() -> None:
    """Load the settings from the environment and run the trainer."""
    settings = load_settings(TrainerSettings)
    configure_logging(settings.log_level)
    run(settings)


if __name__ == "__main__":
    parse_service_arguments("services.trainer", __doc__)
    sys.exit(run_entry_point("services.trainer", main))
