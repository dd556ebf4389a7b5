"""Kafka client settings and topic administration shared by every service.

The non-default client settings below were measured against Apache Kafka and
against Tansu (the local broker used by tests and the demo); each carries its
reason.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from schemas.recommendations import Surface
from services.common.errors import (
    BrokerUnreachableError,
    InfrastructureError,
    TopicMissingError,
)
from services.common.settings import KafkaSettings, TopicSettings

__all__ = [
    "TopicSpec",
    "consume_available",
    "consumer_config",
    "create_topics",
    "is_fatal",
    "is_listening",
    "log_partition_change",
    "require_listener",
    "producer_config",
    "raise_if_fatal",
    "refuses_connections",
    "standard_topics",
    "tls_rejection_error",
    "unresponsive_broker_error",
    "verify_topics",
    "wait_for_broker",
]

logger = logging.getLogger(__name__)

_ADMIN_TIMEOUT_SECONDS = 15.0

# Each security protocol that uses TLS, mapped to the same one without TLS.
_TLS_PROTOCOLS = {"SSL": "PLAINTEXT", "SASL_SSL": "SASL_PLAINTEXT"}


@dataclass(frozen=True)
class TopicSpec:
    """A topic to provision: its name, partition count and cleanup policy.

    ``has_fixed_count`` marks a topic whose count does not follow
    ``CARTWHEEL_TOPIC_PARTITIONS``, such as the single-partition models topic.
    """

    name: str
    partitions: int
    is_compacted: bool = False
    has_fixed_count: bool = False


# librdkafka writes its own lines to stderr unless given a logger. Through
# Python logging they get the service's format, level and secret masking, and
# configure_logging thins out the reconnect lines of a broker outage. But the
# lines reach the logger only when the client is polled, so only clients that
# are polled all the time get it: consumers, and the producers that ask.
_LOGGING = {"logger": logging.getLogger("librdkafka")}


def consumer_config(
    kafka: KafkaSettings, group_id: str, *, fetch_wait_ms: int = 100
) -> dict[str, Any]:
    """Return librdkafka consumer settings for a manually committing group member."""
    return {
        **kafka.client_config(),
        **_LOGGING,
        "group.id": group_id,
        # Offsets are committed by the service after the batch's effects are
        # stored, which gives at-least-once delivery.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # A short session makes a dead member's partitions move within seconds;
        # a group join also takes about half the session timeout.
        "session.timeout.ms": 3000,
        "heartbeat.interval.ms": 500,
        # cooperative-sticky rebalancing duplicated and lost commits on Tansu 0.6.
        "partition.assignment.strategy": "range",
        # The broker keeps a fetch open for up to this long when no data is
        # waiting, which sets the latency floor of an idle consumer.
        "fetch.wait.max.ms": fetch_wait_ms,
    }


def consume_available(
    consumer: Consumer, max_messages: int, timeout_seconds: float
) -> list[Message]:
    """Wait up to ``timeout_seconds`` for a message, then take what has arrived.

    ``Consumer.consume(n, timeout)`` returns only once it has ``n`` messages
    or the timeout has passed, so under light traffic every call would wait
    the whole timeout and add it to each event's latency. This returns as soon
    as one message is there, with every message already fetched up to
    ``max_messages``: batches stay small when traffic is light and fill up
    under load.
    """
    messages = consumer.consume(1, timeout_seconds)
    while messages and len(messages) < max_messages:
        more = consumer.consume(max_messages - len(messages), 0)
        if not more:
            break
        messages.extend(more)
    return messages


def log_partition_change(
    log: logging.Logger,
    change: str,
    topic: str,
    partitions: Collection[TopicPartition],
    group_id: str,
    *,
    is_commit_given_up: bool = False,
) -> None:
    """Log one line for partitions ``assigned``, ``revoked`` or ``lost`` by a group.

    A loss is a WARNING, because the member's commits for those partitions
    can no longer succeed, unless the member has already given up committing
    (``is_commit_given_up``) and logged why. The others are INFO.
    """
    is_warning = change == "lost" and not is_commit_given_up
    log.log(
        logging.WARNING if is_warning else logging.INFO,
        "partitions %s topic=%s partitions=%s group=%s",
        change,
        topic,
        sorted(tp.partition for tp in partitions),
        group_id,
    )


# LIMITATION(L-77): the broker keeps each idempotent producer's sequence
# state. The local Tansu broker loses it on a restart, and the producers of
# running services then stop delivering without a fatal error.
def producer_config(
    kafka: KafkaSettings, *, linger_ms: int = 5, is_polled_steadily: bool = False
) -> dict[str, Any]:
    """Return librdkafka producer settings: idempotent, acks from all replicas.

    Args:
        kafka: connection settings.
        linger_ms: how long librdkafka batches messages before sending.
        is_polled_steadily: the caller polls the producer at least every
            second or so, even when it sends nothing. librdkafka's lines then
            go to the ``librdkafka`` logger. Otherwise librdkafka writes them
            to stderr itself, since a logger would receive them only at the
            next send.
    """
    return {
        **kafka.client_config(),
        **(_LOGGING if is_polled_steadily else {}),
        # Idempotence keeps per-partition order and drops broker-side duplicates
        # when librdkafka retries a send.
        "enable.idempotence": True,
        "acks": "all",
        # A few ms of batching multiplies throughput at a small latency cost.
        "linger.ms": linger_ms,
        "compression.type": "lz4",
    }


def raise_if_fatal(error: KafkaError) -> None:
    """Raise ``KafkaException(error)`` when librdkafka reports it as fatal.

    After a fatal error every later send fails, so retrying is pointless. One
    cause is a broker that lost its state and no longer has the sequence
    numbers of an idempotent producer. Called in a delivery callback,
    the exception leaves the ``poll`` or ``flush`` call that served it.
    """
    if error.fatal():
        raise KafkaException(error)


def is_fatal(exc: BaseException) -> bool:
    """Return whether ``exc`` carries a fatal librdkafka error."""
    if not isinstance(exc, KafkaException) or not exc.args:
        return False
    error = exc.args[0]
    return isinstance(error, KafkaError) and error.fatal()


def standard_topics(topics: TopicSettings) -> list[TopicSpec]:
    """Return every topic Cartwheel uses, with its configured partition count."""
    partitions = topics.partitions
    specs = [
        TopicSpec(topics.events, partitions),
        TopicSpec(topics.dead_letters, partitions),
        TopicSpec(topics.catalog, partitions, is_compacted=True),
        TopicSpec(topics.training_examples, partitions),
        TopicSpec(topics.models, 1, is_compacted=True, has_fixed_count=True),
    ]
    for surface in Surface:
        specs.append(TopicSpec(topics.recommendations(surface.value), partitions))
    return specs


def wait_for_broker(kafka: KafkaSettings, *, timeout_seconds: float = 10.0) -> None:
    """Wait until a broker at the bootstrap address returns cluster metadata.

    Raises:
        BrokerUnreachableError: no broker responded within ``timeout_seconds``,
            or a broker ended the TLS handshake (it wants a client certificate,
            or refused the one set); the message names the bootstrap address.
    """
    require_listener(kafka)
    _list_topics(_Admin(kafka), kafka, timeout_seconds)


def create_topics(
    kafka: KafkaSettings, specs: Iterable[TopicSpec], *, replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet and return their names.

    Existing topics are left as they are, so the call is idempotent. When a
    topic exists with another partition count, nothing is created, so a
    count that the error suggests still fits every topic.

    Raises:
        BrokerUnreachableError: no broker responded at the bootstrap address.
        InfrastructureError: the broker refused to create a topic.
        TopicMissingError: a topic exists with another partition count.
    """
    admin = _Admin(kafka)
    specs = list(specs)
    existing = _describe_partitions(admin, kafka)
    if any(
        existing.get(spec.name, spec.partitions) != spec.partitions for spec in specs
    ):
        verify_topics(kafka, specs, admin=admin)
    to_create = [spec for spec in specs if spec.name not in existing]
    if to_create:
        futures = admin.client.create_topics(
            [
                NewTopic(
                    spec.name,
                    num_partitions=spec.partitions,
                    replication_factor=replication_factor,
                    config={"cleanup.policy": "compact"} if spec.is_compacted else {},
                )
                for spec in to_create
            ],
            operation_timeout=_ADMIN_TIMEOUT_SECONDS,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=_ADMIN_TIMEOUT_SECONDS)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise InfrastructureError(
                        f"creating topic {name!r} failed: {exc}"
                    ) from exc
            logger.info("topic created topic=%s", name)
    verify_topics(kafka, specs, admin=admin)
    return [spec.name for spec in to_create]


def verify_topics(
    kafka: KafkaSettings,
    specs: Iterable[TopicSpec],
    *,
    admin: _Admin | None = None,
) -> None:
    """Check that every topic exists with the expected partition count.

    Some brokers (Tansu among them) acknowledge writes to a missing topic and
    drop them, so services call this at start instead of trusting the broker.

    Raises:
        TopicMissingError: names each missing or mis-sized topic and the fix.
        BrokerUnreachableError: no broker listens at the bootstrap address or
            none returned metadata in time.
    """
    if admin is None:
        require_listener(kafka)
        admin = _Admin(kafka)
    specs = list(specs)
    existing = _describe_partitions(admin, kafka)
    problems = []
    is_missized = False
    for spec in specs:
        found = existing.get(spec.name)
        if found is None:
            problems.append(f"topic {spec.name!r} is missing")
        elif found != spec.partitions:
            is_missized = True
            problems.append(
                f"topic {spec.name!r} has {found} partitions, "
                f"expected {spec.partitions}"
            )
    if is_missized:
        raise TopicMissingError(
            "; ".join(problems)
            + f" at {kafka.bootstrap}. "
            + _MISSIZED_TOPIC_ADVICE.format(count=_count_hint(specs, existing))
        )
    if problems:
        raise TopicMissingError(
            "; ".join(problems) + "; run 'cartwheel topics create' against "
            f"{kafka.bootstrap}"
        )


# 'topics create' cannot change a topic's partition count, and the count
# decides which partition each user's events go to. Deleting a topic loses
# its messages, so it is the last resort.
_MISSIZED_TOPIC_ADVICE = (
    "A topic gets another count when it was created with another "
    "CARTWHEEL_TOPIC_PARTITIONS, or by a broker that creates topics on a "
    "first write. 'cartwheel topics create' keeps existing topics and cannot "
    "change their count. {count} Only as a last resort, when the topics must "
    "get the new count, delete them and run 'cartwheel topics create' again: "
    "deleting a topic loses all of its messages. The local broker of "
    "'cartwheel infra up' keeps topics in memory only, so there stop the "
    "services and run 'cartwheel infra down', 'infra up' and 'topics create'"
)


def _count_hint(specs: Sequence[TopicSpec], existing: Mapping[str, int]) -> str:
    """Say which CARTWHEEL_TOPIC_PARTITIONS fits the existing topics, if one does.

    It fits only when every topic with a fixed count has that count and every
    other existing topic has one and the same count.
    """
    is_fixed_fit = all(
        existing.get(spec.name, spec.partitions) == spec.partitions
        for spec in specs
        if spec.has_fixed_count
    )
    counts = {
        existing[spec.name]
        for spec in specs
        if not spec.has_fixed_count and spec.name in existing
    }
    if is_fixed_fit and len(counts) == 1:
        return (
            "To use the topics as they are, set CARTWHEEL_TOPIC_PARTITIONS to "
            f"the count they have ({next(iter(counts))})."
        )
    return (
        "No CARTWHEEL_TOPIC_PARTITIONS fits them all, because they have "
        "different counts or a topic of fixed count has another one."
    )


def require_listener(kafka: KafkaSettings) -> None:
    """Raise at once when every bootstrap address refuses a TCP connection.

    Without this check, librdkafka retries a refused connection until the
    admin call's timeout runs out. An address whose connect times out or
    whose name does not resolve is left to that wait, because a busy broker
    with a full accept queue, a lost SYN or a DNS record not yet published
    looks the same.
    """
    if refuses_connections(kafka):
        raise BrokerUnreachableError(
            f"no Kafka broker listens at {kafka.bootstrap}; start one with "
            "'cartwheel infra up' or set CARTWHEEL_KAFKA_BOOTSTRAP"
        )


def unresponsive_broker_error(
    kafka: KafkaSettings, timeout_seconds: float, exc: KafkaException
) -> BrokerUnreachableError:
    """Build the error for a metadata request that no broker responded to in time.

    With TLS configured, a broker that listens for plaintext on the port
    drops the handshake and librdkafka reports only a transport failure, so
    the message then suggests checking that the listener uses TLS. Without
    TLS, an address that accepts connections has a server that does not
    respond (a stopped or overloaded broker, or another kind of server), so
    the message names that address instead of suggesting to start a broker.
    """
    message = (
        f"no Kafka broker responded at {kafka.bootstrap} within "
        f"{timeout_seconds:.0f} s ({exc.args[0]}); "
    )
    protocol = kafka.security_protocol
    if protocol in _TLS_PROTOCOLS:
        return BrokerUnreachableError(
            message + "is the broker listening for TLS on that port? "
            f"CARTWHEEL_KAFKA_SECURITY_PROTOCOL is {protocol}, so set it to "
            f"{_TLS_PROTOCOLS[protocol]} for a plaintext listener, such as the "
            "one 'cartwheel infra up' starts, or set CARTWHEEL_KAFKA_BOOTSTRAP "
            "to a TLS listener"
        )
    listening = [
        endpoint for endpoint in kafka.bootstrap.split(",") if is_listening(endpoint)
    ]
    if listening:
        return BrokerUnreachableError(
            message + f"{', '.join(listening)} accepts connections but does not "
            "respond, so the broker there is stopped (SIGSTOP), stuck or "
            "overloaded, or the server there is not a Kafka broker; check that "
            "process ('cartwheel infra status' reports a local broker as not "
            "responding), or set CARTWHEEL_KAFKA_BOOTSTRAP to a working broker"
        )
    return BrokerUnreachableError(
        message + "start one with 'cartwheel infra up' or set CARTWHEEL_KAFKA_BOOTSTRAP"
    )


def is_listening(endpoint: str, timeout_seconds: float = 1.0) -> bool:
    """Return True when a TCP connection to ``host:port`` succeeds."""
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection(
            (host.strip("[]"), int(port)), timeout=timeout_seconds
        ):
            return True
    except (OSError, ValueError):
        return False


def refuses_connections(kafka: KafkaSettings) -> bool:
    """Return True when every bootstrap address refuses a TCP connection.

    Nothing listens at an address that refuses, as after its broker stopped.
    A connect that times out or a name that does not resolve is not a
    refusal (see :func:`require_listener`).
    """
    return all(_refuses_connection(endpoint) for endpoint in kafka.bootstrap.split(","))


def _refuses_connection(endpoint: str, timeout_seconds: float = 1.0) -> bool:
    """Return True when every address of ``host:port`` refuses a TCP connection."""
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection(
            (host.strip("[]"), int(port)), timeout=timeout_seconds, all_errors=True
        ):
            return False
    except ExceptionGroup as errors:
        return all(
            isinstance(error, ConnectionRefusedError) for error in errors.exceptions
        )
    except (OSError, ValueError):
        return False


class _Admin:
    """An admin client that keeps the last connection error librdkafka reported.

    A failed metadata request reports only "Broker transport failure". The
    cause, such as the TLS alert of a broker that requires a client
    certificate, goes to the client's error callback, which runs in ``poll``.
    """

    def __init__(self, kafka: KafkaSettings) -> None:
        self.last_error: str | None = None
        config: dict[str, Any] = {
            **kafka.client_config(),
            **_LOGGING,
            "error_cb": self._record,
        }
        self.client = AdminClient(config)

    def _record(self, error: KafkaError) -> None:
        # "All brokers are down" follows the error that gives the cause.
        if error.code() != KafkaError._ALL_BROKERS_DOWN:
            self.last_error = error.str()


def _list_topics(admin: _Admin, kafka: KafkaSettings, timeout_seconds: float) -> Any:
    """Return the cluster metadata, or raise the error that explains its absence.

    With TLS, the request is repeated in slices of a second, so that a broker
    that ends every TLS handshake stops the wait at once instead of at the
    timeout.
    """
    if kafka.security_protocol not in _TLS_PROTOCOLS:
        try:
            return admin.client.list_topics(timeout=timeout_seconds)
        except KafkaException as exc:
            raise unresponsive_broker_error(kafka, timeout_seconds, exc) from exc
    deadline = time.monotonic() + timeout_seconds
    while True:
        remaining = deadline - time.monotonic()
        try:
            return admin.client.list_topics(timeout=max(min(remaining, 1.0), 0.1))
        except KafkaException as exc:
            admin.client.poll(0)
            rejection = tls_rejection_error(kafka, admin.last_error)
            if rejection is not None:
                raise rejection from exc
            if time.monotonic() >= deadline:
                raise unresponsive_broker_error(kafka, timeout_seconds, exc) from exc


def tls_rejection_error(
    kafka: KafkaSettings, reason: str | None
) -> BrokerUnreachableError | None:
    """Build the error for a broker that ended the TLS handshake, if it did.

    Args:
        kafka: connection settings.
        reason: the last connection error librdkafka reported, or None.

    Returns:
        None unless ``reason`` is a TLS alert from the broker. A broker that
        requires client certificates sends one when the client has none, or
        when it does not trust the client's certificate.
    """
    if reason is None or "SSL alert number" not in reason:
        return None
    # librdkafka's text starts with the broker's name and ends with the
    # connection state. The OpenSSL error between them describes the failure.
    alert = reason[reason.find("error:") :] if "error:" in reason else reason
    alert = alert.split(" (after ", 1)[0]
    certificate = kafka.ssl_certificate_location
    if certificate is None:
        return BrokerUnreachableError(
            f"the Kafka broker at {kafka.bootstrap} ended the TLS handshake "
            f"({alert}); it probably requires a client certificate: set "
            "CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION and "
            "CARTWHEEL_KAFKA_SSL_KEY_LOCATION"
        )
    return BrokerUnreachableError(
        f"the Kafka broker at {kafka.bootstrap} ended the TLS handshake "
        f"({alert}); it probably does not accept the client certificate in "
        f"CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION={str(certificate)!r}: use "
        "one that a CA the broker trusts signed, and that has not expired"
    )


def _describe_partitions(admin: _Admin, kafka: KafkaSettings) -> dict[str, int]:
    metadata = _list_topics(admin, kafka, _ADMIN_TIMEOUT_SECONDS)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}
