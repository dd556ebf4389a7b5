"""Loading and starting the hot path's stages, without servers."""

from __future__ import annotations

import gc
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError

from services.common.errors import BrokerUnreachableError, InvalidSettingsError
from services.common.settings import KafkaSettings, RedisSettings
from services.hotpath.__main__ import (
    build_consumer,
    load_checked_settings,
    load_stages,
    stage_settings_classes,
    start_stages,
)
from services.hotpath.settings import HotPathSettings
from services.infra import find_free_port
from services.learner.settings import LearnerSettings
from services.scorer.settings import ScorerSettings


def test_load_stages_rejects_unknown_factory() -> None:
    client = redis.Redis(host="127.0.0.1", port=1)

    with pytest.raises(InvalidSettingsError) as raised:
        load_stages(["nowhere.module:build"], HotPathSettings(), client)

    assert "CARTWHEEL_HOTPATH_STAGES" in str(raised.value)
    assert "'nowhere.module:build'" in str(raised.value)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("builtins:len", "cannot take the settings and a client"),
        ("math:pi", "is not callable"),
        ("operator:is_", "returned a bool without name, process, close"),
        ("builtins:dict", "cannot take the settings and a client"),
        ("builtins:max", "cannot take the settings and a client"),
    ],
)
def test_load_stages_rejects_unusable_factory(spec: str, problem: str) -> None:
    client = redis.Redis(host="127.0.0.1", port=1)

    with pytest.raises(InvalidSettingsError) as raised:
        load_stages([spec], HotPathSettings(), client)

    assert f"stage factory {spec!r} {problem}" in str(raised.value)


def test_load_stages_rejects_stage_without_methods(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("stage_factories")
    module.build = lambda settings, client: types.SimpleNamespace(  # type: ignore[attr-defined]
        name="broken", process=None, close=None
    )
    monkeypatch.setitem(sys.modules, "stage_factories", module)
    client = redis.Redis(host="127.0.0.1", port=1)

    with pytest.raises(InvalidSettingsError) as raised:
        load_stages(["stage_factories:build"], HotPathSettings(), client)

    assert "returned a SimpleNamespace without process, close" in str(raised.value)


def test_load_stages_closes_returned_coroutine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def build(settings: HotPathSettings, client: redis.Redis) -> None:
        return None

    module = types.ModuleType("stage_factories")
    module.build = build  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "stage_factories", module)
    client = redis.Redis(host="127.0.0.1", port=1)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InvalidSettingsError, match="returned a coroutine"):
            load_stages(["stage_factories:build"], HotPathSettings(), client)
        gc.collect()

    assert [str(warning.message) for warning in caught] == []


def test_load_stages_reports_module_with_syntax_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "unfinished_stage.py").write_text("def build(settings, client:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    client = redis.Redis(host="127.0.0.1", port=1)

    with pytest.raises(InvalidSettingsError) as raised:
        load_stages(["unfinished_stage:build"], HotPathSettings(), client)

    message = str(raised.value)
    assert "stage factory 'unfinished_stage:build' cannot be loaded" in message
    assert "unfinished_stage.py, line 1" in message
    assert "CARTWHEEL_HOTPATH_STAGES" in message


def _stage(name: str, log: list[str], *, has_start: bool = True) -> Any:
    """Return a stage that logs when it is started; ``has_start=False`` has no start."""
    stage = types.SimpleNamespace(
        name=name, process=lambda batch: None, close=lambda: None
    )
    if has_start:
        stage.start = lambda: log.append(f"start {name}")
    return stage


def test_start_stages_skips_stages_without_start() -> None:
    log: list[str] = []

    start_stages(
        [
            _stage("learning", log),
            _stage("audit", log, has_start=False),
            _stage("scoring", log),
        ]
    )

    assert log == ["start learning", "start scoring"]


def _raise_topic_missing() -> None:
    raise RuntimeError("models topic missing")


def test_start_stages_stops_at_first_failure() -> None:
    log: list[str] = []

    failing = _stage("scoring", log)
    failing.start = _raise_topic_missing

    with pytest.raises(RuntimeError, match="models topic missing"):
        start_stages([failing, _stage("audit", log)])

    assert log == []


def test_build_consumer_starts_no_stage_without_broker() -> None:
    # Nothing listens at either port, so the topic check fails at once.
    settings = HotPathSettings(
        kafka=KafkaSettings(bootstrap=f"127.0.0.1:{find_free_port()}"),
        redis=RedisSettings(url=f"redis://127.0.0.1:{find_free_port()}/0"),
    )
    log: list[str] = []

    with pytest.raises(BrokerUnreachableError, match="CARTWHEEL_KAFKA_BOOTSTRAP"):
        build_consumer(settings, stages=[_stage("scoring", log)])

    assert log == []


def test_failed_start_leaves_no_checkpoint_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    checkpoint_dir = tmp_path / "learner"
    monkeypatch.setenv("CARTWHEEL_LEARNER_CHECKPOINT_DIR", str(checkpoint_dir))
    settings = HotPathSettings(
        kafka=KafkaSettings(bootstrap=f"127.0.0.1:{find_free_port()}"),
        redis=RedisSettings(url=f"redis://127.0.0.1:{find_free_port()}/0"),
    )

    with pytest.raises(BrokerUnreachableError):
        build_consumer(settings)

    assert not checkpoint_dir.exists()


def test_unknown_stage_stops_before_broker_check() -> None:
    settings = HotPathSettings(
        kafka=KafkaSettings(bootstrap=f"127.0.0.1:{find_free_port()}"),
        redis=RedisSettings(url=f"redis://127.0.0.1:{find_free_port()}/0"),
        stages=["nowhere.module:build"],
    )

    with pytest.raises(InvalidSettingsError) as raised:
        build_consumer(settings)

    assert "'nowhere.module:build'" in str(raised.value)


def test_checked_settings_list_stage_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_SECURITY_PROTOCOL", "FOO")
    monkeypatch.setenv("CARTWHEEL_HOTPATH_BATCH_SIZE", "0")
    monkeypatch.setenv("CARTWHEEL_LEARNER_CHECKPOINT_INTERVAL_SECONDS", "x")
    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__SESSION_WARMUP_EVENTS", "-5")

    with pytest.raises(InvalidSettingsError) as raised:
        load_checked_settings()

    lines = str(raised.value).splitlines()
    variables = [line.split("=")[0].removeprefix("invalid setting ") for line in lines]
    assert variables == [
        "CARTWHEEL_KAFKA_SECURITY_PROTOCOL",
        "CARTWHEEL_HOTPATH_BATCH_SIZE",
        "CARTWHEEL_LEARNER_CHECKPOINT_INTERVAL_SECONDS",
        "CARTWHEEL_SCORER_CANDIDATES__SESSION_WARMUP_EVENTS",
    ]


def test_checked_settings_skip_unused_stage_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "CARTWHEEL_HOTPATH_STAGES", '["services.scorer.factory:build_scoring"]'
    )
    monkeypatch.setenv("CARTWHEEL_LEARNER_CHECKPOINT_INTERVAL_SECONDS", "x")

    settings = load_checked_settings()

    assert settings.stages == ["services.scorer.factory:build_scoring"]


def test_stage_settings_classes_skip_unknown_modules() -> None:
    classes = stage_settings_classes(
        [
            "nowhere.module:build",
            "services.scorer.factory:build_learning_and_scoring",
            "services.scorer.factory:build_scoring",
            "builtins:len",
        ]
    )

    assert classes == [LearnerSettings, ScorerSettings]


def test_stages_setting_rejects_empty_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTWHEEL_HOTPATH_STAGES", "[]")

    with pytest.raises(InvalidSettingsError) as raised:
        load_checked_settings()

    message = str(raised.value)
    assert message.startswith(
        "invalid setting CARTWHEEL_HOTPATH_STAGES='[]': the list is empty, so no "
        "event would get a slate; expected JSON list of one or more distinct"
    )
    assert "\n" not in message


def test_stages_setting_rejects_repeated_stage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = "services.scorer.factory:build_scoring"
    monkeypatch.setenv("CARTWHEEL_HOTPATH_STAGES", f'["{spec}", "{spec}"]')

    with pytest.raises(InvalidSettingsError) as raised:
        load_checked_settings()

    assert f"{spec} is listed more than once" in str(raised.value)


@pytest.mark.parametrize(
    "spec",
    [
        "services.scorer.factory",
        "services.scorer.factory:",
        " services.scorer.factory:build_scoring",
        "services..factory:build_scoring",
        "services.scorer.factory:build.scoring",
    ],
)
def test_stages_setting_rejects_malformed_name(spec: str) -> None:
    with pytest.raises(ValidationError) as raised:
        HotPathSettings(stages=[spec])

    assert f"{spec!r} is not a 'module:function' name" in str(raised.value)
