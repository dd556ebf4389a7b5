from __future__ import annotations

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.errors import InvalidSettingsError
from services.common.settings import (
    KafkaSettings,
    RedisSettings,
    TopicSettings,
    load_settings,
    masked_settings,
    secret_values,
)


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARTWHEEL_TESTSVC_", frozen=True)

    batch_size: int = Field(default=10, ge=1, description="a positive integer")
    is_enabled: bool = Field(default=True, description="whether the service runs")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)


class RulesSettings(BaseSettings):
    max_per_category: int = Field(default=3, ge=1)


class NestedServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_TESTNESTED_", env_nested_delimiter="__", frozen=True
    )

    rules: RulesSettings = Field(default_factory=RulesSettings)
    sizes: list[int] = Field(default_factory=lambda: [1, 2])


def test_load_settings_uses_nested_delimiter_in_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_TESTNESTED_RULES__MAX_PER_CATEGORY", "x")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(NestedServiceSettings)

    assert "CARTWHEEL_TESTNESTED_RULES__MAX_PER_CATEGORY='x'" in str(caught.value)


def test_load_settings_names_service_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_TESTSVC_BATCH_SIZE", "0")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ServiceSettings)

    assert "CARTWHEEL_TESTSVC_BATCH_SIZE='0'" in str(caught.value)
    assert "a positive integer" in str(caught.value)


def test_load_settings_shows_the_form_of_a_boolean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_TESTSVC_IS_ENABLED", "maybe")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ServiceSettings)

    assert "CARTWHEEL_TESTSVC_IS_ENABLED='maybe'" in str(caught.value)
    assert "expected true or false" in str(caught.value)
    assert "whether the service runs" not in str(caught.value)


def test_load_settings_names_nested_kafka_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", "localhost")

    with pytest.raises(InvalidSettingsError, match="CARTWHEEL_KAFKA_BOOTSTRAP") as e:
        load_settings(ServiceSettings)

    assert "'localhost'" in str(e.value)
    assert "host:port" in str(e.value)


def test_load_settings_names_nested_redis_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_REDIS_KEY_PREFIX", "has space")

    with pytest.raises(InvalidSettingsError, match="CARTWHEEL_REDIS_KEY_PREFIX"):
        load_settings(ServiceSettings)


def test_load_settings_masks_secret_in_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", "http://user:hunter2@cache:6379")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(RedisSettings)

    assert "hunter2" not in str(caught.value)
    assert "CARTWHEEL_REDIS_URL='http://user:**********@cache:6379'" in str(
        caught.value
    )


def test_load_settings_reports_expected_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_TOPIC_PARTITIONS", "many")

    with pytest.raises(InvalidSettingsError, match="an integer from 1 to 1024"):
        load_settings(TopicSettings)


def test_masked_settings_hides_passwords_but_keeps_hosts() -> None:
    settings = ServiceSettings(
        kafka=KafkaSettings(sasl_username="shop", sasl_password="s3cret"),
        redis=RedisSettings(url="redis://:hunter2@cache:6379/0"),
    )

    masked = masked_settings(settings)

    assert masked["kafka"]["sasl_password"] == "**********"
    assert masked["kafka"]["sasl_username"] == "shop"
    assert masked["redis"]["url"] == "redis://:**********@cache:6379/0"
    assert "s3cret" not in repr(masked)


def test_secret_values_lists_passwords() -> None:
    settings = ServiceSettings(
        kafka=KafkaSettings(sasl_password="s3cret"),
        redis=RedisSettings(url="redis://:hunter2@cache:6379/0"),
    )

    assert sorted(secret_values(settings)) == ["hunter2", "s3cret"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CARTWHEEL_KAFKA_BOOTSTRAP", "127.0.0.1:99999"),
        ("CARTWHEEL_REDIS_URL", "redis://127.0.0.1:99999/0"),
        ("CARTWHEEL_REDIS_URL", "redis://127.0.0.1:abc/0"),
    ],
)
def test_load_settings_rejects_port_out_of_range(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ServiceSettings)

    assert f"{variable}={value!r}" in str(caught.value)
    assert "1-65535" in str(caught.value)


def test_load_settings_names_variable_with_invalid_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_TESTNESTED_SIZES", "three")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(NestedServiceSettings)

    assert "CARTWHEEL_TESTNESTED_SIZES='three'" in str(caught.value)
    assert "expected a JSON value" in str(caught.value)


def test_load_settings_names_list_variable_without_position(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_TESTNESTED_SIZES", '[1, "x"]')

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(NestedServiceSettings)

    assert "CARTWHEEL_TESTNESTED_SIZES=" in str(caught.value)
    assert "SIZES__1" not in str(caught.value)
