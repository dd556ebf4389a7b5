from __future__ import annotations

from pathlib import Path

import pytest

from services.api.settings import ApiSettings
from services.common.errors import InvalidSettingsError
from services.common.settings import load_settings, masked_settings
from services.learner.settings import LearnerSettings


def test_api_signals_default_to_learner_checkpoint_dir() -> None:
    api = load_settings(ApiSettings)

    assert api.signals.checkpoint_dir == load_settings(LearnerSettings).checkpoint_dir


def test_api_signals_read_nested_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_API_SIGNALS__CHECKPOINT_DIR", "/var/lib/learner")
    monkeypatch.setenv("CARTWHEEL_API_SIGNALS__INSTANCE_NAME", "hotpath-0")
    monkeypatch.setenv("CARTWHEEL_API_SIGNALS__RELOAD_INTERVAL_SECONDS", "2.5")
    monkeypatch.setenv("CARTWHEEL_API_IS_SESSION_INDEX_ENABLED", "false")

    settings = load_settings(ApiSettings)

    assert settings.signals.checkpoint_dir == Path("/var/lib/learner")
    assert settings.signals.instance_name == "hotpath-0"
    assert settings.signals.reload_interval_seconds == 2.5
    assert not settings.is_session_index_enabled


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CARTWHEEL_API_SIGNALS__RELOAD_INTERVAL_SECONDS", "0", "above 0"),
        ("CARTWHEEL_API_SIGNALS__INSTANCE_NAME", "a/b", "letters, digits"),
        ("CARTWHEEL_API_SIGNALS__CHECKPOINT_DIR", " ", "blank path"),
        ("CARTWHEEL_API_SIGNALS__CHECKPOINT_KEY", " ", "non-empty secret"),
        ("CARTWHEEL_API_IS_SESSION_INDEX_ENABLED", "maybe", "bool"),
    ],
)
def test_api_settings_reject_invalid_on_demand_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(InvalidSettingsError) as raised:
        load_settings(ApiSettings)

    assert f"{variable}={value!r}" in str(raised.value)
    assert expected in str(raised.value)


def test_api_settings_mask_checkpoint_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_API_SIGNALS__CHECKPOINT_KEY", "s3cret")

    settings = load_settings(ApiSettings)

    assert "s3cret" not in str(masked_settings(settings))
    assert settings.signals.checkpoint_key is not None
    assert settings.signals.checkpoint_key.get_secret_value() == "s3cret"
