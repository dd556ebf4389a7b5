"""verify_topics and require_listener when no broker accepts a connection."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from services.common.errors import BrokerUnreachableError
from services.common.kafka import TopicSpec, require_listener, verify_topics
from services.common.settings import KafkaSettings
from tests.librdkafka_logs import unreachable_kafka


def test_verify_topics_refused_connection_names_address() -> None:
    kafka = unreachable_kafka()

    with pytest.raises(BrokerUnreachableError) as caught:
        verify_topics(kafka, [TopicSpec("events", 6)])

    assert str(caught.value).startswith(f"no Kafka broker listens at {kafka.bootstrap}")
    assert "CARTWHEEL_KAFKA_BOOTSTRAP" in str(caught.value)


def test_require_listener_one_listening_address_passes() -> None:
    closed_address = unreachable_kafka().bootstrap
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        require_listener(KafkaSettings(bootstrap=f"{closed_address},127.0.0.1:{port}"))


@pytest.fixture
def full_accept_queue() -> Iterator[int]:
    """Yield the port of a listener with a full accept queue, which drops new SYNs."""
    server = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = server.getsockname()[1]
    clients = []
    for _ in range(4):
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        clients.append(client)
    yield port
    for client in clients:
        client.close()
    server.close()


def test_require_listener_connect_timeout_passes(full_accept_queue: int) -> None:
    # A busy broker lets the connect time out. Only a refused connect fails at once.
    require_listener(KafkaSettings(bootstrap=f"127.0.0.1:{full_accept_queue}"))
