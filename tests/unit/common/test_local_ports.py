from __future__ import annotations

import os

import pytest

from services.common.errors import InvalidSettingsError
from services.common.local_ports import local_kafka_bootstrap, local_redis_url
from services.common.setting_names import unknown_variables
from services.common.settings import KafkaSettings, RedisSettings, load_settings
from services.hotpath.settings import HotPathSettings
from services.infra.settings import InfraSettings

_VARIABLES = (
    "CARTWHEEL_KAFKA_BOOTSTRAP",
    "CARTWHEEL_REDIS_URL",
    "CARTWHEEL_INFRA_KAFKA_PORT",
    "CARTWHEEL_INFRA_REDIS_PORT",
)


@pytest.fixture(autouse=True)
def unset_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test without any of the variables that choose the servers."""
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_kafka_bootstrap_follows_infra_port_when_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", "29301")

    kafka = load_settings(KafkaSettings)

    assert kafka.bootstrap == "127.0.0.1:29301"


def test_redis_url_follows_infra_port_when_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", "26501")

    redis = load_settings(RedisSettings)

    assert redis.url.get_secret_value() == "redis://127.0.0.1:26501/0"


def test_defaults_are_kept_when_infra_ports_are_unset() -> None:
    kafka = load_settings(KafkaSettings)
    redis = load_settings(RedisSettings)

    assert kafka.bootstrap == "127.0.0.1:19092"
    assert redis.url.get_secret_value() == "redis://127.0.0.1:16379/0"


def test_explicit_addresses_win_over_infra_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", "29301")
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", "26501")
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", "broker.example:9092")
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", "redis://cache.example:6379/2")

    kafka = load_settings(KafkaSettings)
    redis = load_settings(RedisSettings)

    assert kafka.bootstrap == "broker.example:9092"
    assert redis.url.get_secret_value() == "redis://cache.example:6379/2"


def test_explicit_argument_wins_over_infra_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", "29301")

    kafka = KafkaSettings(bootstrap="127.0.0.1:40000")

    assert kafka.bootstrap == "127.0.0.1:40000"


def test_lower_case_infra_port_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("cartwheel_infra_kafka_port", "29301")

    kafka = load_settings(KafkaSettings)

    assert kafka.bootstrap == "127.0.0.1:29301"


def test_service_settings_follow_infra_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", "29301")
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", "26501")

    settings = load_settings(HotPathSettings)

    assert settings.kafka.bootstrap == "127.0.0.1:29301"
    assert settings.redis.url.get_secret_value() == "redis://127.0.0.1:26501/0"


def test_infra_port_is_known_to_services(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", "29301")

    unknown = unknown_variables(HotPathSettings, os.environ)

    assert [entry.variable for entry in unknown] == []


def test_non_numeric_infra_port_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", "eighty")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(KafkaSettings)

    assert str(caught.value).startswith(
        "invalid setting CARTWHEEL_INFRA_KAFKA_PORT='eighty': "
    )
    assert "expected a TCP port from 1024 to 65535" in str(caught.value)


@pytest.mark.parametrize("value", ["29192.0", " 29192", "29192 ", "29_192", "2e4"])
def test_infra_port_in_lax_integer_form_is_rejected(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", value)

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(KafkaSettings)

    assert str(caught.value) == (
        f"invalid setting CARTWHEEL_INFRA_KAFKA_PORT={value!r}: the value is not "
        "a plain base-10 integer (digits with an optional sign); expected a TCP "
        "port from 1024 to 65535 for the local broker, also the port of the "
        "default CARTWHEEL_KAFKA_BOOTSTRAP"
    )


@pytest.mark.parametrize("value", ["29192.0", " 29192"])
def test_infra_command_rejects_lax_redis_port(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", value)

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(InfraSettings)

    assert str(caught.value).startswith(
        f"invalid setting CARTWHEEL_INFRA_REDIS_PORT={value!r}: the value is not "
        "a plain base-10 integer"
    )
    assert len(str(caught.value).splitlines()) == 1


def test_infra_port_out_of_range_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", "80")

    with pytest.raises(InvalidSettingsError, match="CARTWHEEL_INFRA_REDIS_PORT='80'"):
        load_settings(RedisSettings)


def test_invalid_port_of_other_server_is_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", "29301")
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", "eighty")

    kafka = load_settings(KafkaSettings)

    assert kafka.bootstrap == "127.0.0.1:29301"


def test_bootstrap_skips_invalid_infra_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", "eighty")
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", "broker.example:9092")

    kafka = load_settings(KafkaSettings)

    assert kafka.bootstrap == "broker.example:9092"


def test_infra_settings_report_invalid_port_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", "eighty")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(InfraSettings)

    assert len(str(caught.value).splitlines()) == 1


def test_infra_settings_treat_followed_ports_as_local(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", "29301")
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", "26501")

    settings = load_settings(InfraSettings)

    assert not settings.is_kafka_external
    assert not settings.is_redis_external


def test_local_addresses_use_the_loopback_host() -> None:
    assert local_kafka_bootstrap(29301) == "127.0.0.1:29301"
    assert local_redis_url(26501) == "redis://127.0.0.1:26501/0"
