"""JSON setting values that give one key twice in an object."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.api.settings import ApiSettings
from services.common.setting_json import RepeatedKey, repeated_json_keys
from services.common.settings import load_settings
from services.hotpath.settings import HotPathSettings
from services.scorer.settings import ScorerSettings
from tests.unit.common.test_settings import setting_error

_EXPECTED = "expected each key once, because readers disagree on which value counts"


class _Limits(BaseModel):
    max_items: int = 10


class _LabelledSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARTWHEEL_TESTJSON_")

    labels: dict[str, int] = Field(default_factory=dict)
    limits: _Limits = Field(default_factory=_Limits)


class _CaseSensitiveSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_TESTCASED_", case_sensitive=True
    )

    limits: _Limits = Field(default_factory=_Limits)


def test_repeated_block_key_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    value = '{"click": 1, "click": 2}'

    message = setting_error(
        monkeypatch, ScorerSettings, {"CARTWHEEL_SCORER_WEIGHTS": value}
    )

    assert message == (
        f"invalid setting CARTWHEEL_SCORER_WEIGHTS={value!r}: the key "
        f'"click" appears more than once in one object; {_EXPECTED}'
    )


def test_block_keys_differing_in_case_are_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = '{"click": 1, "CLICK": 3}'

    message = setting_error(
        monkeypatch, ScorerSettings, {"CARTWHEEL_SCORER_WEIGHTS": value}
    )

    assert message == (
        f'invalid setting CARTWHEEL_SCORER_WEIGHTS={value!r}: the keys "click" '
        'and "CLICK" name the same setting, because keys are matched regardless '
        f"of case; {_EXPECTED}"
    )


def test_key_given_three_times_is_named_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = '{"click": 1, "click": 2, "CLICK": 3}'

    message = setting_error(
        monkeypatch, ScorerSettings, {"CARTWHEEL_SCORER_WEIGHTS": value}
    )

    assert message.startswith(f"invalid setting CARTWHEEL_SCORER_WEIGHTS={value!r}: ")
    assert 'the key "click" appears more than once' in message
    assert len(message.splitlines()) == 1


def test_repeated_key_of_nested_block_names_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = '{"weights": {"click": 1, "Click": 2}}'

    message = setting_error(monkeypatch, ApiSettings, {"CARTWHEEL_API_SCORER": value})

    assert message == (
        f"invalid setting CARTWHEEL_API_SCORER={value!r}: the keys "
        '"weights.click" and "weights.Click" name the same setting, because '
        f"keys are matched regardless of case; {_EXPECTED}"
    )


def test_repeated_nested_block_key_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = '{"weights": {"click": 1}, "WEIGHTS": {"cart_add": 1}}'

    message = setting_error(monkeypatch, ApiSettings, {"CARTWHEEL_API_SCORER": value})

    assert 'the keys "weights" and "WEIGHTS" name the same setting' in message


def test_repeated_key_inside_list_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = '["a:b", {"x": 1, "x": 2}]'

    message = setting_error(
        monkeypatch, HotPathSettings, {"CARTWHEEL_HOTPATH_STAGES": value}
    )

    assert (
        f"invalid setting CARTWHEEL_HOTPATH_STAGES={value!r}: the key "
        f'"x" appears more than once in one object; {_EXPECTED}'
    ) in message.splitlines()


def test_text_setting_holding_json_is_not_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_HOTPATH_GROUP_ID", '{"a": 1, "a": 2}')

    settings = load_settings(HotPathSettings)

    assert settings.group_id == '{"a": 1, "a": 2}'


def test_dict_keys_differing_in_case_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_TESTJSON_LABELS", '{"a": 1, "A": 2}')

    settings = load_settings(_LabelledSettings)

    assert settings.labels == {"a": 1, "A": 2}


def test_repeated_dict_key_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    labels = {"CARTWHEEL_TESTJSON_LABELS": '{"a": 1, "a": 2}'}
    message = setting_error(monkeypatch, _LabelledSettings, labels)

    assert 'the key "a" appears more than once in one object' in message


def test_case_sensitive_block_keys_are_distinct() -> None:
    environ = {"CARTWHEEL_TESTCASED_LIMITS": '{"max_items": 1, "MAX_ITEMS": 2}'}

    assert repeated_json_keys(_CaseSensitiveSettings, environ) == []


def test_repeated_keys_listed_per_object() -> None:
    environ = {
        "CARTWHEEL_TESTJSON_LIMITS": '{"max_items": 1, "Max_Items": 2}',
        "CARTWHEEL_TESTJSON_LABELS": '{"a": {"b": 1, "b": 2}, "a": 3}',
    }

    found = repeated_json_keys(_LabelledSettings, environ)

    assert found == [
        RepeatedKey("CARTWHEEL_TESTJSON_LABELS", "a.b", "a.b"),
        RepeatedKey("CARTWHEEL_TESTJSON_LABELS", "a", "a"),
        RepeatedKey("CARTWHEEL_TESTJSON_LIMITS", "Max_Items", "max_items"),
    ]


def test_invalid_json_is_left_to_validation() -> None:
    environ = {"CARTWHEEL_TESTJSON_LABELS": '{"a": 1, "a": '}

    assert repeated_json_keys(_LabelledSettings, environ) == []


def test_repeated_secret_key_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    value = (
        '{"url": "redis://u:hunter2@127.0.0.1:1/0", '
        '"URL": "redis://u:hunter2@127.0.0.1:2/0"}'
    )

    message = setting_error(monkeypatch, ApiSettings, {"CARTWHEEL_API_REDIS": value})

    assert "hunter2" not in message
    assert 'the keys "url" and "URL" name the same setting' in message
