"""verify_topics, require_listener and wait_for_broker when no broker responds."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from services.common.errors import BrokerUnreachableError
from services.common.kafka import (
    TopicSpec,
    require_listener,
    verify_topics,
    wait_for_broker,
)
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


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """Yield the address of a listener that accepts connections and never replies."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


def test_wait_for_broker_plaintext_has_no_tls_hint(silent_listener: str) -> None:
    with pytest.raises(BrokerUnreachableError) as caught:
        wait_for_broker(KafkaSettings(bootstrap=silent_listener), timeout_seconds=1)

    message = str(caught.value)
    assert message.startswith(f"no Kafka broker responded at {silent_listener}")
    assert "TLS" not in message
    assert "CARTWHEEL_KAFKA_BOOTSTRAP" in message


def test_wait_for_broker_sasl_ssl_hints_at_tls(silent_listener: str) -> None:
    kafka = KafkaSettings(
        bootstrap=silent_listener,
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="user",
        sasl_password="password",
    )

    with pytest.raises(BrokerUnreachableError) as caught:
        wait_for_broker(kafka, timeout_seconds=1)

    message = str(caught.value)
    assert "is the broker listening for TLS on that port?" in message
    assert "CARTWHEEL_KAFKA_SECURITY_PROTOCOL is SASL_SSL" in message
    assert "set it to SASL_PLAINTEXT" in message
