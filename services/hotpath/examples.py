"""The training example that the hot path emits for every applied event."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, Message, Producer

from schemas.training import TrainingExample
from services.common.kafka import raise_if_fatal
from services.common.redis_features import AppliedResult
from services.hotpath import metrics

__all__ = ["ExampleWriter", "training_example"]

logger = logging.getLogger(__name__)


class ExampleWriter:
    """Produces the training example of each applied event, keyed by user id.

    Args:
        producer: the hot path's producer; its flush confirms the examples.
        topic: the training-examples topic.
    """

    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    def send(self, result: AppliedResult) -> None:
        """Queue the example of ``result``, waiting while the producer queue is full."""
        value = training_example(result).model_dump_json().encode()
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    key=result.event.user_id.encode(),
                    value=value,
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:
                self._producer.poll(0.1)
        metrics.TRAINING_EXAMPLES.inc()

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            logger.error(
                "training example delivery failed topic=%s error=%s",
                message.topic(),
                error,
            )
            raise_if_fatal(error)


def training_example(result: AppliedResult) -> TrainingExample:
    """Build the example of one applied event from its before-snapshot.

    The features are those from before the event, as the scorer read them
    when the event arrived. The event's own price is used when it has one,
    and the catalog's price otherwise.
    """
    event = result.event
    attributes = result.item_attributes
    price = event.price
    if price is None and attributes is not None:
        price = attributes.price
    return TrainingExample(
        event_id=event.event_id,
        event_type=event.event_type,
        user_id=event.user_id,
        item_id=event.item_id,
        session_id=event.session_id,
        event_time=event.event_time,
        category_id=attributes.category_id if attributes else None,
        brand=attributes.brand if attributes else None,
        price=price,
        user_features=result.user_features,
        item_features=result.item_features,
    )
