"""Settings blocks shared by every service, and the one way to load settings.

Each service defines a frozen ``Settings`` class in its own ``settings.py`` with
the env prefix ``CARTWHEEL_<SERVICE>_`` and nests the shared blocks below, which
read ``CARTWHEEL_KAFKA_*`` and ``CARTWHEEL_REDIS_*``. Call :func:`load_settings`
once in ``__main__``: it turns a validation failure into one
:class:`InvalidSettingsError` that names the variable, the value and the
expected form.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import annotated_types
from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError
from redis.connection import parse_url

from schemas.recommendations import Surface
from services.common.errors import InvalidSettingsError
from services.common.setting_blocks import (
    block_form,
    example_object,
    field_info,
    has_secret,
    is_secret_field,
    json_holder,
    mask_block_object,
    spelled,
    variable_field,
)
from services.common.setting_names import (
    UnknownKey,
    UnknownVariable,
    misplaced_variables,
    model_classes,
    unknown_json_keys,
    variables_under_value,
    warn_repeated_variables,
    warn_unknown_variables,
)
from services.common.tls_files import (
    CERTIFICATE_BLOCK,
    PRIVATE_KEY_BLOCK,
    ca_file_problem,
    certificate_file_problem,
    client_key_problem,
    is_encrypted_key,
    pem_file_problem,
)

__all__ = [
    "child_environment",
    "CommandLineValue",
    "ConsumerGroupId",
    "expected_form",
    "join_error_lines",
    "KafkaSettings",
    "NonBlankPath",
    "RedisSettings",
    "TopicSettings",
    "load_settings",
    "masked_settings",
    "secret_values",
]

MASK = "**********"

SettingsT = TypeVar("SettingsT", bound=BaseSettings)

_HOST_PORT = re.compile(r"^[A-Za-z0-9._\-\[\]:]+:\d{1,5}$")


def _reject_blank_path(value: Any) -> Any:
    # Path("") is the current directory, so a variable set to nothing would
    # silently put files there, or read them from there.
    if isinstance(value, str) and not value.strip():
        raise ValueError("a blank path would mean the current directory")
    return value


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


class KafkaSettings(BaseSettings):
    """How to reach the Kafka cluster and authenticate to it."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_KAFKA_", frozen=True, allow_inf_nan=False
    )

    bootstrap: str = Field(
        default="127.0.0.1:19092",
        description="comma-separated host:port list of brokers",
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

    @field_validator("bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        parts = [part.strip() for part in value.split(",")]
        if not parts or not all(
            _HOST_PORT.match(part) and 1 <= int(part.rpartition(":")[2]) <= 65535
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


class RedisSettings(BaseSettings):
    """How to reach Redis and where Cartwheel's keys live in it."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_REDIS_", frozen=True, allow_inf_nan=False
    )

    url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:16379/0"),
        description="redis:// or rediss:// URL such as redis://host:6379/0, "
        "with the password if AUTH is on",
    )
    key_prefix: str = Field(
        default="cw",
        pattern=r"^[A-Za-z0-9_\-]{1,32}$",
        description="1-32 letters, digits, '_' or '-'",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        try:
            return cls._check_url_parts(value)
        except ValueError:
            if _has_unencoded_user_info(value.get_secret_value()):
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
        problem = _redis_url_problem(url)
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


def _has_unencoded_user_info(url: str) -> bool:
    """Return whether an '@' follows the first '/', '?' or '#' after '://'.

    A user or password with one of those characters ends the URL's host
    part early, so the password's tail is parsed as the path, query or
    fragment. A query value with an '@' matches too, so callers use this
    only to explain or hide a URL, never to reject one.
    """
    if "://" not in url:
        return False
    rest = url.split("://", 1)[1]
    ends = [rest.find(character) for character in "/?#" if character in rest]
    return "@" in rest[min(ends, default=len(rest)) :]


def _redis_url_problem(url: str) -> str | None:
    """Return why redis-py would refuse ``url`` when it connects, or None.

    redis-py parses the query options only when a client is built and checks
    the protocol only when it connects, and it ignores a path that is not a
    database number, so the same checks run here, before any connection.
    """
    try:
        options = parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        # redis-py names the query option but not its value.
        found = re.search(r"'([^']+)'", str(exc))
        if found is None:
            return str(exc).rstrip(".")
        return f"the query option {found.group(1)} has an invalid value"
    protocol = options.get("protocol")
    if protocol is not None and protocol not in (2, 3):
        return f"the query option protocol={protocol} must be 2 or 3"
    database = unquote(urlsplit(url).path).strip("/")
    if "db" not in options and database and not re.fullmatch("[0-9]+", database):
        return f"the path /{database} is not a database number such as /0"
    if options.get("db", 0) < 0:
        return f"the database number {options['db']} is negative"
    return None


# Apache Kafka accepts topic names of at most 249 of these characters.
_TOPIC_PATTERN = r"^[A-Za-z0-9._-]{1,249}$"
_TOPIC_FORM = (
    "a Kafka topic name of its own: 1 to 249 letters, digits, '.', '_' or '-', "
    "not starting with '__'"
)
_TOPIC_FIELDS = (
    "events",
    "dead_letters",
    "catalog",
    "recommendations_prefix",
    "training_examples",
    "models",
)
_LONGEST_SURFACE_SUFFIX = max((f".{surface.value}" for surface in Surface), key=len)


class TopicSettings(BaseSettings):
    """Topic names and partition counts."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_TOPIC_", frozen=True, allow_inf_nan=False
    )

    events: str = Field(
        default="events", pattern=_TOPIC_PATTERN, description=_TOPIC_FORM
    )
    dead_letters: str = Field(
        default="events.dlq", pattern=_TOPIC_PATTERN, description=_TOPIC_FORM
    )
    catalog: str = Field(
        default="catalog", pattern=_TOPIC_PATTERN, description=_TOPIC_FORM
    )
    recommendations_prefix: str = Field(
        default="recommendations",
        pattern=rf"^[A-Za-z0-9._-]{{1,{249 - len(_LONGEST_SURFACE_SUFFIX)}}}$",
        description="the start of the slate topics' names, as in "
        "PREFIX.products, which no other topic setting names: 1 to "
        f"{249 - len(_LONGEST_SURFACE_SUFFIX)} letters, digits, '.', '_' or '-'",
    )
    training_examples: str = Field(
        default="training-examples", pattern=_TOPIC_PATTERN, description=_TOPIC_FORM
    )
    models: str = Field(
        default="models", pattern=_TOPIC_PATTERN, description=_TOPIC_FORM
    )
    partitions: int = Field(
        default=6, ge=1, le=1024, description="an integer from 1 to 1024"
    )
    replication_factor: int = Field(
        default=1, ge=1, le=16, description="an integer from 1 to 16"
    )

    @field_validator(*_TOPIC_FIELDS)
    @classmethod
    def _check_topic_name(cls, value: str) -> str:
        if value in (".", ".."):
            raise ValueError(f"'{value}' is not a Kafka topic name")
        if value.startswith("__"):
            raise ValueError(
                f"{value!r} starts with '__', which Kafka reserves for its "
                "internal topics"
            )
        return value

    @model_validator(mode="after")
    def _check_topics_differ(self) -> TopicSettings:
        # Topics are created and read by name, so two settings naming one
        # topic would mix its messages (dead letters read back as events).
        # Each clash is reported at a variable that was set, rather than at
        # a default that the user never chose.
        errors = []
        for index, field in enumerate(_TOPIC_FIELDS):
            for other in _TOPIC_FIELDS[:index]:
                message = self._clash_message(field, other)
                if message is None:
                    continue
                is_default = field not in self.model_fields_set
                at_fault = other if is_default else field
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "value_error", "{message}", {"message": message}
                        ),
                        loc=(at_fault,),
                        input=getattr(self, at_fault),
                    )
                )
                break
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def _clash_message(self, field: str, other: str) -> str | None:
        """Describe how two topic settings name one topic, or return None.

        The message is for the setting that was set: ``field``, unless only
        ``other`` was set. It calls the remaining one a default when that one
        was not set.
        """
        # Kafka refuses a topic whose name differs from another's only by
        # '.' against '_', because its metric names would be the same.
        clashes = sorted(
            (name, other_name)
            for name in _topic_names(field, getattr(self, field))
            for other_name in _topic_names(other, getattr(self, other))
            if name.replace(".", "_") == other_name.replace(".", "_")
        )
        if not clashes:
            return None
        name, other_name = clashes[0]
        if field not in self.model_fields_set:
            field, other = other, field
            name, other_name = other_name, name
        alike = "" if name == other_name else f" as {other_name!r}"
        default = "" if other in self.model_fields_set else "the default of "
        return (
            f"the topic {name!r} is also named by "
            f"{default}CARTWHEEL_TOPIC_{other.upper()}{alike}"
        )

    def recommendations(self, surface: str) -> str:
        """Return the topic that carries slates of one surface."""
        return f"{self.recommendations_prefix}.{surface}"


def _topic_names(field: str, value: str) -> set[str]:
    """Return the topics that a topic setting names: one, or one per surface."""
    if field == "recommendations_prefix":
        return {f"{value}.{surface.value}" for surface in Surface}
    return {value}


def child_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """Return this process's environment with ``overrides`` applied, for a child.

    Child processes read their own settings from it, so this is the one place
    besides the settings classes that reads the environment.
    """
    return {**os.environ, **overrides}


@dataclass(frozen=True)
class CommandLineValue:
    """A setting given by a command-line option instead of its variable.

    Pass it to :func:`load_settings` as an override, so that an invalid value
    is reported under the option that carried it.
    """

    option: str
    value: Any


def load_settings(settings_class: type[SettingsT], **overrides: Any) -> SettingsT:
    """Read settings from the environment and validate them.

    Each override replaces the field of that name; wrap one in
    :class:`CommandLineValue` when it came from a command-line option.

    A variable under the prefix of ``settings_class`` or of a nested block
    that names no setting is logged as a WARNING, once per process, with the
    closest valid name when one is close. Names are matched regardless of
    case, and a setting set under two spellings is logged as a WARNING too.
    Two name errors stop the process like an invalid value: a variable that
    spells a setting in the wrong place, such as
    ``CARTWHEEL_SCORER_TRENDING_WEIGHT``, and a key that names no setting in
    a block given whole as a JSON object.

    Raises:
        InvalidSettingsError: one line per invalid variable, each with the
            variable's name, the value it contains and the expected form.
    """
    warn_unknown_variables(settings_class, os.environ)
    warn_repeated_variables(settings_class, os.environ)
    problems = [
        *(
            _describe_misplaced(settings_class, part)
            for part in misplaced_variables(settings_class, os.environ)
        ),
        *(
            _describe_unknown_key(settings_class, key)
            for key in unknown_json_keys(settings_class, os.environ)
        ),
    ]
    try:
        settings = _load_settings(settings_class, overrides)
    except InvalidSettingsError as exc:
        if not problems:
            raise
        raise InvalidSettingsError(join_error_lines([str(exc), *problems])) from exc
    if problems:
        raise InvalidSettingsError(join_error_lines(problems))
    return settings


def _describe_misplaced(
    settings_class: type[BaseSettings], part: UnknownVariable
) -> str:
    """Name a variable that spells a setting in the wrong place, and the right one."""
    value = os.environ[part.variable]
    found = variable_field(settings_class, str(part.closest))
    if found is not None and is_secret_field(found[1]):
        value = _mask(value)
    if part.block is None:
        problem = "the setting is inside a block"
    else:
        problem = f"the block {part.block} has no such setting"
    return (
        f"invalid setting {part.variable}={value!r}: {problem}, so this name "
        f"would be ignored; set {part.closest} instead"
    )


def _describe_unknown_key(settings_class: type[BaseSettings], key: UnknownKey) -> str:
    """Name a block variable, its JSON key that names no setting, and the closest."""
    value = _masked_value(settings_class, key.variable)
    if key.closest is None:
        hint = "'cartwheel config' and docs/configuration.md list the block's settings"
    else:
        parent = key.key.rpartition(".")[0]
        hint = f'did you mean "{f"{parent}." if parent else ""}{key.closest}"?'
    return (
        f'invalid setting {key.variable}={value!r}: the key "{key.key}" names no '
        f"setting of this block, so it would be ignored; {hint}"
    )


def _load_settings(
    settings_class: type[SettingsT], overrides: Mapping[str, Any]
) -> SettingsT:
    options = {
        name: value.option
        for name, value in overrides.items()
        if isinstance(value, CommandLineValue)
    }
    values = {
        name: value.value if isinstance(value, CommandLineValue) else value
        for name, value in overrides.items()
    }
    overridden = set(values)
    # Each nested block (Kafka, Redis, topics) is loaded on its own first, so
    # that the errors of every block are reported together.
    problems: list[str] = []
    for name, block_class in _settings_blocks(settings_class):
        if name in overridden:
            continue
        try:
            values[name] = _load_settings(block_class, {})
        except InvalidSettingsError as exc:
            problems.append(str(exc))
            # Unvalidated defaults stand in, so the fields outside the
            # blocks can still be checked.
            values[name] = _stand_in(block_class)
    if problems:
        problems.extend(_outer_problems(settings_class, values, overridden, options))
        raise InvalidSettingsError(join_error_lines(problems))
    try:
        return settings_class(**values)
    except ValidationError as exc:
        raise InvalidSettingsError(
            _describe(exc, settings_class, overridden, options)
        ) from exc
    except SettingsError as exc:
        raise InvalidSettingsError(_describe_unparsed(exc, settings_class)) from exc


def _settings_blocks(
    settings_class: type[BaseSettings],
) -> list[tuple[str, type[BaseSettings]]]:
    """Return the fields that hold a settings block read from its own variables."""
    prefix = str(settings_class.model_config.get("env_prefix", "")).upper()
    delimiter = str(settings_class.model_config.get("env_nested_delimiter") or "")
    blocks: list[tuple[str, type[BaseSettings]]] = []
    for name, info in settings_class.model_fields.items():
        annotation = info.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseSettings)):
            continue
        # A factory with arguments of its own would differ from a plain load.
        factory: object = info.default_factory
        if factory != annotation:
            continue
        # Variables such as PREFIX_RULES__SIZE fill the block through the
        # enclosing class, so loading it alone would lose them.
        variable = f"{prefix}{name}".upper()
        nested = f"{variable}{delimiter}".upper() if delimiter else None
        if any(
            key.upper() == variable or (nested and key.upper().startswith(nested))
            for key in os.environ
        ):
            continue
        blocks.append((name, annotation))
    return blocks


def _stand_in(settings_class: type[SettingsT]) -> SettingsT:
    """Return the class with its defaults, unvalidated and without reading variables.

    ``model_construct`` alone would build nested blocks through their default
    factories, which read and validate their variables.
    """
    nested = {
        name: _stand_in(info.annotation)
        for name, info in settings_class.model_fields.items()
        if isinstance(info.annotation, type)
        and issubclass(info.annotation, BaseSettings)
    }
    return settings_class.model_construct(None, **nested)


def _outer_problems(
    settings_class: type[BaseSettings],
    values: Mapping[str, Any],
    overridden: Collection[str],
    options: Mapping[str, str],
) -> list[str]:
    """Return the errors of the fields outside the nested blocks, if any are found.

    The blocks are stand-ins here, so a validator that reads them may fail in
    another way. Such a failure is left out, because the blocks' own errors
    are reported already.
    """
    try:
        settings_class(**values)
    except ValidationError as exc:
        return [_describe(exc, settings_class, overridden, options)]
    except Exception:
        return []
    return []


def join_error_lines(messages: Sequence[str]) -> str:
    """Join error messages, keeping each line once (two blocks may share a variable)."""
    lines = [line for message in messages for line in message.splitlines()]
    return "\n".join(dict.fromkeys(lines))


def _describe_unparsed(exc: SettingsError, settings_class: type[BaseSettings]) -> str:
    """Name the variables behind a field whose value is not valid JSON.

    Lists, sets and nested blocks are read as JSON, and pydantic-settings
    reports a failure only by field name, so every Cartwheel variable of
    that field whose value is not valid JSON is listed with its value and
    the field's expected form.
    """
    found = re.search(r'field "([^"]+)"', str(exc))
    field = found.group(1).upper() if found else ""
    candidates = [
        (name, value)
        for name, value in sorted(os.environ.items())
        if name.upper().startswith("CARTWHEEL_")
        and field
        and (name.upper().endswith(f"_{field}") or f"_{field}__" in name.upper())
    ]
    # The error names a nested block (such as SURFACES), not the variable, so
    # the block's variables whose values parse as JSON are left out.
    unparsed = [
        (name, value) for name, value in candidates if not _is_json(value)
    ] or candidates
    lines = [
        f"invalid setting {name}={_masked_value(settings_class, name)!r}: "
        f"{_expected_json(settings_class, name)}"
        for name, _ in unparsed
    ]
    return "\n".join(lines) or f"invalid setting: {exc}"


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _expected_json(settings_class: type[BaseSettings], variable: str) -> str:
    """Return the problem and expected form for a ``variable`` that is not JSON."""
    found = variable_field(settings_class, variable)
    if found is None:
        return 'expected a JSON value, such as ["a", "b"] for a list'
    owner, info = found
    models = model_classes(info.annotation)
    if models:
        return block_form(owner, variable, models[0])
    form = expected_form(info)
    if not form:
        return 'expected a JSON value, such as ["a", "b"] for a list'
    return f"the value is not valid JSON; expected {form}"


def _masked_value(settings_class: type[BaseSettings], variable: str) -> str:
    """Return a variable's value for an error line, with its secrets masked.

    A block given as a JSON object keeps its text unless a secret is in it.
    Then the object is written again with each secret masked, and so is any
    text value of a key that names no field, since it may be a misspelled
    secret. Other text is masked whole when the block has a secret field.
    """
    value = os.environ[variable]
    found = variable_field(settings_class, variable)
    if found is None:
        return value
    info = found[1]
    if is_secret_field(info):
        return _mask(value)
    models = model_classes(info.annotation)
    if not models or not has_secret(models[0]):
        return value
    try:
        parsed = json.loads(value)
    except ValueError:
        return _mask(value)
    if not isinstance(parsed, dict):
        return _mask(value)
    masked = mask_block_object(models[0], parsed, _mask)
    return value if masked == parsed else json.dumps(masked)


def _describe(
    exc: ValidationError,
    settings_class: type[BaseSettings],
    overridden: Collection[str],
    options: Mapping[str, str],
) -> str:
    # A nested block that load_settings did not load on its own fails inside
    # its default factory, so the error carries the nested class's title.
    failed_class = _find_settings_class(settings_class, exc.title) or settings_class
    if failed_class is not settings_class:
        overridden, options = (), {}
    lines = []
    for error in exc.errors():
        lines += _describe_error(failed_class, error, overridden, options)
    return "\n".join(lines)


def _describe_error(
    settings_class: type[BaseSettings],
    error: ErrorDetails,
    overridden: Collection[str],
    options: Mapping[str, str],
) -> list[str]:
    """Return the lines for one validation error of ``settings_class``."""
    loc = error["loc"]
    field = str(loc[0]) if loc else ""
    # A list element's position is part of the location, not of the name.
    names = [str(part) for part in loc if not isinstance(part, int)]
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    delimiter = str(settings_class.model_config.get("env_nested_delimiter") or "_")
    variable = _spelled(f"{prefix}{delimiter.join(names)}".upper())

    if field not in overridden:
        if isinstance(error.get("input"), dict):
            parts = variables_under_value(settings_class, variable, os.environ)
            if parts:
                return _describe_parts(settings_class, loc, variable, parts)
        holder = json_holder(settings_class, names, os.environ)
        if holder is not None:
            return _describe_in_json(settings_class, error, *holder)

    # An override was rejected, not the variable, which may be valid.
    if field in overridden:
        value = error.get("input")
    else:
        value = os.environ.get(variable, error.get("input"))
    info = field_info(settings_class, loc)
    if value is not None and info is not None and is_secret_field(info):
        value = _mask(str(value))
    elif field not in overridden and variable in os.environ:
        value = _masked_value(settings_class, variable)

    models = model_classes(info.annotation) if info is not None else []
    if error["type"] == "model_type" and models:
        expected = block_form(settings_class, variable, models[0])
    else:
        expected = _expected_form(settings_class, loc, error["msg"])

    if field in options:
        return [
            f"invalid option {options[field]}={value!r} (in place of "
            f"{variable}): {expected}"
        ]
    if variable not in os.environ and (value is None or field not in overridden):
        # Only a default can fail without its variable or an override.
        default = "" if value is None else f", default {value!r}"
        return [f"invalid setting {variable} (not set{default}): {expected}"]
    return [f"invalid setting {variable}={value!r}: {expected}"]


def _describe_in_json(
    settings_class: type[BaseSettings], error: ErrorDetails, holder: str, path: str
) -> list[str]:
    """Name the block variable and the key of its JSON object that is invalid."""
    if error["type"] == "extra_forbidden":
        # unknown_json_keys reports the key, with the closest valid one.
        return []
    info = field_info(settings_class, error["loc"])
    models = model_classes(info.annotation) if info is not None else []
    if error["type"] == "model_type" and models:
        expected = (
            "expected a JSON object of the block's settings, such as "
            f"{example_object(models[0])}"
        )
    else:
        expected = _expected_form(settings_class, error["loc"], error["msg"])
    value = _masked_value(settings_class, holder)
    return [f'invalid setting {holder}={value!r}, key "{path}": {expected}']


def _describe_parts(
    settings_class: type[BaseSettings],
    loc: tuple[int | str, ...],
    field_variable: str,
    parts: Sequence[UnknownVariable],
) -> list[str]:
    """Name each variable read into a single-value field as a block.

    The error's input is the block, such as ``{'weight': '1'}``, and its
    location is the field's, so each line names the variable that was set
    instead, with its value and the closest valid name.
    """
    info = field_info(settings_class, loc)
    is_secret = info is not None and is_secret_field(info)
    lines = []
    for part in parts:
        value = os.environ[part.variable]
        if is_secret:
            value = _mask(value)
        if part.closest in (None, field_variable):
            action = f"set {field_variable} itself, or unset {part.variable}"
        else:
            action = f"did you mean {part.closest}?"
        lines.append(
            f"invalid setting {part.variable}={value!r}: {field_variable} is a "
            f"single value, not a block of fields; {action}"
        )
    return lines


def _spelled(variable: str) -> str:
    """Return ``variable`` as this process's environment spells it."""
    return spelled(variable, os.environ)


def _mask(value: str) -> str:
    """Keep a URL's scheme, host and path but hide its passwords; hide anything else.

    redis-py also reads a password from the query (``?password=...``), so
    that value is hidden as well.
    """
    if not value.strip():
        # Nothing to hide, and the user needs to see that the value is empty.
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        # urlsplit raises on an unclosed '[' (a broken IPv6 host), so the
        # password's place is unknown and the whole value is hidden.
        return MASK
    if not parts.scheme or "://" not in value:
        # Without '//' there is no user part, so where a password would be
        # ('user:secret' parses as a scheme and a path) is unknown.
        return MASK
    if _has_unencoded_user_info(value):
        # urlsplit would take only the password's head as the password, so
        # everything up to the last '@' is hidden.
        return f"{parts.scheme}://{MASK}@{value.rsplit('@', 1)[1]}"
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    query = "&".join(
        f"{name}={MASK}" if _is_password_option(name) else f"{name}{sep}{text}"
        for name, sep, text in (
            option.partition("=") for option in parts.query.split("&") if option
        )
    )
    if netloc == parts.netloc and query == parts.query:
        # Nothing hidden: shown as typed, since geturl() drops an empty '//'.
        return value
    return parts._replace(netloc=netloc, query=query).geturl()


def _query_passwords(value: str) -> list[str]:
    """Return the values of a URL's password query options, decoded."""
    return [
        text
        for name, text in parse_qsl(urlsplit(value).query, keep_blank_values=True)
        if _is_password_option(name) and text
    ]


def _is_password_option(name: str) -> bool:
    return unquote(name).lower() == "password"


def _find_settings_class(
    root: type[BaseSettings], title: str
) -> type[BaseSettings] | None:
    if root.__name__ == title:
        return root
    for info in root.model_fields.values():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            found = _find_settings_class(annotation, title)
            if found is not None:
                return found
    return None


def _expected_form(
    settings_class: type[BaseSettings], loc: tuple[int | str, ...], message: str
) -> str:
    info = field_info(settings_class, loc)
    message = message.removeprefix("Value error, ")
    if info is not None and info.annotation is bool:
        return f"{message}; expected true or false (also 1/0, yes/no or on/off)"
    form = expected_form(info) if info is not None else ""
    if message.startswith("expected") or not form:
        return message
    if message.startswith("String should match pattern"):
        # The form states in words what the regular expression checks.
        return f"expected {form}"
    if message.startswith("Input should be '"):
        # An enum or Literal field lists its values, and so does its form.
        return f"expected {form}"
    return f"{message}; expected {form}"


_NUMBER_KINDS = {int: "an integer", float: "a number"}


def expected_form(info: FieldInfo) -> str:
    """Return what a setting accepts: its type and range, then its description.

    A description that starts with "a" or "an" already names the form and is
    returned alone. The range comes from the field's ``ge``, ``gt``, ``le``
    and ``lt`` constraints.
    """
    description = info.description or ""
    if re.match(r"an? ", description):
        return description
    annotation = info.annotation
    kind = _NUMBER_KINDS.get(annotation) if isinstance(annotation, type) else None
    if kind is None:
        return description
    bounds = _range(info.metadata)
    if not bounds:
        form = kind
    elif bounds.startswith("at "):
        form = f"{kind} of {bounds}"
    else:
        form = f"{kind} {bounds}"
    return f"{form}: {description}" if description else form


def _range(constraints: Collection[Any]) -> str:
    """Return a field's numeric range in words, or "" when it has none."""
    low: tuple[str, Any] | None = None
    high: tuple[str, Any] | None = None
    for constraint in constraints:
        if isinstance(constraint, annotated_types.Ge):
            low = ("at least", constraint.ge)
        elif isinstance(constraint, annotated_types.Gt):
            low = ("above", constraint.gt)
        elif isinstance(constraint, annotated_types.Le):
            high = ("at most", constraint.le)
        elif isinstance(constraint, annotated_types.Lt):
            high = ("below", constraint.lt)
    if (
        low is not None
        and high is not None
        and (low[0], high[0])
        == (
            "at least",
            "at most",
        )
    ):
        return f"from {_number(low[1])} to {_number(high[1])}"
    return " and ".join(
        f"{word} {_number(value)}"
        for word, value in (bound for bound in (low, high) if bound is not None)
    )


def _number(value: Any) -> str:
    # Digits are grouped only from six on, so ports and small sizes read as
    # people type them (65535) and long limits stay legible (10,000,000).
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        return repr(value)
    return f"{value:,}" if abs(value) >= 100_000 else str(value)


def masked_settings(settings: BaseSettings) -> dict[str, Any]:
    """Return the settings as a dict for logging, with every secret masked.

    A secret URL keeps its scheme, host, port and path, so the log still shows
    which server is used; its password becomes ``**********``. Other secrets
    are replaced whole.
    """
    dumped: dict[str, Any] = settings.model_dump(mode="json")
    for path, secret in _secrets(settings):
        node = dumped
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = _mask(secret)
    return dumped


def secret_values(settings: BaseSettings) -> list[str]:
    """Return the secret strings in ``settings`` (URL passwords included).

    Pass them to :func:`services.common.logging.configure_logging`, which masks
    them in every log line.
    """
    values = []
    for _, secret in _secrets(settings):
        try:
            passwords = [urlsplit(secret).password, *_query_passwords(secret)]
        except ValueError:
            # A URL that cannot be parsed is hidden whole, as _mask does.
            values.append(secret)
            continue
        found = [password for password in passwords if password]
        if found:
            values.extend(found)
        elif "://" not in secret:
            # Not a URL: the whole value is the secret.
            values.append(secret)
    return [value for value in values if value]


def _secrets(
    model: BaseSettings | Any, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str]]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            yield (*path, name), value.get_secret_value()
        elif hasattr(type(value), "model_fields"):
            yield from _secrets(value, (*path, name))
