"""Publish a click, a cart add and a purchase with :class:`EventProducer`.

Run it against the local infrastructure::

    cartwheel infra up && cartwheel topics create
    python -m services.client.example

It prints one delivery report per event. ``CARTWHEEL_KAFKA_BOOTSTRAP`` chooses
the broker and ``CARTWHEEL_TOPIC_EVENTS`` the topic.
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from services.client.producer import DeliveryReport, EventProducer
from services.common.entrypoint import parse_service_arguments
from services.common.errors import CartwheelError
from services.common.logging import configure_logging
from services.common.settings import KafkaSettings, TopicSettings, load_settings


def _print_report(report: DeliveryReport) -> None:
    if report.is_delivered:
        print(
            f"delivered event_id={report.event_id} topic={report.topic} "
            f"partition={report.partition} offset={report.offset}"
        )
    else:
        print(f"failed event_id={report.event_id} error={report.error}")


def main() -> int:
    """Send three events of one user and return the exit status."""
    configure_logging("WARNING")
    session_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    events: list[dict[str, Any]] = [
        {"event_type": "click"},
        {"event_type": "cart_add", "quantity": 1, "price": 35.79},
        {"event_type": "purchase", "quantity": 1, "price": 35.79, "order_id": "o-1"},
    ]
    try:
        kafka = load_settings(KafkaSettings)
        topic = load_settings(TopicSettings).events
        with EventProducer(kafka, topic=topic, on_delivery=_print_report) as producer:
            for fields in events:
                producer.send(
                    {
                        "event_id": uuid.uuid4().hex,
                        "user_id": "example-user",
                        "item_id": "44600062",
                        "session_id": session_id,
                        "event_time": now,
                        **fields,
                    }
                )
    except CartwheelError as exc:
        print(f"example: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    parse_service_arguments("services.client.example", __doc__)
    sys.exit(main())
