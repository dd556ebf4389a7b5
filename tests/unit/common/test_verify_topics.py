"""verify_topics when no broker listens at the bootstrap address."""

from __future__ import annotations

import pytest

from services.common.errors import BrokerUnreachableError
from services.common.kafka import TopicSpec, verify_topics
from tests.librdkafka_logs import unreachable_kafka


def test_verify_topics_refused_connection_names_address() -> None:
    kafka = unreachable_kafka()

    with pytest.raises(BrokerUnreachableError) as caught:
        verify_topics(kafka, [TopicSpec("events", 6)])

    assert str(caught.value).startswith(f"no Kafka broker listens at {kafka.bootstrap}")
    assert "CARTWHEEL_KAFKA_BOOTSTRAP" in str(caught.value)
