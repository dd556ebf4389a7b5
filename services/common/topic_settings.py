"""Topic names and partition counts: the ``CARTWHEEL_TOPIC_*`` settings block."""

from __future__ import annotations

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.recommendations import Surface
from services.common.setting_integers import PlainIntegers

__all__ = ["TopicSettings"]

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


class TopicSettings(PlainIntegers, BaseSettings):
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
