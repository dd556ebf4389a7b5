"""Kafka clients with a TLS client certificate, through a proxy that requires one.

Tansu speaks only plaintext, so a TLS proxy that verifies client certificates
forwards to a broker started for this module, which advertises the proxy's
port. The certificates are made at test time by one private CA.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaClient
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from services.common.errors import BrokerUnreachableError
from services.common.kafka import (
    TopicSpec,
    consumer_config,
    create_topics,
    producer_config,
    wait_for_broker,
)
from services.common.model_watcher import ModelWatcher
from services.common.settings import KafkaSettings, load_settings
from services.feedback.app import faust_credentials
from services.infra import find_free_port, start_broker
from tests.certificates import KEY_PASSWORD, Certificates, make_certificates
from tests.tls_proxy import TlsProxy

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class MutualTlsBroker:
    """A Tansu broker that advertises a TLS proxy requiring client certificates."""

    proxy: TlsProxy
    certificates: Certificates


@pytest.fixture(scope="module")
def mutual_tls_broker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MutualTlsBroker]:
    folder = tmp_path_factory.mktemp("mutual-tls")
    certificates = make_certificates(folder / "certificates")
    broker_port = find_free_port()
    proxy = TlsProxy(
        ("127.0.0.1", broker_port),
        certificate=certificates.server_certificate,
        key=certificates.server_key,
        client_ca=certificates.ca,
    )
    try:
        server = start_broker(folder, broker_port, advertised_port=proxy.port)
    except BaseException:
        proxy.close()
        raise
    yield MutualTlsBroker(proxy, certificates)
    # Clients dropped without closing are destroyed while the broker still
    # responds, and the proxy ends the forwarded connections before it stops.
    gc.collect()
    proxy.close()
    server.stop()


@pytest.fixture
def client_certificate_settings(
    mutual_tls_broker: MutualTlsBroker, monkeypatch: pytest.MonkeyPatch
) -> KafkaSettings:
    """Load Kafka settings from the variables, with an encrypted client key."""
    files = mutual_tls_broker.certificates
    for variable, value in {
        "CARTWHEEL_KAFKA_BOOTSTRAP": mutual_tls_broker.proxy.address,
        "CARTWHEEL_KAFKA_SECURITY_PROTOCOL": "SSL",
        "CARTWHEEL_KAFKA_SSL_CA_LOCATION": str(files.ca),
        "CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION": str(files.client_certificate),
        "CARTWHEEL_KAFKA_SSL_KEY_LOCATION": str(files.encrypted_client_key),
        "CARTWHEEL_KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD,
    }.items():
        monkeypatch.setenv(variable, value)
    return load_settings(KafkaSettings)


def test_client_certificate_round_trips_message(
    client_certificate_settings: KafkaSettings, unique_name: Callable[[str], str]
) -> None:
    kafka = client_certificate_settings
    topic = unique_name("mtls")
    create_topics(kafka, [TopicSpec(topic, 1)])
    producer = Producer(producer_config(kafka, linger_ms=0))
    producer.produce(topic, key=b"u-1", value=b"over mutual TLS")
    remaining = producer.flush(30)
    consumer = Consumer(consumer_config(kafka, unique_name("mtls-group")))
    consumer.assign([TopicPartition(topic, 0, 0)])

    message = _poll_one(consumer, timeout_seconds=30)
    consumer.close()

    assert remaining == 0
    assert message is not None
    assert message.error() is None
    assert (message.key(), message.value()) == (b"u-1", b"over mutual TLS")


def _start_model_watcher(kafka: KafkaSettings) -> None:
    ModelWatcher(kafka, "models", "ranker").start()


@pytest.mark.parametrize(
    "connect",
    [lambda kafka: wait_for_broker(kafka, timeout_seconds=30), _start_model_watcher],
    ids=["broker-check", "model-watcher"],
)
def test_client_without_certificate_is_rejected(
    mutual_tls_broker: MutualTlsBroker, connect: Callable[[KafkaSettings], None]
) -> None:
    kafka = KafkaSettings(
        bootstrap=mutual_tls_broker.proxy.address,
        security_protocol="SSL",
        ssl_ca_location=mutual_tls_broker.certificates.ca,
    )

    with pytest.raises(BrokerUnreachableError) as caught:
        connect(kafka)

    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert "it probably requires a client certificate" in message
    assert "CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION" in message
    assert any(
        "PEER_DID_NOT_RETURN_A_CERTIFICATE" in rejection
        for rejection in mutual_tls_broker.proxy.rejections
    )


def test_faust_context_reads_metadata_through_proxy(
    client_certificate_settings: KafkaSettings,
) -> None:
    context = faust_credentials(client_certificate_settings)

    brokers = asyncio.run(
        _broker_addresses(client_certificate_settings.bootstrap, context)
    )

    assert brokers == [client_certificate_settings.bootstrap]


async def _broker_addresses(bootstrap: str, context: Any) -> list[str]:
    """Fetch cluster metadata with aiokafka (Faust's client) and list the brokers."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        security_protocol="SSL",
        ssl_context=context,
        request_timeout_ms=30000,
    )
    try:
        await client.bootstrap()
        return [f"{broker.host}:{broker.port}" for broker in client.cluster.brokers()]
    finally:
        await client.close()


def _poll_one(consumer: Consumer, timeout_seconds: float) -> Message | None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is not None:
            return message
    return None
