from __future__ import annotations

import importlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.api.settings import ApiSettings
from services.common.errors import InvalidSettingsError
from services.common.setting_names import known_variables
from services.common.settings import (
    MAX_REDIS_TTL_SECONDS,
    CommandLineValue,
    KafkaSettings,
    RedisSettings,
    TopicSettings,
    expected_form,
    load_settings,
    masked_settings,
    secret_values,
)
from services.evaluation.settings import EvaluationSettings
from services.features.settings import CatalogSettings
from services.feedback.settings import FeedbackSettings
from services.hotpath.settings import HotPathSettings
from services.learner.settings import LearnerSettings
from services.replay.settings import Settings as ReplaySettings
from services.scorer.settings import ScorerSettings
from services.trainer.settings import TrainerSettings
from tests.certificates import KEY_PASSWORD, Certificates, make_certificates


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


def setting_error(
    monkeypatch: pytest.MonkeyPatch,
    settings_class: type[BaseSettings],
    variables: dict[str, str],
) -> str:
    """Set ``variables``, load ``settings_class`` and return its error message."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(settings_class)
    return str(caught.value)


def test_load_settings_uses_nested_delimiter_in_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = setting_error(
        monkeypatch,
        NestedServiceSettings,
        {"CARTWHEEL_TESTNESTED_RULES__MAX_PER_CATEGORY": "x"},
    )

    assert "CARTWHEEL_TESTNESTED_RULES__MAX_PER_CATEGORY='x'" in message


def test_load_settings_names_service_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    message = setting_error(
        monkeypatch, ServiceSettings, {"CARTWHEEL_TESTSVC_BATCH_SIZE": "0"}
    )

    assert "CARTWHEEL_TESTSVC_BATCH_SIZE='0'" in message
    assert "a positive integer" in message


def test_load_settings_shows_the_form_of_a_boolean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = setting_error(
        monkeypatch, ServiceSettings, {"CARTWHEEL_TESTSVC_IS_ENABLED": "maybe"}
    )

    assert "CARTWHEEL_TESTSVC_IS_ENABLED='maybe'" in message
    assert "expected true or false" in message
    assert "whether the service runs" not in message


def test_load_settings_names_nested_kafka_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", "localhost")

    with pytest.raises(InvalidSettingsError, match="CARTWHEEL_KAFKA_BOOTSTRAP") as e:
        load_settings(ServiceSettings)

    assert "'localhost'" in str(e.value)
    assert "host:port" in str(e.value)


@pytest.mark.parametrize(
    "bootstrap",
    ["broker:\u0669\u0660\u0669\u0662", "broker:0", "broker:65536", "a:1,broker"],
)
def test_kafka_bootstrap_rejects_bad_port(bootstrap: str) -> None:
    with pytest.raises(ValueError, match="comma-separated list of host:port"):
        KafkaSettings(bootstrap=bootstrap)


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


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("redis://:hun#ter2@cache:6379/0", "ter2"),
        ("redis://:hun?ter2@cache:6379/0", "ter2"),
        ("redis://:h@n/ter#2@cache:6379/0", "ter#2"),
        ("redis://shop:hun/ter2@cache:6379/0", "ter2"),
    ],
    ids=["hash", "question-mark", "slash-and-at", "user-and-slash"],
)
def test_unencoded_password_is_hidden_and_explained(
    monkeypatch: pytest.MonkeyPatch, url: str, secret: str
) -> None:
    message = setting_error(monkeypatch, RedisSettings, {"CARTWHEEL_REDIS_URL": url})

    assert secret not in message
    assert "CARTWHEEL_REDIS_URL='redis://**********@cache:6379/0'" in message
    assert "percent-encode them as %2F, %3F and %23" in message
    assert len(message.splitlines()) == 1


def test_percent_encoded_password_loads() -> None:
    settings = RedisSettings(url="redis://:hun%2Fter%232@cache:6379/0")

    assert masked_settings(settings)["url"] == "redis://:**********@cache:6379/0"


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


def test_masked_settings_hides_password_query_option() -> None:
    url = "rediss://cache:6379/0?protocol=3&password=hunter2&ssl_cert_reqs=none"
    settings = ServiceSettings(redis=RedisSettings(url=url))

    masked = masked_settings(settings)

    assert masked["redis"]["url"] == (
        "rediss://cache:6379/0?protocol=3&password=**********&ssl_cert_reqs=none"
    )
    assert secret_values(settings) == ["hunter2"]


def test_load_settings_masks_password_query_option_in_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "redis://127.0.0.1:6379/0?password=hunter2&protocol=5"
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", url)

    with pytest.raises(InvalidSettingsError) as raised:
        load_settings(RedisSettings)

    assert "hunter2" not in str(raised.value)
    assert "password=**********" in str(raised.value)


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
    message = setting_error(monkeypatch, ServiceSettings, {variable: value})

    assert f"{variable}={value!r}" in message
    assert "1-65535" in message


def test_load_settings_names_variable_with_invalid_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = setting_error(
        monkeypatch, NestedServiceSettings, {"CARTWHEEL_TESTNESTED_SIZES": "three"}
    )

    assert "CARTWHEEL_TESTNESTED_SIZES='three'" in message
    assert "expected a JSON value" in message


def test_lower_case_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("cartwheel_testsvc_batch_size", "7")

    settings = load_settings(ServiceSettings)

    assert settings.batch_size == 7


@pytest.mark.parametrize(
    ("settings_class", "variable", "value"),
    [
        (ServiceSettings, "cartwheel_testsvc_batch_size", "0"),
        (ServiceSettings, "Cartwheel_Kafka_Security_Protocol", "FOO"),
        (NestedServiceSettings, "cartwheel_testnested_sizes", "three"),
        (NestedServiceSettings, "cartwheel_testnested_rules__max_per_category", "0"),
    ],
)
def test_error_names_variable_as_spelled(
    monkeypatch: pytest.MonkeyPatch,
    settings_class: type[BaseSettings],
    variable: str,
    value: str,
) -> None:
    message = setting_error(monkeypatch, settings_class, {variable: value})

    assert message.startswith(f"invalid setting {variable}={value!r}: ")


def test_extra_delimiter_error_names_variable_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = setting_error(
        monkeypatch,
        ScorerSettings,
        {"CARTWHEEL_SCORER_CANDIDATES__TRENDING__WEIGHT": "1"},
    )

    assert message == (
        "invalid setting CARTWHEEL_SCORER_CANDIDATES__TRENDING__WEIGHT='1': "
        "CARTWHEEL_SCORER_CANDIDATES__TRENDING is a single value, not a block of "
        "fields; did you mean CARTWHEEL_SCORER_CANDIDATES__TRENDING_WEIGHT?"
    )


def test_extra_delimiter_error_masks_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    message = setting_error(
        monkeypatch,
        ApiSettings,
        {"CARTWHEEL_API_KAFKA__SASL_PASSWORD__X": "hunter2-secret"},
    )

    assert message == (
        "invalid setting CARTWHEEL_API_KAFKA__SASL_PASSWORD__X='**********': "
        "CARTWHEEL_API_KAFKA__SASL_PASSWORD is a single value, not a block of "
        "fields; set CARTWHEEL_API_KAFKA__SASL_PASSWORD itself, or unset "
        "CARTWHEEL_API_KAFKA__SASL_PASSWORD__X"
    )


def test_extra_delimiter_in_list_variable_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = setting_error(
        monkeypatch, NestedServiceSettings, {"CARTWHEEL_TESTNESTED_SIZES__0": "3"}
    )

    assert message.startswith(
        "invalid setting CARTWHEEL_TESTNESTED_SIZES__0='3': "
        "CARTWHEEL_TESTNESTED_SIZES is a single value, not a block of fields"
    )


def test_extra_delimiter_stops_when_value_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__TRENDING__WEIGHT", "1")
    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__TRENDING", "5")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ScorerSettings)

    assert str(caught.value) == (
        "invalid setting CARTWHEEL_SCORER_CANDIDATES__TRENDING__WEIGHT='1': the "
        "block CARTWHEEL_SCORER_CANDIDATES has no such setting, so this name "
        "would be ignored; did you mean "
        "CARTWHEEL_SCORER_CANDIDATES__TRENDING_WEIGHT?"
    )


@pytest.mark.parametrize(
    "stem",
    sorted(
        {
            *known_variables(ScorerSettings).value_stems,
            *known_variables(ApiSettings).value_stems,
        }
    ),
)
def test_every_single_value_rejects_extra_delimiter(
    monkeypatch: pytest.MonkeyPatch, stem: str
) -> None:
    settings_class = (
        ApiSettings if stem.startswith("CARTWHEEL_API_") else ScorerSettings
    )

    message = setting_error(monkeypatch, settings_class, {f"{stem}X": "1"})

    assert f"invalid setting {stem}X=" in message
    assert f"{stem.removesuffix('__')} is a single value" in message


def test_load_settings_names_list_variable_without_position(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = setting_error(
        monkeypatch, NestedServiceSettings, {"CARTWHEEL_TESTNESTED_SIZES": '[1, "x"]'}
    )

    assert "CARTWHEEL_TESTNESTED_SIZES=" in message
    assert "SIZES__1" not in message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://127.0.0.1:26679/0?protocol=5", "protocol='5' must be 2 or 3"),
        ("redis://127.0.0.1:26679/0?protocol=abc", "protocol='abc' must be 2 or 3"),
        ("redis://127.0.0.1:26679/abc", "'/abc' is not a database number"),
        ("redis://127.0.0.1:26679/0?db=-1", "db='-1' must be a database number"),
    ],
)
def test_load_settings_rejects_unusable_redis_url(
    monkeypatch: pytest.MonkeyPatch, url: str, reason: str
) -> None:
    message = setting_error(monkeypatch, ServiceSettings, {"CARTWHEEL_REDIS_URL": url})

    assert f"CARTWHEEL_REDIS_URL={url!r}" in message
    assert reason in message
    assert "expected redis:// or rediss:// URL" in message


def test_load_settings_masks_password_of_bad_redis_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = setting_error(
        monkeypatch,
        RedisSettings,
        {"CARTWHEEL_REDIS_URL": "redis://:hunter2@cache:6379/0?protocol=9"},
    )

    assert "hunter2" not in message
    assert "redis://:**********@cache:6379/0?protocol=9" in message


def test_unsplittable_redis_url_is_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = setting_error(
        monkeypatch,
        RedisSettings,
        {"CARTWHEEL_REDIS_URL": "redis://:hunter2@[::1:6379/0"},
    )

    assert message.startswith(
        "invalid setting CARTWHEEL_REDIS_URL='**********': the host is invalid "
        "because its '[' is not closed by ']'; expected redis:// or rediss:// URL"
    )
    assert "\n" not in message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://[::1/0", "its '[' is not closed by ']'"),
        ("redis://[::1", "its '[' is not closed by ']'"),
        ("redis://::1]:6379/0", "it has a ']' without a '['"),
        ("redis://[cache]:6379/0", "only an IPv6 address, such as [::1], may be"),
    ],
)
def test_redis_url_with_invalid_host_is_rejected(
    monkeypatch: pytest.MonkeyPatch, url: str, reason: str
) -> None:
    message = setting_error(monkeypatch, RedisSettings, {"CARTWHEEL_REDIS_URL": url})

    assert f"the host is invalid because {reason}" in message
    assert "port" not in message
    assert "\n" not in message


def test_redis_url_with_ipv6_host_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", "redis://:pw@[::1]:6379/0")

    settings = load_settings(RedisSettings)

    assert settings.url.get_secret_value() == "redis://:pw@[::1]:6379/0"


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:26679",
        "redis://127.0.0.1:26679/",
        "redis://127.0.0.1:26679/3?protocol=3",
        "rediss://user:pw@cache:6380/0?protocol=2&socket_timeout=2.5",
    ],
)
def test_load_settings_accepts_usable_redis_url(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", url)

    assert load_settings(RedisSettings).url.get_secret_value() == url


class DescribedRules(BaseModel):
    share: float = Field(default=0.5, ge=0, le=1, description="share of the events")


class DescribedNestedSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_TESTDESCRIBED_", env_nested_delimiter="__", frozen=True
    )

    rules: DescribedRules = Field(
        default_factory=DescribedRules, description="the rule block"
    )


def test_load_settings_gives_expected_form_of_nested_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = setting_error(
        monkeypatch,
        DescribedNestedSettings,
        {"CARTWHEEL_TESTDESCRIBED_RULES__SHARE": "2"},
    )

    assert message.endswith("; expected a number from 0 to 1: share of the events")


class FormsSettings(BaseSettings):
    count: int = Field(default=1, ge=1, le=1024)
    seconds: float = Field(default=1.0, gt=0, description="seconds to wait")
    fraction: float = Field(default=0.5, gt=0, lt=1)
    floor: int = Field(default=2, ge=2)
    seed: int = 0
    named: int = Field(default=3, ge=1, le=9, description="an odd digit")
    label: str = Field(default="x", description="a label for logs")
    comment: str = Field(default="", description="free text")


@pytest.mark.parametrize(
    ("field", "form"),
    [
        ("count", "an integer from 1 to 1024"),
        ("seconds", "a number above 0: seconds to wait"),
        ("fraction", "a number above 0 and below 1"),
        ("floor", "an integer of at least 2"),
        ("seed", "an integer"),
        ("named", "an odd digit"),
        ("label", "a label for logs"),
        ("comment", "free text"),
    ],
)
def test_expected_form_of_field(field: str, form: str) -> None:
    assert expected_form(FormsSettings.model_fields[field]) == form


def test_load_settings_reports_rejected_override_not_valid_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_TESTSVC_BATCH_SIZE", "5")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ServiceSettings, batch_size=0)

    assert str(caught.value).startswith(
        "invalid setting CARTWHEEL_TESTSVC_BATCH_SIZE=0:"
    )


def test_load_settings_names_option_of_rejected_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", "127.0.0.1:29392")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(
            KafkaSettings, bootstrap=CommandLineValue("--bootstrap", "nohost")
        )

    message = str(caught.value)
    assert message.startswith(
        "invalid option --bootstrap='nohost' (in place of CARTWHEEL_KAFKA_BOOTSTRAP):"
    )
    assert "29392" not in message


def test_load_settings_applies_command_line_value() -> None:
    settings = load_settings(
        ServiceSettings, batch_size=CommandLineValue("--batch-size", 7)
    )

    assert settings.batch_size == 7


def test_sasl_protocol_without_mechanism_names_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.delenv("CARTWHEEL_KAFKA_SASL_MECHANISM", raising=False)
    message = setting_error(
        monkeypatch,
        KafkaSettings,
        {
            "CARTWHEEL_KAFKA_SASL_USERNAME": "shop",
            "CARTWHEEL_KAFKA_SASL_PASSWORD": "s3cret",
        },
    )

    assert message == (
        "invalid setting CARTWHEEL_KAFKA_SASL_MECHANISM (not set): expected "
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 when "
        "CARTWHEEL_KAFKA_SECURITY_PROTOCOL is SASL_SSL"
    )


def _set_sasl(
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
    mechanism: str,
    username: str | None,
    password: str | None,
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_SECURITY_PROTOCOL", protocol)
    monkeypatch.setenv("CARTWHEEL_KAFKA_SASL_MECHANISM", mechanism)
    for variable, value in (
        ("CARTWHEEL_KAFKA_SASL_USERNAME", username),
        ("CARTWHEEL_KAFKA_SASL_PASSWORD", password),
    ):
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_without_username_names_variable(
    monkeypatch: pytest.MonkeyPatch, protocol: str, mechanism: str
) -> None:
    _set_sasl(monkeypatch, protocol, mechanism, username=None, password="s3cret")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(KafkaSettings)

    assert str(caught.value) == (
        "invalid setting CARTWHEEL_KAFKA_SASL_USERNAME (not set): expected a "
        f"non-empty user name when CARTWHEEL_KAFKA_SECURITY_PROTOCOL is {protocol}"
    )


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_without_password_names_variable(
    monkeypatch: pytest.MonkeyPatch, protocol: str, mechanism: str
) -> None:
    _set_sasl(monkeypatch, protocol, mechanism, username="shop", password=None)

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(KafkaSettings)

    assert str(caught.value) == (
        "invalid setting CARTWHEEL_KAFKA_SASL_PASSWORD (not set): expected a "
        f"non-empty password when CARTWHEEL_KAFKA_SECURITY_PROTOCOL is {protocol}"
    )


@pytest.mark.parametrize(
    ("variable", "value", "noun"),
    [
        ("CARTWHEEL_KAFKA_SASL_USERNAME", "", "user name"),
        ("CARTWHEEL_KAFKA_SASL_USERNAME", "  ", "user name"),
        ("CARTWHEEL_KAFKA_SASL_PASSWORD", "", "password"),
        ("CARTWHEEL_KAFKA_SASL_PASSWORD", "  ", "password"),
    ],
)
def test_sasl_blank_credential_is_rejected(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, noun: str
) -> None:
    _set_sasl(monkeypatch, "SASL_SSL", "PLAIN", username="shop", password="s3cret")
    message = setting_error(monkeypatch, KafkaSettings, {variable: value})

    assert message == (
        f"invalid setting {variable}={value!r}: expected a non-empty {noun} "
        "when CARTWHEEL_KAFKA_SECURITY_PROTOCOL is SASL_SSL"
    )


def test_sasl_without_credentials_names_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set_sasl(monkeypatch, "SASL_SSL", "SCRAM-SHA-512", username=None, password=None)

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(KafkaSettings)

    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("invalid setting CARTWHEEL_KAFKA_SASL_USERNAME ")
    assert lines[1].startswith("invalid setting CARTWHEEL_KAFKA_SASL_PASSWORD ")


def test_sasl_error_does_not_show_password(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_sasl(monkeypatch, "SASL_SSL", "PLAIN", username="", password="hunter2")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(KafkaSettings)

    assert "CARTWHEEL_KAFKA_SASL_USERNAME=''" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_with_credentials_loads(
    monkeypatch: pytest.MonkeyPatch, mechanism: str
) -> None:
    _set_sasl(monkeypatch, "SASL_SSL", mechanism, username="shop", password="s3cret")

    settings = load_settings(KafkaSettings)

    assert settings.client_config()["sasl.username"] == "shop"
    assert settings.client_config()["sasl.password"] == "s3cret"


def test_plaintext_needs_no_sasl_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    monkeypatch.delenv("CARTWHEEL_KAFKA_SASL_USERNAME", raising=False)
    monkeypatch.delenv("CARTWHEEL_KAFKA_SASL_PASSWORD", raising=False)

    settings = load_settings(KafkaSettings)

    assert "sasl.username" not in settings.client_config()


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_missing_ca_file_names_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, protocol: str
) -> None:
    _set_sasl(monkeypatch, protocol, "PLAIN", username="shop", password="s3cret")
    missing = tmp_path / "ca.pem"
    message = setting_error(
        monkeypatch, KafkaSettings, {"CARTWHEEL_KAFKA_SSL_CA_LOCATION": str(missing)}
    )

    assert message == (
        f"invalid setting CARTWHEEL_KAFKA_SSL_CA_LOCATION={str(missing)!r}: no "
        "file exists at this path; expected a path to a readable CA file in PEM "
        "format (used with SSL and SASL_SSL)"
    )


@pytest.mark.parametrize(
    ("make_value", "reason"),
    [
        (lambda folder: str(folder), "the path is a directory, not a file"),
        (lambda folder: "", "the path is empty"),
    ],
    ids=["directory", "empty"],
)
def test_unusable_ca_location_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    make_value: Callable[[Path], str],
    reason: str,
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_SECURITY_PROTOCOL", "SSL")
    value = make_value(tmp_path)
    message = setting_error(
        monkeypatch, KafkaSettings, {"CARTWHEEL_KAFKA_SSL_CA_LOCATION": value}
    )

    assert f"CARTWHEEL_KAFKA_SSL_CA_LOCATION={value!r}: {reason};" in message


def test_unreadable_ca_file_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Root reads a file whatever its mode, so the denied open is simulated.
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not read\n")
    real_open = Path.open

    def denied_open(path: Path, *args: Any, **kwargs: Any) -> Any:
        if path == ca_file:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied_open)
    message = setting_error(
        monkeypatch,
        KafkaSettings,
        {
            "CARTWHEEL_KAFKA_SECURITY_PROTOCOL": "SSL",
            "CARTWHEEL_KAFKA_SSL_CA_LOCATION": str(ca_file),
        },
    )

    assert "the file cannot be read (Permission denied)" in message


@pytest.mark.parametrize("content", [b"root:x:0:0::/root:/bin/bash\n", b"", b"0\x82"])
def test_ca_file_without_pem_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: bytes
) -> None:
    ca_file = tmp_path / "ca.der"
    ca_file.write_bytes(content)
    message = setting_error(
        monkeypatch,
        KafkaSettings,
        {
            "CARTWHEEL_KAFKA_SECURITY_PROTOCOL": "SSL",
            "CARTWHEEL_KAFKA_SSL_CA_LOCATION": str(ca_file),
        },
    )

    assert f"CARTWHEEL_KAFKA_SSL_CA_LOCATION={str(ca_file)!r}: " in message
    assert "the file has no '-----BEGIN' line" in message
    assert len(message.splitlines()) == 1


def test_readable_ca_file_loads(
    monkeypatch: pytest.MonkeyPatch, certificates: Certificates
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("CARTWHEEL_KAFKA_SSL_CA_LOCATION", str(certificates.ca))

    settings = load_settings(KafkaSettings)

    assert settings.client_config()["ssl.ca.location"] == str(certificates.ca)


@pytest.mark.parametrize("kind", ["private-key", "corrupt-certificate"])
def test_ca_file_without_certificate_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    certificates: Certificates,
    kind: str,
) -> None:
    if kind == "private-key":
        ca_file = certificates.client_key
    else:
        ca_file = tmp_path / "corrupt.pem"
        ca_file.write_text(_CORRUPT_CERTIFICATE)
    message = setting_error(
        monkeypatch,
        KafkaSettings,
        {
            "CARTWHEEL_KAFKA_SECURITY_PROTOCOL": "SSL",
            "CARTWHEEL_KAFKA_SSL_CA_LOCATION": str(ca_file),
        },
    )

    assert message.startswith(
        f"invalid setting CARTWHEEL_KAFKA_SSL_CA_LOCATION={str(ca_file)!r}: "
        "OpenSSL cannot load CA certificates from this file ("
    )
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_ca_file_without_tls_is_rejected(
    monkeypatch: pytest.MonkeyPatch, certificates: Certificates, protocol: str
) -> None:
    _set_sasl(monkeypatch, protocol, "PLAIN", username="shop", password="s3cret")
    message = setting_error(
        monkeypatch,
        KafkaSettings,
        {"CARTWHEEL_KAFKA_SSL_CA_LOCATION": str(certificates.ca)},
    )

    assert message.startswith(
        "invalid setting CARTWHEEL_KAFKA_SSL_CA_LOCATION="
        f"{str(certificates.ca)!r}: CARTWHEEL_KAFKA_SECURITY_PROTOCOL is "
        f"{protocol}, which does not use TLS, so the CA file is not read; set it "
        "to SSL or SASL_SSL, or unset this variable"
    )
    assert len(message.splitlines()) == 1


# Valid PEM armour around bytes that are not a certificate.
_CORRUPT_CERTIFICATE = (
    "-----BEGIN CERTIFICATE-----\nAAAAbm90IGEgY2VydGlmaWNhdGU=\n"
    "-----END CERTIFICATE-----\n"
)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


def _client_files(
    certificates: Certificates, *, is_encrypted: bool = False
) -> tuple[Path, Path]:
    """Return the client certificate and its key, encrypted or not."""
    if is_encrypted:
        return certificates.client_certificate, certificates.encrypted_client_key
    return certificates.client_certificate, certificates.client_key


def _set_client_certificate(
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
    certificate: str | None,
    key: str | None,
    password: str | None = None,
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_SECURITY_PROTOCOL", protocol)
    if protocol.startswith("SASL_"):
        monkeypatch.setenv("CARTWHEEL_KAFKA_SASL_MECHANISM", "PLAIN")
        monkeypatch.setenv("CARTWHEEL_KAFKA_SASL_USERNAME", "shop")
        monkeypatch.setenv("CARTWHEEL_KAFKA_SASL_PASSWORD", "s3cret")
    for variable, value in (
        ("CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION", certificate),
        ("CARTWHEEL_KAFKA_SSL_KEY_LOCATION", key),
        ("CARTWHEEL_KAFKA_SSL_KEY_PASSWORD", password),
    ):
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)


def _load_error() -> str:
    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(KafkaSettings)
    return str(caught.value)


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_client_certificate_maps_to_librdkafka(
    monkeypatch: pytest.MonkeyPatch, certificates: Certificates, protocol: str
) -> None:
    certificate, key = _client_files(certificates, is_encrypted=True)
    _set_client_certificate(
        monkeypatch, protocol, str(certificate), str(key), password=KEY_PASSWORD
    )

    config = load_settings(KafkaSettings).client_config()

    assert config["ssl.certificate.location"] == str(certificate)
    assert config["ssl.key.location"] == str(key)
    assert config["ssl.key.password"] == KEY_PASSWORD


def test_client_certificate_without_password_leaves_it_out(
    monkeypatch: pytest.MonkeyPatch, certificates: Certificates
) -> None:
    certificate, key = _client_files(certificates)
    _set_client_certificate(monkeypatch, "SSL", str(certificate), str(key))

    config = load_settings(KafkaSettings).client_config()

    assert config["ssl.key.location"] == str(key)
    assert "ssl.key.password" not in config


def test_settings_without_client_certificate_leave_it_out() -> None:
    config = KafkaSettings(security_protocol="SSL").client_config()

    assert not {"ssl.certificate.location", "ssl.key.location"} & set(config)


def test_key_password_is_masked(
    monkeypatch: pytest.MonkeyPatch, certificates: Certificates
) -> None:
    certificate, key = _client_files(certificates, is_encrypted=True)
    _set_client_certificate(
        monkeypatch, "SSL", str(certificate), str(key), password=KEY_PASSWORD
    )

    settings = ServiceSettings(kafka=load_settings(KafkaSettings))

    assert masked_settings(settings)["kafka"]["ssl_key_password"] == "**********"
    assert KEY_PASSWORD in secret_values(settings)


def test_missing_client_certificate_file_names_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, certificates: Certificates
) -> None:
    _, key = _client_files(certificates)
    missing = tmp_path / "missing.pem"
    _set_client_certificate(monkeypatch, "SSL", str(missing), str(key))

    message = _load_error()

    assert message == (
        "invalid setting CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION="
        f"{str(missing)!r}: no file exists at this path; expected a path to a "
        "readable client certificate file in PEM format, for brokers that "
        "require one (mutual TLS; used with SSL and SASL_SSL, together with "
        "CARTWHEEL_KAFKA_SSL_KEY_LOCATION)"
    )


def test_missing_key_file_names_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, certificates: Certificates
) -> None:
    certificate, _ = _client_files(certificates)
    missing = tmp_path / "missing.key"
    _set_client_certificate(monkeypatch, "SSL", str(certificate), str(missing))

    message = _load_error()

    assert message.startswith(
        f"invalid setting CARTWHEEL_KAFKA_SSL_KEY_LOCATION={str(missing)!r}: no "
        "file exists at this path; expected a path to a readable PEM file"
    )
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(
    ("variable", "content", "reason"),
    [
        (
            "CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION",
            "not a certificate\n",
            "the file has no '-----BEGIN' line, so it is not in PEM format",
        ),
        (
            "CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION",
            "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n",
            "the file has no '-----BEGIN CERTIFICATE-----' line, so it is not a "
            "certificate in PEM format",
        ),
        (
            "CARTWHEEL_KAFKA_SSL_KEY_LOCATION",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "the file has no '-----BEGIN ... PRIVATE KEY-----' line, so it is not "
            "a private key in PEM format",
        ),
    ],
    ids=["certificate-not-pem", "certificate-is-key", "key-is-certificate"],
)
def test_client_certificate_file_without_pem_block_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    certificates: Certificates,
    variable: str,
    content: str,
    reason: str,
) -> None:
    certificate, key = _client_files(certificates)
    wrong = tmp_path / "wrong.pem"
    wrong.write_text(content)
    _set_client_certificate(monkeypatch, "SSL", str(certificate), str(key))
    monkeypatch.setenv(variable, str(wrong))

    message = _load_error()

    assert message.startswith(f"invalid setting {variable}={str(wrong)!r}: {reason};")
    assert len(message.splitlines()) == 1


def test_client_certificate_without_key_is_rejected(
    monkeypatch: pytest.MonkeyPatch, certificates: Certificates
) -> None:
    certificate, _ = _client_files(certificates)
    _set_client_certificate(monkeypatch, "SSL", str(certificate), None)

    message = _load_error()

    assert message.startswith(
        "invalid setting CARTWHEEL_KAFKA_SSL_KEY_LOCATION (not set): expected a "
        "path to the private key of the client certificate when "
        "CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION is set"
    )
    assert len(message.splitlines()) == 1


def test_key_without_client_certificate_is_rejected(
    monkeypatch: pytest.MonkeyPatch, certificates: Certificates
) -> None:
    _, key = _client_files(certificates)
    _set_client_certificate(monkeypatch, "SSL", None, str(key))

    message = _load_error()

    assert message.startswith(
        f"invalid setting CARTWHEEL_KAFKA_SSL_KEY_LOCATION={str(key)!r}: a private "
        "key is used only with its client certificate, and "
        "CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION is not set; expected a path"
    )
    assert len(message.splitlines()) == 1


def test_key_password_without_key_is_rejected_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set_client_certificate(monkeypatch, "SSL", None, None, password="hunter2")

    message = _load_error()

    assert message.startswith(
        "invalid setting CARTWHEEL_KAFKA_SSL_KEY_PASSWORD='**********': a key "
        "password is used only with a private key, and "
        "CARTWHEEL_KAFKA_SSL_KEY_LOCATION is not set; expected the password"
    )
    assert "hunter2" not in message


def test_encrypted_key_without_password_is_rejected(
    monkeypatch: pytest.MonkeyPatch, certificates: Certificates
) -> None:
    certificate, key = _client_files(certificates, is_encrypted=True)
    _set_client_certificate(monkeypatch, "SSL", str(certificate), str(key))

    message = _load_error()

    assert message.startswith(
        "invalid setting CARTWHEEL_KAFKA_SSL_KEY_PASSWORD (not set): expected the "
        "password of the encrypted private key in CARTWHEEL_KAFKA_SSL_KEY_LOCATION"
    )


def test_empty_key_password_is_rejected(
    monkeypatch: pytest.MonkeyPatch, certificates: Certificates
) -> None:
    certificate, key = _client_files(certificates)
    _set_client_certificate(monkeypatch, "SSL", str(certificate), str(key), "")

    message = _load_error()

    assert message.startswith(
        "invalid setting CARTWHEEL_KAFKA_SSL_KEY_PASSWORD='': the password is empty"
    )


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_client_certificate_without_tls_is_rejected(
    monkeypatch: pytest.MonkeyPatch, certificates: Certificates, protocol: str
) -> None:
    certificate, key = _client_files(certificates)
    _set_client_certificate(monkeypatch, protocol, str(certificate), str(key))

    message = _load_error()

    assert message.startswith(
        "invalid setting CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION="
        f"{str(certificate)!r}: CARTWHEEL_KAFKA_SECURITY_PROTOCOL is {protocol}, "
        "which does not use TLS, so no client certificate is sent; set it to SSL "
        "or SASL_SSL, or unset this variable; expected a path"
    )
    assert len(message.splitlines()) == 1


def test_key_without_tls_is_rejected(
    monkeypatch: pytest.MonkeyPatch, certificates: Certificates
) -> None:
    _, key = _client_files(certificates)
    _set_client_certificate(monkeypatch, "PLAINTEXT", None, str(key))

    message = _load_error()

    assert message.startswith(
        f"invalid setting CARTWHEEL_KAFKA_SSL_KEY_LOCATION={str(key)!r}: "
        "CARTWHEEL_KAFKA_SECURITY_PROTOCOL is PLAINTEXT, which does not use TLS"
    )
    assert len(message.splitlines()) == 1


def test_key_of_another_certificate_is_rejected(
    monkeypatch: pytest.MonkeyPatch, certificates: Certificates
) -> None:
    key = certificates.untrusted_client_key
    _set_client_certificate(
        monkeypatch, "SSL", str(certificates.client_certificate), str(key)
    )

    message = _load_error()

    assert message.startswith(
        f"invalid setting CARTWHEEL_KAFKA_SSL_KEY_LOCATION={str(key)!r}: the "
        "private key in CARTWHEEL_KAFKA_SSL_KEY_LOCATION does not belong to the "
        "certificate in CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION;"
    )
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(
    ("is_encrypted", "reason"),
    [
        (
            True,
            "the password does not decrypt the private key in "
            "CARTWHEEL_KAFKA_SSL_KEY_LOCATION, or the encrypted key is damaged (",
        ),
        (
            False,
            "the private key in CARTWHEEL_KAFKA_SSL_KEY_LOCATION is not encrypted, "
            "so it takes no password; unset this variable",
        ),
    ],
    ids=["wrong-password", "unencrypted-key"],
)
def test_key_password_is_rejected_masked(
    monkeypatch: pytest.MonkeyPatch,
    certificates: Certificates,
    is_encrypted: bool,
    reason: str,
) -> None:
    certificate, key = _client_files(certificates, is_encrypted=is_encrypted)
    _set_client_certificate(
        monkeypatch, "SSL", str(certificate), str(key), password="hunter2"
    )

    message = _load_error()

    assert message.startswith(
        f"invalid setting CARTWHEEL_KAFKA_SSL_KEY_PASSWORD='**********': {reason}"
    )
    assert "hunter2" not in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("url", ["", "  "])
def test_blank_redis_url_is_shown(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    message = setting_error(monkeypatch, RedisSettings, {"CARTWHEEL_REDIS_URL": url})

    assert f"CARTWHEEL_REDIS_URL={url!r}:" in message


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400"])
def test_float_setting_rejects_non_finite(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    message = setting_error(
        monkeypatch, HotPathSettings, {"CARTWHEEL_HOTPATH_POLL_TIMEOUT_SECONDS": value}
    )

    assert "Input should be a finite number" in message
    assert "expected a number above 0 and at most 60" in message


@pytest.mark.parametrize("key", ["", "   "])
def test_blank_checkpoint_key_is_rejected(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    message = setting_error(
        monkeypatch, LearnerSettings, {"CARTWHEEL_LEARNER_CHECKPOINT_KEY": key}
    )

    assert message == (
        f"invalid setting CARTWHEEL_LEARNER_CHECKPOINT_KEY={key!r}: expected a "
        "non-empty secret, or leave the variable unset"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CARTWHEEL_TOPIC_EVENTS", ""),
        ("CARTWHEEL_TOPIC_EVENTS", "a/b"),
        ("CARTWHEEL_TOPIC_MODELS", "x" * 250),
        ("CARTWHEEL_TOPIC_CATALOG", ".."),
        ("CARTWHEEL_TOPIC_EVENTS", "__consumer_offsets"),
        ("CARTWHEEL_TOPIC_RECOMMENDATIONS_PREFIX", "r" * 239),
    ],
)
def test_invalid_topic_name_is_rejected(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    message = setting_error(monkeypatch, TopicSettings, {variable: value})

    assert message.startswith(f"invalid setting {variable}={value!r}: ")
    assert "letters, digits, '.', '_' or '-'" in message
    assert "should match pattern" not in message


@pytest.mark.parametrize(
    ("variable", "value", "other"),
    [
        ("CARTWHEEL_TOPIC_DEAD_LETTERS", "events", "CARTWHEEL_TOPIC_EVENTS"),
        ("CARTWHEEL_TOPIC_MODELS", "catalog", "CARTWHEEL_TOPIC_CATALOG"),
        (
            "CARTWHEEL_TOPIC_TRAINING_EXAMPLES",
            "recommendations.reviews",
            "CARTWHEEL_TOPIC_RECOMMENDATIONS_PREFIX",
        ),
        ("CARTWHEEL_TOPIC_CATALOG", "events_dlq", "CARTWHEEL_TOPIC_DEAD_LETTERS"),
    ],
)
def test_topic_named_twice_is_rejected(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, other: str
) -> None:
    message = setting_error(monkeypatch, TopicSettings, {variable: value})

    assert message.startswith(f"invalid setting {variable}={value!r}: ")
    assert f"the topic {value!r} is also named by the default of {other}" in message


def test_topic_clash_names_set_variable_not_later_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = setting_error(
        monkeypatch, TopicSettings, {"CARTWHEEL_TOPIC_EVENTS": "models"}
    )

    assert message.startswith("invalid setting CARTWHEEL_TOPIC_EVENTS='models': ")
    assert (
        "the topic 'models' is also named by the default of CARTWHEEL_TOPIC_MODELS"
        in message
    )


def test_topic_clash_of_two_set_variables_names_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variables = {
        "CARTWHEEL_TOPIC_EVENTS": "shared",
        "CARTWHEEL_TOPIC_MODELS": "shared",
    }

    message = setting_error(monkeypatch, TopicSettings, variables)

    assert message.startswith("invalid setting CARTWHEEL_TOPIC_MODELS='shared': ")
    assert "the topic 'shared' is also named by CARTWHEEL_TOPIC_EVENTS;" in message


def test_default_topic_names_load() -> None:
    topics = TopicSettings()

    assert topics.recommendations("products") == "recommendations.products"


@pytest.mark.parametrize("url", ["redis://", "redis:///0", "redis://:pw@/0"])
def test_redis_url_without_host_is_rejected(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    message = setting_error(monkeypatch, RedisSettings, {"CARTWHEEL_REDIS_URL": url})

    assert "expected a redis:// or rediss:// URL with a host" in message
    assert "pw" not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://", "redis://"),
        ("unix:///tmp/redis.sock", "unix:///tmp/redis.sock"),
        ("default:s3cret", "**********"),
    ],
)
def test_masked_url_keeps_what_holds_no_password(url: str, shown: str) -> None:
    # model_construct skips validation, as the error path meets invalid URLs.
    settings = RedisSettings.model_construct(url=SecretStr(url), key_prefix="cw")

    assert masked_settings(settings)["url"] == shown


@pytest.mark.parametrize(
    ("settings_class", "variable"),
    [
        (ApiSettings, "CARTWHEEL_API_HOST"),
        (HotPathSettings, "CARTWHEEL_HOTPATH_METRICS_HOST"),
        (TrainerSettings, "CARTWHEEL_TRAINER_METRICS_HOST"),
    ],
)
def test_blank_listen_host_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
    settings_class: type[BaseSettings],
    variable: str,
) -> None:
    # A blank host would make the server listen on every interface.
    message = setting_error(monkeypatch, settings_class, {variable: ""})

    assert message.startswith(
        f"invalid setting {variable}='': the host is empty; expected an IP "
        "address or host name"
    )


# Every folder setting; a blank value would resolve to the current directory.
FOLDER_SETTINGS = [
    ("services.demo.settings", "DemoSettings", "CARTWHEEL_DEMO_STATE_DIR"),
    ("services.demo.settings", "DemoSettings", "CARTWHEEL_DEMO_REPORT_DIR"),
    (
        "services.evaluation.settings",
        "EvaluationSettings",
        "CARTWHEEL_EVALUATION_REPORT_DIR",
    ),
    ("services.feedback.settings", "FeedbackSettings", "CARTWHEEL_FEEDBACK_DATA_DIR"),
    ("services.infra.settings", "InfraSettings", "CARTWHEEL_INFRA_STATE_DIR"),
    ("services.learner.settings", "LearnerSettings", "CARTWHEEL_LEARNER_DATA_DIR"),
    (
        "services.learner.settings",
        "LearnerSettings",
        "CARTWHEEL_LEARNER_CHECKPOINT_DIR",
    ),
    ("services.replay.settings", "Settings", "CARTWHEEL_REPLAY_DATA_DIR"),
    ("services.trainer.settings", "TrainerSettings", "CARTWHEEL_TRAINER_REGISTRY_DIR"),
]


@pytest.mark.parametrize(
    ("module", "class_name", "variable"),
    FOLDER_SETTINGS,
    ids=[variable for _, _, variable in FOLDER_SETTINGS],
)
@pytest.mark.parametrize("value", ["", "  "])
def test_blank_folder_setting_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    class_name: str,
    variable: str,
    value: str,
) -> None:
    settings_class = getattr(importlib.import_module(module), class_name)
    message = setting_error(monkeypatch, settings_class, {variable: value})

    assert message.startswith(
        f"invalid setting {variable}={value!r}: a blank path would mean the "
        "current directory; expected a "
    )
    assert "\n" not in message


# Every consumer group id setting. confluent-kafka aborts the process on a
# whitespace-only group.id, so a blank one must fail as a settings error.
GROUP_ID_SETTINGS = [
    ("services.hotpath.settings", "HotPathSettings", "CARTWHEEL_HOTPATH_GROUP_ID"),
    ("services.features.settings", "CatalogSettings", "CARTWHEEL_FEATURES_GROUP_ID"),
    (
        "services.evaluation.settings",
        "EvaluationSettings",
        "CARTWHEEL_EVALUATION_GROUP_ID",
    ),
]
each_group_id_setting = pytest.mark.parametrize(
    ("module", "class_name", "variable"),
    GROUP_ID_SETTINGS,
    ids=[variable for _, _, variable in GROUP_ID_SETTINGS],
)


@each_group_id_setting
@pytest.mark.parametrize("value", ["", " ", "\t \n"])
def test_blank_group_id_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    class_name: str,
    variable: str,
    value: str,
) -> None:
    settings_class = getattr(importlib.import_module(module), class_name)
    message = setting_error(monkeypatch, settings_class, {variable: value})

    assert message.startswith(
        f"invalid setting {variable}={value!r}: a consumer group id cannot be "
        "blank; expected "
    )
    assert "\n" not in message


@each_group_id_setting
def test_group_id_keeps_inner_spaces(
    monkeypatch: pytest.MonkeyPatch, module: str, class_name: str, variable: str
) -> None:
    settings_class = getattr(importlib.import_module(module), class_name)
    monkeypatch.setenv(variable, "shop a")

    settings = load_settings(settings_class)

    assert settings.group_id == "shop a"


def test_dot_folder_setting_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_REPLAY_DATA_DIR", ".")

    settings = load_settings(ReplaySettings)

    assert settings.data_dir == Path(".")


def test_invalid_promotion_event_lists_event_types(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = setting_error(
        monkeypatch,
        ScorerSettings,
        {"CARTWHEEL_SCORER_SURFACES__PROMOTION_EVENTS": '["view"]'},
    )

    assert message == (
        "invalid setting CARTWHEEL_SCORER_SURFACES__PROMOTION_EVENTS='[\"view\"]': "
        "expected a JSON list of the event types that trigger a promotions "
        'slate, each one of "click", "cart_add" or "purchase"'
    )


@pytest.mark.parametrize("value", ["view", "click,purchase"])
def test_promotion_events_not_json_lists_event_types(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    message = setting_error(
        monkeypatch,
        ScorerSettings,
        {
            "CARTWHEEL_SCORER_SURFACES__PROMOTION_EVENTS": value,
            "CARTWHEEL_SCORER_SURFACES__PROMOTIONS_SIZE": "3",
        },
    )

    assert message == (
        f"invalid setting CARTWHEEL_SCORER_SURFACES__PROMOTION_EVENTS={value!r}: "
        "the value is not valid JSON; expected a JSON list of the event types "
        'that trigger a promotions slate, each one of "click", "cart_add" or '
        '"purchase"'
    )


def test_invalid_literal_setting_lists_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = setting_error(
        monkeypatch, TrainerSettings, {"CARTWHEEL_TRAINER_LOG_LEVEL": "LOUD"}
    )

    assert message == (
        "invalid setting CARTWHEEL_TRAINER_LOG_LEVEL='LOUD': "
        "expected DEBUG, INFO, WARNING or ERROR, in upper or lower case"
    )


def test_secret_values_leave_url_without_password() -> None:
    settings = RedisSettings(url="redis://127.0.0.1:6379/0")

    assert secret_values(settings) == []


def test_every_invalid_block_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    message = setting_error(
        monkeypatch,
        HotPathSettings,
        {
            "CARTWHEEL_KAFKA_SECURITY_PROTOCOL": "bad",
            "CARTWHEEL_REDIS_KEY_PREFIX": "!!",
            "CARTWHEEL_HOTPATH_BATCH_SIZE": "0",
        },
    )

    lines = message.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(
        "invalid setting CARTWHEEL_KAFKA_SECURITY_PROTOCOL='bad'"
    )
    assert lines[1].startswith("invalid setting CARTWHEEL_REDIS_KEY_PREFIX='!!'")
    assert lines[2].startswith("invalid setting CARTWHEEL_HOTPATH_BATCH_SIZE='0'")


def test_shared_block_error_reported_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # The API and its scorer settings both read CARTWHEEL_KAFKA_*.
    message = setting_error(
        monkeypatch, ApiSettings, {"CARTWHEEL_KAFKA_SECURITY_PROTOCOL": "bad"}
    )

    assert message.count("CARTWHEEL_KAFKA_SECURITY_PROTOCOL") == 1


def test_corrupt_certificate_is_blamed_not_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, certificates: Certificates
) -> None:
    _, key = _client_files(certificates, is_encrypted=True)
    corrupt = tmp_path / "corrupt.crt"
    corrupt.write_text(_CORRUPT_CERTIFICATE)
    _set_client_certificate(
        monkeypatch, "SSL", str(corrupt), str(key), password=KEY_PASSWORD
    )

    message = _load_error()

    assert message.startswith(
        "invalid setting CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION="
        f"{str(corrupt)!r}: OpenSSL cannot load the certificate in this file ("
    )
    assert len(message.splitlines()) == 1


def test_encrypted_key_of_another_certificate_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, certificates: Certificates
) -> None:
    key = tmp_path / "other-encrypted.key"
    subprocess.run(
        [
            "openssl",
            "pkey",
            "-in",
            str(certificates.untrusted_client_key),
            "-out",
            str(key),
            "-aes256",
            "-passout",
            f"pass:{KEY_PASSWORD}",
        ],
        check=True,
    )
    _set_client_certificate(
        monkeypatch,
        "SSL",
        str(certificates.client_certificate),
        str(key),
        password=KEY_PASSWORD,
    )

    message = _load_error()

    assert message.startswith(
        f"invalid setting CARTWHEEL_KAFKA_SSL_KEY_LOCATION={str(key)!r}: the "
        "private key in CARTWHEEL_KAFKA_SSL_KEY_LOCATION does not belong to the "
        "certificate in CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION;"
    )
    assert "KEY_PASSWORD" not in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("is_encrypted", [False, True], ids=["plain", "encrypted"])
def test_garbage_key_is_blamed_not_certificate(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    certificates: Certificates,
    is_encrypted: bool,
) -> None:
    label = "ENCRYPTED PRIVATE KEY" if is_encrypted else "PRIVATE KEY"
    key = tmp_path / "garbage.key"
    key.write_text(
        f"-----BEGIN {label}-----\nAAAAbm90IGEga2V5\n-----END {label}-----\n"
    )
    password = KEY_PASSWORD if is_encrypted else None
    _set_client_certificate(
        monkeypatch,
        "SSL",
        str(certificates.client_certificate),
        str(key),
        password=password,
    )

    message = _load_error()

    assert message.startswith(
        f"invalid setting CARTWHEEL_KAFKA_SSL_KEY_LOCATION={str(key)!r}: "
        "OpenSSL cannot load the private key in this file ("
    )
    assert len(message.splitlines()) == 1


_RANKER_BLEND_FORM = (
    "Input should be less than or equal to 1; expected a number from 0 to 1: "
    "weight of the trained ranker's cart and purchase probabilities against "
    "the heuristic's"
)


@pytest.mark.parametrize(
    "variable", ["CARTWHEEL_SCORER_WEIGHTS", "cartwheel_scorer_weights"]
)
def test_json_block_bad_value_names_key(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    value = '{"click": 1, "Ranker_Blend": 5}'

    message = setting_error(monkeypatch, ScorerSettings, {variable: value})

    assert message == (
        f'invalid setting {variable}={value!r}, key "Ranker_Blend": '
        f"{_RANKER_BLEND_FORM}"
    )


def test_nested_json_bad_value_names_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = '{"weights": {"ranker_blend": 5}}'

    message = setting_error(monkeypatch, ApiSettings, {"CARTWHEEL_API_SCORER": value})

    assert message == (
        f'invalid setting CARTWHEEL_API_SCORER={value!r}, key "weights.ranker_blend": '
        f"{_RANKER_BLEND_FORM}"
    )


def test_nested_variable_beside_json_block_is_named_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = setting_error(
        monkeypatch,
        ScorerSettings,
        {
            "CARTWHEEL_SCORER_WEIGHTS": '{"ranker_blend": 0.5}',
            "CARTWHEEL_SCORER_WEIGHTS__RANKER_BLEND": "5",
        },
    )

    assert message == (
        f"invalid setting CARTWHEEL_SCORER_WEIGHTS__RANKER_BLEND='5': "
        f"{_RANKER_BLEND_FORM}"
    )


def test_failing_default_named_not_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = json.dumps(
        {
            "covisitation_weight": 0,
            "session_knn_weight": 0,
            "trending_weight": 0,
            "top_categories": 0,
        }
    )

    message = setting_error(
        monkeypatch, ScorerSettings, {"CARTWHEEL_SCORER_CANDIDATES": value}
    )

    starts = [
        f'invalid setting CARTWHEEL_SCORER_CANDIDATES={value!r}, key "{key}"'
        if key
        else "invalid setting CARTWHEEL_SCORER_CANDIDATES__CATEGORY_TRENDING_WEIGHT "
        "(not set, default 0.4)"
        for key in (
            "covisitation_weight",
            "session_knn_weight",
            "",
            "trending_weight",
            "top_categories",
        )
    ]
    lines = message.splitlines()
    assert len(lines) == len(starts)
    for line, start in zip(lines, starts, strict=True):
        assert line.startswith(f"{start}: expected the covisitation")


@pytest.mark.parametrize("value", ["3", "[1]", '"a"', "abc"])
def test_block_plain_value_shows_forms(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    message = setting_error(
        monkeypatch, ScorerSettings, {"CARTWHEEL_SCORER_WEIGHTS": value}
    )

    assert message == (
        f"invalid setting CARTWHEEL_SCORER_WEIGHTS={value!r}: this variable sets "
        "a whole block of settings; expected a JSON object such as "
        '{"objective": "engagement"}, or one CARTWHEEL_SCORER_WEIGHTS__<NAME> '
        "variable per setting"
    )


def test_settings_block_plain_value_names_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = setting_error(
        monkeypatch, HotPathSettings, {"CARTWHEEL_HOTPATH_TOPICS": "3"}
    )

    assert message == (
        "invalid setting CARTWHEEL_HOTPATH_TOPICS='3': this variable sets a whole "
        'block of settings; expected a JSON object such as {"events": "events"}, '
        "or one CARTWHEEL_TOPIC_<NAME> variable per setting"
    )


def test_nested_block_plain_value_expects_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = '{"weights": 3}'

    message = setting_error(monkeypatch, ApiSettings, {"CARTWHEEL_API_SCORER": value})

    assert message == (
        f'invalid setting CARTWHEEL_API_SCORER={value!r}, key "weights": expected '
        'a JSON object of the block\'s settings, such as {"objective": "engagement"}'
    )


@pytest.mark.parametrize(
    "variables",
    [
        {"CARTWHEEL_SCORER_REDIS__URL": "http://user:hunter2@host"},
        {"CARTWHEEL_SCORER_REDIS": '{"url": "http://user:hunter2@host"}'},
        {"CARTWHEEL_SCORER_REDIS": '{"url": "redis://user:hunter2@host"'},
        {"CARTWHEEL_SCORER_REDIS": "redis://user:hunter2@host"},
    ],
)
def test_secret_of_nested_block_is_masked_in_error(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    message = setting_error(monkeypatch, ScorerSettings, variables)

    assert "hunter2" not in message
    assert "CARTWHEEL_SCORER_REDIS" in message


@pytest.mark.parametrize(
    "variables",
    [
        {"CARTWHEEL_API_SCORER": '{"redis": "redis://:hunter2@127.0.0.1:1/0"}'},
        {"CARTWHEEL_API_KAFKA": '{"sasl_password": 12345, "security_protocol": "x"}'},
        {"CARTWHEEL_API_REDIS": '{"url": "redis://u:hunter2@127.0.0.1:1/0", "url": 5}'},
    ],
)
def test_json_block_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    message = setting_error(monkeypatch, ApiSettings, variables)

    assert "hunter2" not in message
    assert "12345" not in message


def test_block_set_to_json_null_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    message = setting_error(
        monkeypatch, ScorerSettings, {"CARTWHEEL_SCORER_WEIGHTS": "null"}
    )

    assert message.startswith("invalid setting CARTWHEEL_SCORER_WEIGHTS='null': ")
    assert "sets a whole block of settings" in message


@pytest.mark.parametrize(
    ("settings_class", "variable", "expected"),
    [
        (HotPathSettings, "CARTWHEEL_HOTPATH_STAGES", "expected JSON list of one"),
        (EvaluationSettings, "CARTWHEEL_EVALUATION_CUTOFFS", "expected list lengths"),
    ],
    ids=["list", "tuple"],
)
def test_collection_set_to_json_null_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
    settings_class: type[BaseSettings],
    variable: str,
    expected: str,
) -> None:
    message = setting_error(monkeypatch, settings_class, {variable: "null"})

    assert message.startswith(
        f"invalid setting {variable}='null': null would leave the default in "
        f"place; {expected}"
    )


LOG_LEVEL_SETTINGS = [
    pytest.param(ApiSettings, "CARTWHEEL_API_LOG_LEVEL", id="api"),
    pytest.param(CatalogSettings, "CARTWHEEL_FEATURES_LOG_LEVEL", id="features"),
    pytest.param(EvaluationSettings, "CARTWHEEL_EVALUATION_LOG_LEVEL", id="evaluation"),
    pytest.param(FeedbackSettings, "CARTWHEEL_FEEDBACK_LOG_LEVEL", id="feedback"),
    pytest.param(HotPathSettings, "CARTWHEEL_HOTPATH_LOG_LEVEL", id="hotpath"),
    pytest.param(ReplaySettings, "CARTWHEEL_REPLAY_LOG_LEVEL", id="replay"),
    pytest.param(TrainerSettings, "CARTWHEEL_TRAINER_LOG_LEVEL", id="trainer"),
]


@pytest.mark.parametrize(("settings_class", "variable"), LOG_LEVEL_SETTINGS)
@pytest.mark.parametrize("value", ["debug", "Warning", "ERROR"])
def test_log_level_accepts_any_case(
    monkeypatch: pytest.MonkeyPatch,
    settings_class: type[BaseSettings],
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)

    settings = load_settings(settings_class)

    assert settings.log_level == value.upper()


@pytest.mark.parametrize(("settings_class", "variable"), LOG_LEVEL_SETTINGS)
def test_log_level_rejects_unknown_name(
    monkeypatch: pytest.MonkeyPatch, settings_class: type[BaseSettings], variable: str
) -> None:
    message = setting_error(monkeypatch, settings_class, {variable: "verbose"})

    assert message == (
        f"invalid setting {variable}='verbose': expected DEBUG, INFO, WARNING or "
        "ERROR, in upper or lower case"
    )


# Redis rejects an expiry past a point, so each setting that becomes one, and
# the lookback over the counts that one expires, has a ten-year upper bound.
REDIS_TTL_SETTINGS = [
    pytest.param(HotPathSettings, "CARTWHEEL_HOTPATH_USER_TTL_SECONDS", id="user"),
    pytest.param(HotPathSettings, "CARTWHEEL_HOTPATH_ITEM_TTL_SECONDS", id="item"),
    pytest.param(
        CatalogSettings, "CARTWHEEL_FEATURES_CATALOG_TTL_SECONDS", id="catalog"
    ),
    pytest.param(
        FeedbackSettings, "CARTWHEEL_FEEDBACK_RETENTION_SECONDS", id="retention"
    ),
    pytest.param(
        FeedbackSettings, "CARTWHEEL_FEEDBACK_RATIO_LOOKBACK_SECONDS", id="lookback"
    ),
    pytest.param(
        ScorerSettings, "CARTWHEEL_SCORER_LATEST_SLATE_TTL_SECONDS", id="slate"
    ),
]


@pytest.mark.parametrize(("settings_class", "variable"), REDIS_TTL_SETTINGS)
def test_redis_ttl_setting_accepts_ten_years(
    monkeypatch: pytest.MonkeyPatch, settings_class: type[BaseSettings], variable: str
) -> None:
    monkeypatch.setenv(variable, str(MAX_REDIS_TTL_SECONDS))

    settings = load_settings(settings_class)

    prefix = str(settings_class.model_config["env_prefix"])
    field = variable.removeprefix(prefix).lower()
    assert getattr(settings, field) == MAX_REDIS_TTL_SECONDS == 315_360_000


@pytest.mark.parametrize(("settings_class", "variable"), REDIS_TTL_SETTINGS)
@pytest.mark.parametrize("value", ["315360001", "100000000000000000", "9" * 20])
def test_redis_ttl_setting_rejects_more_than_ten_years(
    monkeypatch: pytest.MonkeyPatch,
    settings_class: type[BaseSettings],
    variable: str,
    value: str,
) -> None:
    message = setting_error(monkeypatch, settings_class, {variable: value})

    assert message.startswith(f"invalid setting {variable}={value!r}: ")
    assert "to 315,360,000: " in message
    assert "ten years" in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("value", ["86400.5", "1e300", "1e400"])
def test_trainer_lock_ttl_rejects_more_than_a_day(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    message = setting_error(
        monkeypatch, TrainerSettings, {"CARTWHEEL_TRAINER_LOCK_TTL_SECONDS": value}
    )

    assert message.startswith(
        f"invalid setting CARTWHEEL_TRAINER_LOCK_TTL_SECONDS={value!r}: "
    )
    assert "expected a number from 1 to 86400: " in message


def test_trainer_lock_ttl_accepts_a_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_TRAINER_LOCK_TTL_SECONDS", "86400")

    assert load_settings(TrainerSettings).lock_ttl_seconds == 86_400
