"""How the API words a message that the broker did not acknowledge."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.api.delivery import delivery_state

_TIMED_OUT = KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT))
_REFUSED = KafkaException(
    KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "Broker: Topic authorization")
)


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (_TIMED_OUT, "not confirmed, may or may not be stored"),
        (_REFUSED, "not confirmed, may or may not be stored"),
        (BufferError("Local: Queue full"), "not sent"),
    ],
    ids=["timed_out", "refused", "queue_full"],
)
def test_delivery_state_says_whether_message_may_be_stored(
    error: KafkaException | BufferError, state: str
) -> None:
    assert delivery_state(error) == state
