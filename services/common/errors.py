"""Errors raised by the services' shared code.

::

    CartwheelError
    ├── InvalidSettingsError      an environment variable contains an invalid value
    ├── InfrastructureError       a broker or redis-server cannot be started or reached
    │   ├── BrokerUnreachableError    no Kafka broker responded at the bootstrap address
    │   └── BrokerGoneError           a stopping service gave up waiting for a broker
    ├── TopicMissingError         a topic is missing or has the wrong partition count
    ├── MessageDeliveryError      the broker did not acknowledge produced messages
    │   └── DeadLetterDeliveryError   a dead letter could not be delivered
    ├── InvalidEventError         an event refused by the producer library
    └── EventDeliveryError        the broker did not acknowledge an event
"""

from __future__ import annotations

from schemas.errors import CartwheelError
from schemas.validation import Rejection

__all__ = [
    "BrokerGoneError",
    "BrokerUnreachableError",
    "CartwheelError",
    "CommitPendingError",
    "DeadLetterDeliveryError",
    "EventDeliveryError",
    "InfrastructureError",
    "InvalidEventError",
    "InvalidSettingsError",
    "MessageDeliveryError",
    "TopicMissingError",
]


class InvalidSettingsError(CartwheelError):
    """Raised at startup when an environment variable contains an invalid value."""


class InfrastructureError(CartwheelError):
    """Raised when a broker or redis-server cannot be started, reached or stopped."""


class BrokerUnreachableError(InfrastructureError):
    """Raised when no Kafka broker responds at the bootstrap address in time."""


class BrokerGoneError(InfrastructureError):
    """Raised when a stopping service gives up a wait for the broker.

    Either no bootstrap server accepted a TCP connection, or the stop had
    already waited as long as it may. The messages still queued were not
    delivered, and the offsets they belong to must not be committed.
    """


class CommitPendingError(BrokerGoneError):
    """Raised when a stopping service gives up an offset commit that still waits.

    The commit may still reach the broker later. librdkafka's consumer
    ``close`` waits for outstanding commits without a time limit, so a
    consumer whose commit was given up must be left open until the process
    exits.
    """


class TopicMissingError(CartwheelError):
    """Raised when a topic that a service needs does not exist or is misconfigured."""


class MessageDeliveryError(CartwheelError):
    """Raised when produced messages were not acknowledged by the broker.

    It reports an outage, not a fault of the code: the offsets of the input
    that produced the messages must not be committed, and the work is retried.
    """


class DeadLetterDeliveryError(MessageDeliveryError):
    """Raised when a dead letter was not delivered, so offsets must not be committed."""


class InvalidEventError(CartwheelError):
    """Raised when an event given to the producer library fails validation.

    Attributes:
        rejection: the reason code and message from :func:`parse_event`.
    """

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"{rejection.reason}: {rejection.message}")
        self.rejection = rejection


class EventDeliveryError(CartwheelError):
    """Raised when the broker did not acknowledge an event in time or refused it."""
