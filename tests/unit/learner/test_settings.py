from __future__ import annotations

import pytest

from services.common.errors import InvalidSettingsError
from services.common.settings import load_settings
from services.learner.settings import LearnerSettings


def test_learner_settings_read_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_LEARNER_CART_HORIZON_SECONDS", "600")
    monkeypatch.setenv("CARTWHEEL_LEARNER_CONVERSION_LEARNER", "fm")

    settings = load_settings(LearnerSettings)

    assert settings.cart_horizon_seconds == 600.0
    assert settings.conversion_learner == "fm"


def test_learner_settings_reject_unknown_learner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_LEARNER_CONVERSION_LEARNER", "tree")

    with pytest.raises(
        InvalidSettingsError, match="CARTWHEEL_LEARNER_CONVERSION_LEARNER"
    ):
        load_settings(LearnerSettings)


def test_learner_settings_mask_checkpoint_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_LEARNER_CHECKPOINT_KEY", "s3cret")

    settings = load_settings(LearnerSettings)

    assert "s3cret" not in repr(settings)
    assert settings.checkpoint_key is not None
    assert settings.checkpoint_key.get_secret_value() == "s3cret"


def test_learner_settings_reject_negative_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_LEARNER_SEED", "-5")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(LearnerSettings)

    assert str(caught.value) == (
        "invalid setting CARTWHEEL_LEARNER_SEED='-5': Input should be greater "
        "than or equal to 0; expected an integer from 0 to 4,294,967,295"
    )


def test_learner_settings_reject_seed_fm_cannot_take(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_LEARNER_SEED", str(1 << 32))

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(LearnerSettings)

    assert "expected an integer from 0 to 4,294,967,295" in str(caught.value)
