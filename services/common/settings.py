"""Settings blocks shared by every service, and the one way to load settings.

Each service defines a frozen ``Settings`` class in its own ``settings.py`` with
the env prefix ``CARTWHEEL_<SERVICE>_`` and nests the shared blocks below, which
read ``CARTWHEEL_KAFKA_*``, ``CARTWHEEL_REDIS_*`` and ``CARTWHEEL_TOPIC_*``
(:mod:`services.common.topic_settings`). Call :func:`load_settings` once in
``__main__``: it turns a validation failure into one
:class:`InvalidSettingsError` that names the variable, the value and the
expected form. The loader lives in :mod:`services.common.setting_loader` and
the masking of secrets in :mod:`services.common.setting_secrets`; this module
re-exports what services import.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.local_ports import (
    local_kafka_bootstrap,
    local_port,
    local_redis_url,
)
from services.common.redis_url import redis_url_problem
from services.common.setting_integers import PlainIntegers
from services.common.setting_loader import (
    CommandLineValue,
    child_environment,
    expected_form,
    join_error_lines,
    load_settings,
)
from services.common.setting_secrets import (
    has_unencoded_user_info,
    masked_settings,
    secret_values,
)
from services.common.setting_text import ListenHost, MetricsHost, NonBlankName
from services.common.tls_files import (
    CERTIFICATE_BLOCK,
    PRIVATE_KEY_BLOCK,
    ca_file_problem,
    certificate_file_problem,
    client_key_problem,
    is_encrypted_key,
    pem_file_problem,
)
from services.common.topic_settings import TopicSettings

__all__ = [
    "child_environment",
    "CommandLineValue",
    "ConsumerGroupId",
    "expected_form",
    "join_error_lines",
    "KafkaSettings",
    "ListenHost",
    "LogLevel",
    "MAX_REDIS_TTL_SECONDS",
    "MetricsHost",
    "NonBlankName",
    "NonBlankPath",
    "PlainIntegers",
    "RedisSettings",
    "TopicSettings",
    "load_settings",
    "masked_settings",
    "secret_values",
]

# ASCII digits only: "\d" also matches other scripts' digits, which int() reads.
_HOST_PORT = re.compile(r"[A-Za-z0-9._\-\[\]:]+:[0-9]{1,5}")


def _reject_blank_path(value: Any) -> Any:
    # Path("") is the current directory, so a variable set to nothing would
    # silently put files there, or read them from there.
    if isinstance(value, str) and not value.strip():
        raise ValueError("a blank path would mean the current directory")
    return value


# Redis rejects an expiry whose milliseconds, added to the current time, do not
# fit a signed 64-bit integer. A setting past that would pass validation and
# then fail every write, which a service takes for Redis being down. Ten years
# is far within the limit, and no shop needs a key to live longer.
MAX_REDIS_TTL_SECONDS = 10 * 365 * 86_400
"""The largest number of seconds that a setting may give a Redis key to live."""


NonBlankPath = Annotated[Path, BeforeValidator(_reject_blank_path)]
"""A path setting that rejects a blank value. "." still names the current folder."""


def _reject_blank_group_id(value: Any) -> Any:
    # confluent-kafka 2.16 aborts the whole process with a failed C assertion
    # when a Consumer is built with a whitespace-only group.id.
    if isinstance(value, str) and not value.strip():
        raise ValueError("a consumer group id cannot be blank")
    return value


ConsumerGroupId = Annotated[str, BeforeValidator(_reject_blank_group_id)]
"""A consumer group id setting that rejects an empty or whitespace-only value."""


def _upper_case(value: Any) -> Any:
    # The --log-level option accepts any case, so the variables do too.
    return value.upper() if isinstance(value, str) else value


LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR"],
    BeforeValidator(_upper_case),
    Field(description="DEBUG, INFO, WARNING or ERROR, in upper or lower case"),
]
"""A log level setting. A value in another case, such as debug, is read upper-cased."""


class KafkaSettings(PlainIntegers, BaseSettings):
    """How to reach the Kafka cluster and authenticate to it."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_KAFKA_", frozen=True, allow_inf_nan=False
    )

    bootstrap: str = Field(
        default="127.0.0.1:19092",
        description="comma-separated host:port list of brokers; unset, the "
        "local broker at CARTWHEEL_INFRA_KAFKA_PORT when that is set",
    )
    security_protocol: str = Field(
        default="PLAINTEXT",
        pattern=r"^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$",
        description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    )
    sasl_mechanism: str | None = Field(
        default=None,
        pattern=r"^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$",
        description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
        validate_default=True,
    )
    sasl_username: str | None = Field(
        default=None,
        description="the SASL user name, required with SASL_PLAINTEXT and SASL_SSL",
        validate_default=True,
    )
    sasl_password: SecretStr | None = Field(
        default=None,
        description="the SASL password, required with SASL_PLAINTEXT and SASL_SSL",
        validate_default=True,
    )
    ssl_ca_location: Path | None = Field(
        default=None,
        description="a path to a readable CA file in PEM format (used with SSL "
        "and SASL_SSL)",
    )
    ssl_certificate_location: Path | None = Field(
        default=None,
        description="a path to a readable client certificate file in PEM format, "
        "for brokers that require one (mutual TLS; used with SSL and SASL_SSL, "
        "together with CARTWHEEL_KAFKA_SSL_KEY_LOCATION)",
    )
    ssl_key_location: Path | None = Field(
        default=None,
        description="a path to a readable PEM file with the private key of the "
        "client certificate, required when CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION "
        "is set",
        validate_default=True,
    )
    ssl_key_password: SecretStr | None = Field(
        default=None,
        description="the password of an encrypted private key in "
        "CARTWHEEL_KAFKA_SSL_KEY_LOCATION; leave it unset for a key that is not "
        "encrypted",
        validate_default=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _default_to_local_broker(cls, data: Any) -> Any:
        # Every command follows the port of 'infra up', so none publishes to
        # another checkout's broker on the default port.
        return _with_local_address(
            data, "bootstrap", "kafka_port", local_kafka_bootstrap
        )

    @field_validator("bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        parts = [part.strip() for part in value.split(",")]
        if not parts or not all(
            _HOST_PORT.fullmatch(part) and 1 <= int(part.rpartition(":")[2]) <= 65535
            for part in parts
        ):
            raise ValueError(
                "expected a comma-separated list of host:port, each port 1-65535"
            )
        return ",".join(parts)

    @field_validator("sasl_mechanism")
    @classmethod
    def _check_sasl_mechanism(
        cls, value: str | None, info: ValidationInfo
    ) -> str | None:
        # librdkafka would fall back to GSSAPI, which its wheel does not ship,
        # and fail with an error that names none of these settings.
        protocol = str(info.data.get("security_protocol", ""))
        if value is None and protocol.startswith("SASL_"):
            raise ValueError(
                "expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 when "
                f"CARTWHEEL_KAFKA_SECURITY_PROTOCOL is {protocol}"
            )
        return value

    @field_validator("sasl_username", "sasl_password")
    @classmethod
    def _check_sasl_credential(
        cls, value: str | SecretStr | None, info: ValidationInfo
    ) -> str | SecretStr | None:
        # Every mechanism allowed above (PLAIN and SCRAM) signs in with a user
        # name and a password, and librdkafka rejects a missing or empty one
        # without naming the variable.
        protocol = str(info.data.get("security_protocol", ""))
        if not protocol.startswith("SASL_"):
            return value
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is None or not text.strip():
            noun = "user name" if info.field_name == "sasl_username" else "password"
            raise ValueError(
                f"expected a non-empty {noun} when "
                f"CARTWHEEL_KAFKA_SECURITY_PROTOCOL is {protocol}"
            )
        return value

    @field_validator("ssl_ca_location", mode="before")
    @classmethod
    def _check_ssl_ca_location(cls, value: Any, info: ValidationInfo) -> Any:
        # librdkafka reads the file only when a client is built, and its error
        # names no variable. The feedback service's
        # ssl.create_default_context(cafile=) takes only a file, so a
        # directory or librdkafka's "probe" is rejected.
        if not isinstance(value, str | Path) or "security_protocol" not in info.data:
            return value
        _require_tls(info, "the CA file is not read")
        _require_pem_file(value)
        problem = ca_file_problem(Path(value))
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("ssl_certificate_location", mode="before")
    @classmethod
    def _check_ssl_certificate_location(cls, value: Any, info: ValidationInfo) -> Any:
        # librdkafka fails on an unreadable certificate only when a client is
        # built, with an error that names no variable. Without TLS it ignores
        # the certificate, so the broker would never see the client's identity.
        if not isinstance(value, str | Path) or "security_protocol" not in info.data:
            return value
        _require_tls(info, "no client certificate is sent")
        _require_pem_file(value, CERTIFICATE_BLOCK)
        problem = certificate_file_problem(Path(value))
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("ssl_key_location", mode="before")
    @classmethod
    def _check_ssl_key_location(cls, value: Any, info: ValidationInfo) -> Any:
        # librdkafka rejects a key without a certificate when a client is built
        # and accepts a certificate without its key, which the TLS handshake
        # then cannot use. A field missing from info.data failed validation and
        # has its own error line already.
        if "security_protocol" not in info.data:
            return value
        if "ssl_certificate_location" not in info.data:
            return value
        certificate = info.data["ssl_certificate_location"]

        if value is None:
            if certificate is not None:
                raise ValueError(
                    "expected a path to the private key of the client certificate "
                    "when CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION is set"
                )
            return value
        if not isinstance(value, str | Path):
            return value

        _require_tls(info, "no client certificate is sent")
        if certificate is None:
            raise ValueError(
                "a private key is used only with its client certificate, and "
                "CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION is not set"
            )
        _require_pem_file(value, PRIVATE_KEY_BLOCK)

        if not is_encrypted_key(Path(value)):
            # An encrypted key is checked after the password is validated.
            problem = client_key_problem(Path(certificate), Path(value), None)
            if problem is not None:
                raise ValueError(problem.message)
        return value

    @field_validator("ssl_key_password")
    @classmethod
    def _check_ssl_key_password(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if "ssl_key_location" not in info.data:
            return value
        key = info.data["ssl_key_location"]
        if value is None:
            # Python's ssl module, used by the feedback service, would ask for
            # the password on the terminal instead of failing.
            if key is not None and is_encrypted_key(Path(key)):
                raise ValueError(
                    "expected the password of the encrypted private key in "
                    "CARTWHEEL_KAFKA_SSL_KEY_LOCATION"
                )
            return value
        if key is None:
            raise ValueError(
                "a key password is used only with a private key, and "
                "CARTWHEEL_KAFKA_SSL_KEY_LOCATION is not set"
            )
        if not value.get_secret_value():
            raise ValueError(
                "the password is empty; unset the variable for a private key "
                "that is not encrypted"
            )
        if not is_encrypted_key(Path(key)):
            raise ValueError(
                "the private key in CARTWHEEL_KAFKA_SSL_KEY_LOCATION is not "
                "encrypted, so it takes no password; unset this variable"
            )
        return value

    @model_validator(mode="after")
    def _check_encrypted_key(self) -> KafkaSettings:
        # Only here are both the encrypted key and its password known, and the
        # error goes to the variable at fault, which may be the key's.
        certificate = self.ssl_certificate_location
        key = self.ssl_key_location
        password = self.ssl_key_password
        if certificate is None or key is None or password is None:
            return self
        problem = client_key_problem(certificate, key, password.get_secret_value())
        if problem is None:
            return self
        # pydantic 2.14 keeps the location of a ValidationError raised here,
        # while a ValueError would have no field. The tests of encrypted keys
        # check the variable that each error names.
        raise ValidationError.from_exception_data(
            type(self).__name__,
            [
                InitErrorDetails(
                    type=PydanticCustomError(
                        "value_error", "{message}", {"message": problem.message}
                    ),
                    loc=(problem.field,),
                    input=getattr(self, problem.field),
                )
            ],
        )

    def client_config(self) -> dict[str, Any]:
        """Return the librdkafka settings for connection and authentication."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism is not None:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location is not None:
            config["ssl.ca.location"] = str(self.ssl_ca_location)
        if self.ssl_certificate_location is not None:
            config["ssl.certificate.location"] = str(self.ssl_certificate_location)
        if self.ssl_key_location is not None:
            config["ssl.key.location"] = str(self.ssl_key_location)
        if self.ssl_key_password is not None:
            config["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        return config


def _with_local_address(
    data: Any,
    field: str,
    port_name: Literal["kafka_port", "redis_port"],
    address: Callable[[int], str],
) -> Any:
    """Return the input ``data`` with ``field`` set to a local server's address.

    The address is ``address`` of the port that the ``CARTWHEEL_INFRA_*``
    variable of ``port_name`` sets. ``data`` is returned as it is when it
    has ``field`` already (its variable or an argument sets it), or when
    that port variable is unset.
    """
    if not isinstance(data, dict) or field in data:
        return data
    port = local_port(port_name)
    if port is None:
        return data
    return {**data, field: address(port)}


def _require_tls(info: ValidationInfo, effect: str) -> None:
    """Raise when the security protocol does not use TLS.

    ``effect`` is the consequence that the message names.
    """
    protocol = str(info.data.get("security_protocol", ""))
    if protocol not in ("SSL", "SASL_SSL"):
        raise ValueError(
            f"CARTWHEEL_KAFKA_SECURITY_PROTOCOL is {protocol}, which does not use "
            f"TLS, so {effect}; set it to SSL or SASL_SSL, or unset this variable"
        )


def _require_pem_file(
    value: str | Path, block: tuple[str, str, str] | None = None
) -> str | Path:
    """Return ``value`` when it names a usable PEM file; raise ValueError otherwise."""
    problem = pem_file_problem(str(value), block)
    if problem is not None:
        raise ValueError(problem)
    return value


class RedisSettings(PlainIntegers, BaseSettings):
    """How to reach Redis and where Cartwheel's keys live in it."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_REDIS_", frozen=True, allow_inf_nan=False
    )

    url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:16379/0"),
        description="redis:// or rediss:// URL such as redis://host:6379/0, "
        "with the password if AUTH is on and redis-py's connection options as "
        "its query, such as ?socket_timeout=5; unset, database 0 of the local "
        "redis-server at CARTWHEEL_INFRA_REDIS_PORT when that is set",
    )
    key_prefix: str = Field(
        default="cw",
        pattern=r"^[A-Za-z0-9_\-]{1,32}$",
        description="1-32 letters, digits, '_' or '-'",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_to_local_redis(cls, data: Any) -> Any:
        # The same rule as for the broker: follow the port of 'infra up'.
        return _with_local_address(data, "url", "redis_port", local_redis_url)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        try:
            return cls._check_url_parts(value)
        except ValueError:
            if has_unencoded_user_info(value.get_secret_value()):
                # The host that _check_url_parts parsed is the password's
                # tail, so its error would name the wrong problem.
                raise ValueError(
                    "the user or password contains '/', '?' or '#', which end "
                    "the host part of a URL; percent-encode them as %2F, %3F "
                    "and %23"
                ) from None
            raise

    @classmethod
    def _check_url_parts(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not re.match(r"^rediss?://", url):
            raise ValueError("expected a redis:// or rediss:// URL")
        problem = _redis_host_problem(url)
        if problem is not None:
            raise ValueError(problem)
        try:
            port = urlsplit(url).port
        except ValueError:
            port = -1
        if port != -1 and not urlsplit(url).hostname:
            # redis-py would connect to localhost:6379 instead.
            raise ValueError(
                "expected a redis:// or rediss:// URL with a host, such as "
                "redis://127.0.0.1:6379/0"
            )
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(
                "expected a redis:// or rediss:// URL whose port is 1-65535"
            )
        # Credentials and the database are checked against the server when a
        # service starts (services.common.redis_check).
        problem = redis_url_problem(url)
        if problem is not None:
            raise ValueError(problem)
        return value


def _redis_host_problem(url: str) -> str | None:
    """Return why the host of ``url`` cannot be parsed, or None.

    urlsplit raises ValueError for unbalanced brackets in the host and for
    brackets around something that is not an IPv6 address.
    """
    try:
        urlsplit(url)
    except ValueError as exc:
        error = exc
    else:
        return None
    # The host follows the user part and ends at the path, query or fragment.
    netloc = re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0]
    host = netloc.rpartition("@")[2]
    if "[" in host and "]" not in host:
        return "the host is invalid because its '[' is not closed by ']'"
    if "]" in host and "[" not in host:
        return "the host is invalid because it has a ']' without a '['"
    if "[" in host:
        return (
            "the host is invalid because only an IPv6 address, such as [::1], "
            "may be written in brackets"
        )
    return f"the host is invalid ({error})"
