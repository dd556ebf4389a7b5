"""Integer settings take text only as plain base-10 digits."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

import services
from services.common.errors import InvalidSettingsError
from services.common.setting_integers import PlainIntegers
from services.common.setting_names import model_classes
from services.common.settings import load_settings


class _Window(PlainIntegers):
    size: int = Field(default=10, ge=1, le=1000)


class _IntegerSettings(PlainIntegers, BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_INTSVC_", env_nested_delimiter="__", frozen=True
    )

    offset: int = Field(default=0, description="an offset, negative or not")
    limit: int | None = None
    ratio: float = 0.5
    is_enabled: bool = True
    label: str = "x"
    window: _Window = Field(default_factory=_Window)


@pytest.mark.parametrize(
    ("value", "expected"), [("12", 12), ("-12", -12), ("+12", 12), ("012", 12)]
)
def test_plain_integer_is_read(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: int
) -> None:
    monkeypatch.setenv("CARTWHEEL_INTSVC_OFFSET", value)

    settings = load_settings(_IntegerSettings)

    assert settings.offset == expected


@pytest.mark.parametrize(
    "value",
    ["12.0", " 12", "12 ", "1_2", "1e1", "0x1f", "+ 12", "", "١٢", "twelve"],
)
def test_lax_integer_stops_with_variable_value_and_form(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CARTWHEEL_INTSVC_OFFSET", value)

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(_IntegerSettings)

    assert str(caught.value) == (
        f"invalid setting CARTWHEEL_INTSVC_OFFSET={value!r}: the value is not a "
        "plain base-10 integer (digits with an optional sign); expected an "
        "offset, negative or not"
    )


def test_lax_optional_integer_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_INTSVC_LIMIT", "5.0")

    with pytest.raises(InvalidSettingsError, match="CARTWHEEL_INTSVC_LIMIT='5.0'"):
        load_settings(_IntegerSettings)


def test_lax_integer_of_nested_block_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_INTSVC_WINDOW__SIZE", "50.0")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(_IntegerSettings)

    assert str(caught.value) == (
        "invalid setting CARTWHEEL_INTSVC_WINDOW__SIZE='50.0': the value is not a "
        "plain base-10 integer (digits with an optional sign); expected an "
        "integer from 1 to 1000"
    )


@pytest.mark.parametrize(
    "value", ['{"size": 50.0}', '{"size": true}', '{"size": "5 "}']
)
def test_block_object_rejects_integer_not_written_as_one(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CARTWHEEL_INTSVC_WINDOW", value)

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(_IntegerSettings)

    assert str(caught.value).startswith(
        f'invalid setting CARTWHEEL_INTSVC_WINDOW={value!r}, key "size": the value '
        "is not a plain base-10 integer"
    )


def test_block_object_reads_whole_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_INTSVC_WINDOW", '{"size": 50}')

    settings = load_settings(_IntegerSettings)

    assert settings.window.size == 50


def test_other_types_keep_their_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_INTSVC_RATIO", " 0.25")
    monkeypatch.setenv("CARTWHEEL_INTSVC_IS_ENABLED", "off")
    monkeypatch.setenv("CARTWHEEL_INTSVC_LABEL", "12.0")

    settings = load_settings(_IntegerSettings)

    assert (settings.ratio, settings.is_enabled, settings.label) == (
        0.25,
        False,
        "12.0",
    )


def test_fractional_argument_in_code_is_rejected() -> None:
    with pytest.raises(ValidationError, match="not a plain base-10 integer"):
        _Window(size=5.0)  # type: ignore[arg-type]


def _settings_models() -> set[type[BaseModel]]:
    """Return every settings class of the services and the blocks nested in them."""
    for module in pkgutil.iter_modules(services.__path__):
        try:
            importlib.import_module(f"services.{module.name}.settings")
        except ModuleNotFoundError:
            continue
    pending: list[type[BaseModel]] = [
        settings_class
        for settings_class in _subclasses(BaseSettings)
        if settings_class.__module__.startswith("services.")
    ]
    found: set[type[BaseModel]] = set()
    while pending:
        model = pending.pop()
        if model in found:
            continue
        found.add(model)
        for info in model.model_fields.values():
            pending.extend(model_classes(info.annotation))
    return found


def _subclasses(base: type[BaseSettings]) -> list[type[BaseSettings]]:
    direct = base.__subclasses__()
    return direct + [nested for child in direct for nested in _subclasses(child)]


def test_every_settings_class_and_block_takes_plain_integers() -> None:
    models = _settings_models()

    assert len(models) > 15
    assert (
        sorted(
            model.__qualname__
            for model in models
            if not issubclass(model, PlainIntegers)
        )
        == []
    )
