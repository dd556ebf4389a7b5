"""Create every Cartwheel topic under names that no other test uses."""

from __future__ import annotations

import uuid

from services.common.kafka import create_topics, standard_topics
from services.common.settings import KafkaSettings, TopicSettings

__all__ = ["make_topics"]


def make_topics(kafka: KafkaSettings, partitions: int = 2) -> TopicSettings:
    """Create the standard topics with a fresh name stem and return their settings."""
    stem = uuid.uuid4().hex[:10]
    topics = TopicSettings(
        events=f"events-{stem}",
        dead_letters=f"dlq-{stem}",
        recommendations_prefix=f"recommendations-{stem}",
        training_examples=f"examples-{stem}",
        catalog=f"catalog-{stem}",
        models=f"models-{stem}",
        partitions=partitions,
    )
    create_topics(kafka, standard_topics(topics))
    return topics
