"""How the API words a message that the broker did not acknowledge."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.api.delivery import dead_letter_unconfirmed, delivery_state

_TIMED_OUT = KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT))
_REFUSED = KafkaException(
    KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "Broker: Topic authorization")
)


def test_dead_letter_unconfirmed_in_time_stays_queued() -> None:
    detail = dead_letter_unconfirmed(_TIMED_OUT, 5.0)

    assert detail == (
        "the broker did not confirm the dead letter within 5 s, so it may or may "
        "not be stored; the API's producer keeps it queued and keeps trying to "
        "send it"
    )


def test_dead_letter_refused_names_broker_error() -> None:
    detail = dead_letter_unconfirmed(_REFUSED, 5.0)

    assert detail.startswith("the broker did not confirm the dead letter (")
    assert "Broker: Topic authorization" in detail
    assert detail.endswith("so it may or may not be stored")


def test_dead_letter_behind_full_queue_was_not_sent() -> None:
    detail = dead_letter_unconfirmed(BufferError("Local: Queue full"), 5.0)

    assert detail == "the API's producer queue is full, so the dead letter was not sent"


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
