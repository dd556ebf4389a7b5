from __future__ import annotations

import pytest
import torch

from services.common.errors import InvalidSettingsError
from services.common.settings import load_settings
from services.trainer.settings import TrainerSettings
from tests.unit.common.test_settings import setting_error


def test_trainer_settings_reject_cuda_on_cpu_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setenv("CARTWHEEL_TRAINER_DEVICE", "cuda")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(TrainerSettings)

    message = str(caught.value)
    assert message.startswith("invalid setting CARTWHEEL_TRAINER_DEVICE='cuda':")
    assert "has no CUDA support" in message


def _fake_cuda(monkeypatch: pytest.MonkeyPatch, devices: int) -> None:
    """Make PyTorch report a CUDA build with ``devices`` visible devices."""
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: devices > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: devices)


def test_trainer_settings_reject_cuda_without_a_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_cuda(monkeypatch, devices=0)
    monkeypatch.setenv("CARTWHEEL_TRAINER_DEVICE", "cuda:0")

    with pytest.raises(InvalidSettingsError, match="sees no CUDA device"):
        load_settings(TrainerSettings)


def test_trainer_settings_reject_missing_cuda_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_cuda(monkeypatch, devices=1)
    monkeypatch.setenv("CARTWHEEL_TRAINER_DEVICE", "cuda:1")

    with pytest.raises(InvalidSettingsError, match="CUDA device 1 does not exist"):
        load_settings(TrainerSettings)


def test_trainer_settings_accept_an_existing_cuda_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_cuda(monkeypatch, devices=2)
    monkeypatch.setenv("CARTWHEEL_TRAINER_DEVICE", "cuda:1")

    assert load_settings(TrainerSettings).device == "cuda:1"


def test_trainer_settings_take_largest_seed_torch_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    largest = (1 << 64) - 1
    monkeypatch.setenv("CARTWHEEL_TRAINER_SEED", str(largest))

    settings = load_settings(TrainerSettings)
    torch.Generator().manual_seed(settings.seed)

    assert settings.seed == largest


def test_trainer_settings_reject_seed_torch_cannot_take(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_TRAINER_SEED", str(1 << 64))

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(TrainerSettings)

    assert str(caught.value).startswith(
        f"invalid setting CARTWHEEL_TRAINER_SEED='{1 << 64}':"
    )
    assert "expected an integer from 0 to 18,446,744,073,709,551,615" in str(
        caught.value
    )


def test_trainer_settings_reject_window_over_ten_years(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = setting_error(
        monkeypatch, TrainerSettings, {"CARTWHEEL_TRAINER_WINDOW_SECONDS": "1e10"}
    )

    assert message.startswith(
        "invalid setting CARTWHEEL_TRAINER_WINDOW_SECONDS='1e10':"
    )
    assert "expected a number above 0 and at most 315,360,000" in message
