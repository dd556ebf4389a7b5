"""verify_topics, require_listener and wait_for_broker when no broker responds.

A TLS listener that requires client certificates, with no broker behind it,
acts as a broker that rejects the client during the TLS handshake.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.errors import BrokerUnreachableError
from services.common.kafka import (
    TopicSpec,
    require_listener,
    tls_rejection_error,
    verify_topics,
    wait_for_broker,
)
from services.common.settings import KafkaSettings
from services.infra import find_free_port
from tests.certificates import Certificates, make_certificates
from tests.librdkafka_logs import unreachable_kafka
from tests.tls_proxy import TlsProxy


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


def test_wait_for_broker_silent_listener_is_not_missing(silent_listener: str) -> None:
    with pytest.raises(BrokerUnreachableError) as caught:
        wait_for_broker(KafkaSettings(bootstrap=silent_listener), timeout_seconds=1)

    message = str(caught.value)
    assert f"{silent_listener} accepts connections but does not respond" in message
    assert "'cartwheel infra up'" not in message


def test_wait_for_broker_connect_timeout_suggests_infra_up(
    full_accept_queue: int,
) -> None:
    bootstrap = f"127.0.0.1:{full_accept_queue}"

    with pytest.raises(BrokerUnreachableError) as caught:
        wait_for_broker(KafkaSettings(bootstrap=bootstrap), timeout_seconds=1)

    message = str(caught.value)
    assert message.startswith(f"no Kafka broker responded at {bootstrap}")
    assert "start one with 'cartwheel infra up'" in message
    assert "accepts connections" not in message


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


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path)


@pytest.fixture
def mutual_tls_listener(certificates: Certificates) -> Iterator[TlsProxy]:
    """Yield a TLS listener that requires a client certificate the CA signed."""
    with TlsProxy(
        ("127.0.0.1", find_free_port()),
        certificate=certificates.server_certificate,
        key=certificates.server_key,
        client_ca=certificates.ca,
    ) as proxy:
        yield proxy


def test_wait_for_broker_names_missing_certificate(
    mutual_tls_listener: TlsProxy, certificates: Certificates
) -> None:
    kafka = KafkaSettings(
        bootstrap=mutual_tls_listener.address,
        security_protocol="SSL",
        ssl_ca_location=certificates.ca,
    )

    with pytest.raises(BrokerUnreachableError) as caught:
        wait_for_broker(kafka, timeout_seconds=30)

    message = str(caught.value)
    assert message.startswith(
        f"the Kafka broker at {kafka.bootstrap} ended the TLS handshake (error:"
    )
    assert message.endswith(
        "it probably requires a client certificate: set "
        "CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION and "
        "CARTWHEEL_KAFKA_SSL_KEY_LOCATION"
    )
    assert len(message.splitlines()) == 1


def test_wait_for_broker_names_untrusted_certificate(
    mutual_tls_listener: TlsProxy, certificates: Certificates
) -> None:
    kafka = KafkaSettings(
        bootstrap=mutual_tls_listener.address,
        security_protocol="SSL",
        ssl_ca_location=certificates.ca,
        ssl_certificate_location=certificates.untrusted_client_certificate,
        ssl_key_location=certificates.untrusted_client_key,
    )

    with pytest.raises(BrokerUnreachableError) as caught:
        wait_for_broker(kafka, timeout_seconds=30)

    message = str(caught.value)
    assert "alert unknown ca" in message
    assert (
        "it probably does not accept the client certificate in "
        "CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION="
        f"{str(certificates.untrusted_client_certificate)!r}"
    ) in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(
    "reason",
    [
        None,
        "ssl://127.0.0.1:9093/bootstrap: Connect to ipv4#127.0.0.1:9093 failed: "
        "Connection refused (after 0ms in state CONNECT)",
    ],
    ids=["none", "refused-connect"],
)
def test_tls_rejection_ignores_other_errors(reason: str | None) -> None:
    assert tls_rejection_error(KafkaSettings(security_protocol="SSL"), reason) is None


def test_tls_rejection_keeps_openssl_error() -> None:
    reason = (
        "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000410:SSL "
        "routines::sslv3 alert handshake failure: SSL alert number 40 (after 2ms "
        "in state SSL_HANDSHAKE)"
    )

    error = tls_rejection_error(KafkaSettings(bootstrap="127.0.0.1:9093"), reason)

    assert error is not None
    assert str(error).startswith(
        "the Kafka broker at 127.0.0.1:9093 ended the TLS handshake (error:0A000410:"
        "SSL routines::sslv3 alert handshake failure: SSL alert number 40); "
    )
