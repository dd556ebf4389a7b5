"""The demo's environment and settings check for its child services."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import InvalidSettingsError
from services.common.settings import KafkaSettings, RedisSettings
from services.demo import runner
from services.demo.runner import _load_pipeline_settings, _service_environment
from services.demo.settings import DemoSettings
from services.replay.errors import DatasetFileError


def test_child_ports_are_distinct(tmp_path: Path) -> None:
    environment = _service_environment(
        KafkaSettings(bootstrap="127.0.0.1:9"),
        RedisSettings(url="redis://127.0.0.1:9/0"),
        tmp_path,
        warmup_events=1000,
    )

    ports = [
        value
        for name, value in environment.items()
        if name.endswith("_METRICS_PORT") or name == "CARTWHEEL_API_PORT"
    ]
    assert len(ports) == 5
    assert len(set(ports)) == 5


def test_settings_check_lists_every_child(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CARTWHEEL_HOTPATH_BATCH_SIZE", "0")
    monkeypatch.setenv("CARTWHEEL_TRAINER_LEARNING_RATE", "abc")

    with pytest.raises(InvalidSettingsError) as caught:
        _load_pipeline_settings("127.0.0.1:9", "127.0.0.1:10", tmp_path)

    message = str(caught.value)
    assert "invalid setting CARTWHEEL_HOTPATH_BATCH_SIZE='0'" in message
    assert "invalid setting CARTWHEEL_TRAINER_LEARNING_RATE='abc'" in message


def test_settings_check_lists_demo_blocks_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_SECURITY_PROTOCOL", "FOO")
    monkeypatch.setenv("CARTWHEEL_TOPIC_PARTITIONS", "0")
    monkeypatch.setenv("CARTWHEEL_EVALUATION_CUTOFFS", "x")
    monkeypatch.setenv("CARTWHEEL_HOTPATH_BATCH_SIZE", "0")

    with pytest.raises(InvalidSettingsError) as caught:
        _load_pipeline_settings("127.0.0.1:9", "127.0.0.1:10", tmp_path)

    lines = str(caught.value).splitlines()
    assert lines[0].startswith("invalid setting CARTWHEEL_KAFKA_SECURITY_PROTOCOL=")
    assert any(
        line.startswith("invalid setting CARTWHEEL_TOPIC_PARTITIONS=") for line in lines
    )
    assert any(
        line.startswith("invalid setting CARTWHEEL_EVALUATION_CUTOFFS=")
        for line in lines
    )
    assert any(
        line.startswith("invalid setting CARTWHEEL_HOTPATH_BATCH_SIZE=")
        for line in lines
    )
    assert len(lines) == len(set(lines))


def test_settings_check_returns_demo_settings(tmp_path: Path) -> None:
    pipeline = _load_pipeline_settings("127.0.0.1:9", "127.0.0.1:10", tmp_path)

    assert pipeline.kafka.bootstrap == "127.0.0.1:9"
    assert pipeline.redis.url.get_secret_value() == "redis://127.0.0.1:10/0"
    assert pipeline.evaluation.score_from is None


def test_settings_check_ignores_replaced_addresses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", "not-a-host-port")
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", "http://127.0.0.1:1")

    pipeline = _load_pipeline_settings("127.0.0.1:9", "127.0.0.1:10", tmp_path)

    assert pipeline.kafka.bootstrap == "127.0.0.1:9"


def test_missing_dataset_stops_before_servers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CARTWHEEL_REPLAY_DATA_DIR", str(tmp_path / "empty"))
    started: list[str] = []
    monkeypatch.setattr(runner, "start_broker", lambda *args: started.append("broker"))
    monkeypatch.setattr(runner, "start_redis", lambda *args: started.append("redis"))
    state_dir = tmp_path / "state"

    with pytest.raises(DatasetFileError) as caught:
        runner.run_demo(
            runner.DemoRun(dataset="otto"), DemoSettings(state_dir=state_dir)
        )

    assert "CARTWHEEL_REPLAY_DATA_DIR" in str(caught.value)
    assert started == []
    assert not state_dir.exists()


@pytest.mark.parametrize(
    "variable", ["CARTWHEEL_DEMO_STATE_DIR", "CARTWHEEL_DEMO_REPORT_DIR"]
)
def test_unwritable_folder_stops_before_servers(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    folders = {
        "CARTWHEEL_DEMO_STATE_DIR": tmp_path / "state",
        "CARTWHEEL_DEMO_REPORT_DIR": tmp_path / "report",
        variable: blocker / "folder",
    }
    started: list[str] = []
    monkeypatch.setattr(runner, "start_broker", lambda *args: started.append("broker"))
    monkeypatch.setattr(runner, "start_redis", lambda *args: started.append("redis"))
    settings = DemoSettings(
        state_dir=folders["CARTWHEEL_DEMO_STATE_DIR"],
        report_dir=folders["CARTWHEEL_DEMO_REPORT_DIR"],
    )

    with pytest.raises(InvalidSettingsError) as caught:
        runner.run_demo(runner.DemoRun(dataset="rees46", limit=2), settings)

    assert variable in str(caught.value)
    assert "above it, is a file, not a directory" in str(caught.value)
    assert started == []
