"""Feedback app wiring: credentials, parsing and the Faust app itself."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import faust
import pytest
from pydantic import SecretStr

from services.common.settings import KafkaSettings, RedisSettings, TopicSettings
from services.feedback import metrics
from services.feedback.app import FeedbackProcessor, create_app, faust_credentials
from services.feedback.settings import FeedbackSettings
from services.infra import find_free_port
from tests.certificates import KEY_PASSWORD, make_certificates


def test_faust_credentials_are_none_for_plaintext() -> None:
    assert faust_credentials(KafkaSettings()) is None


def test_faust_credentials_carry_sasl_user_and_mechanism() -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="cartwheel",
        sasl_password=SecretStr("secret"),
    )

    credentials = faust_credentials(kafka)

    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "cartwheel"
    assert credentials.password == "secret"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.ssl_context is None


def test_faust_credentials_add_tls_for_sasl_ssl() -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=SecretStr("p"),
    )

    credentials = faust_credentials(kafka)

    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    assert credentials.mechanism.value == "PLAIN"


def test_faust_credentials_are_ssl_context_for_ssl() -> None:
    credentials = faust_credentials(KafkaSettings(security_protocol="SSL"))

    assert isinstance(credentials, ssl.SSLContext)


def test_faust_context_loads_encrypted_client_key(
    tmp_path: Path,
) -> None:
    files = make_certificates(tmp_path)
    kafka = KafkaSettings(
        security_protocol="SSL",
        ssl_ca_location=files.ca,
        ssl_certificate_location=files.client_certificate,
        ssl_key_location=files.encrypted_client_key,
        ssl_key_password=SecretStr(KEY_PASSWORD),
    )

    context = faust_credentials(kafka)

    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_faust_context_rejects_mismatched_key(
    tmp_path: Path,
) -> None:
    # A key that does not match shows that the chain is loaded, not ignored.
    # model_construct skips the settings' own check of the pair.
    files = make_certificates(tmp_path)
    kafka = KafkaSettings.model_construct(
        security_protocol="SSL",
        ssl_certificate_location=files.client_certificate,
        ssl_key_location=files.untrusted_client_key,
    )

    with pytest.raises(ssl.SSLError, match="KEY_VALUES_MISMATCH"):
        faust_credentials(kafka)


def test_faust_sasl_context_rejects_mismatched_key(
    tmp_path: Path,
) -> None:
    files = make_certificates(tmp_path)
    kafka = KafkaSettings.model_construct(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=SecretStr("p"),
        ssl_certificate_location=files.client_certificate,
        ssl_key_location=files.untrusted_client_key,
    )

    with pytest.raises(ssl.SSLError, match="KEY_VALUES_MISMATCH"):
        faust_credentials(kafka)


def test_create_app_reads_events_and_every_surface_topic() -> None:
    settings = FeedbackSettings(topics=TopicSettings(events="ev", partitions=3))

    app, _ = create_app(settings)

    agent = app.agents["feedback-join"]
    assert set(agent.channel.topics) == {
        "ev",
        "recommendations.products",
        "recommendations.bundles",
        "recommendations.promotions",
        "recommendations.reviews",
    }


def test_create_app_uses_broker_settings_that_suit_tansu() -> None:
    app, _ = create_app(FeedbackSettings())

    assert app.conf.broker_session_timeout == 3.0
    assert app.conf.broker_heartbeat_interval == 0.5
    assert app.conf.processing_guarantee.value == "at_least_once"
    assert app.conf.web_enabled is False
    assert app.conf.topic_allow_declare is False


def test_processor_counts_and_skips_invalid_message() -> None:
    processor = FeedbackProcessor(FeedbackSettings())
    before = metrics.MESSAGES.labels("invalid")._value.get()

    credited = asyncio.run(processor.process([("events", 0, 7, b"{not json")]))

    assert credited == 0
    assert metrics.MESSAGES.labels("invalid")._value.get() == before + 1


@pytest.mark.parametrize(
    ("topic", "value"),
    [
        (
            "events",
            b'{"event_id": "e1", "event_type": "click", "user_id": "u1", '
            b'"item_id": "i1", "event_time": "2019-10-01T00:00:00Z", '
            b'"quantity": "2"}',
        ),
        (
            "shop.products",
            b'{"recommendation_id": "r1", "surface": "products", '
            b'"user_id": "u1", "trigger_event_id": "e1", "items": [], '
            b'"model_version": "m", "generated_at": 1569888000, '
            b'"latency_ms": 1.0}',
        ),
    ],
    ids=["quantity-as-text", "time-as-number"],
)
def test_processor_skips_message_that_its_json_schema_rejects(
    topic: str, value: bytes
) -> None:
    # A message parsed by mistake would go to this closed port, not to a Redis.
    closed = RedisSettings(url=SecretStr(f"redis://127.0.0.1:{find_free_port()}/0"))
    processor = FeedbackProcessor(FeedbackSettings(redis=closed))
    before = metrics.MESSAGES.labels("invalid")._value.get()

    credited = asyncio.run(processor.process([(topic, 0, 7, value)]))

    assert credited == 0
    assert metrics.MESSAGES.labels("invalid")._value.get() == before + 1


def test_settings_reject_zero_attribution_window() -> None:
    with pytest.raises(ValueError, match="attribution_window_seconds"):
        FeedbackSettings(attribution_window_seconds=0)
