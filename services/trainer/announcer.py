"""Announce a promoted model version on the compacted ``models`` topic."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from models.registry import ArtifactMetadata, ModelAnnouncement
from services.common.errors import InfrastructureError
from services.common.kafka import producer_config
from services.common.settings import KafkaSettings

__all__ = ["ModelAnnouncer"]

logger = logging.getLogger(__name__)

_DELIVERY_TIMEOUT_SECONDS = 30.0


class ModelAnnouncer:
    """Publish ``ModelAnnouncement`` records keyed by model name.

    librdkafka's log lines reach the ``librdkafka`` logger only when the
    producer is polled, so the owner calls :meth:`poll` between announcements.

    Args:
        kafka: connection settings.
        topic: the models topic.
    """

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.topic = topic
        # No batching delay: announcements are rare and scorers should see them now.
        self._producer = Producer(
            producer_config(kafka, linger_ms=0, is_polled_steadily=True)
        )

    def announce(
        self, metadata: ArtifactMetadata, artifact_uri: str
    ) -> ModelAnnouncement:
        """Send one announcement and wait for the broker to acknowledge it.

        Raises:
            InfrastructureError: the broker did not acknowledge it in time.
        """
        announcement = ModelAnnouncement(
            model_name=metadata.model_name,
            model_version=metadata.model_version,
            artifact_uri=artifact_uri,
            announced_at=datetime.now(UTC),
        )
        errors: list[Any] = []

        def _on_delivery(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                errors.append(error)

        self._producer.produce(
            self.topic,
            key=announcement.model_name.encode(),
            value=announcement.model_dump_json().encode(),
            on_delivery=_on_delivery,
        )
        remaining = self._producer.flush(_DELIVERY_TIMEOUT_SECONDS)
        if remaining or errors:
            cause = errors[0] if errors else "delivery timed out"
            raise InfrastructureError(
                f"announcing model_version={announcement.model_version!r} on topic "
                f"{self.topic!r} failed: {cause}; check the broker. The artifact "
                "stays promoted in the registry, and the trainer's next refresh "
                "announces it again"
            )
        logger.info(
            "model announced topic=%s model_version=%s uri=%s",
            self.topic,
            announcement.model_version,
            artifact_uri,
        )
        return announcement

    def poll(self, timeout_seconds: float = 0.0) -> None:
        """Pass librdkafka's queued log lines to the logger and serve late reports.

        Args:
            timeout_seconds: how long to wait for a line when none is queued.
        """
        self._producer.poll(timeout_seconds)

    def close(self) -> None:
        """Flush pending announcements."""
        self._producer.flush(_DELIVERY_TIMEOUT_SECONDS)
