from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from services.bench import offline
from services.bench.offline import SettingsLoader, add_sample_arguments
from services.common.settings import TopicSettings
from services.evaluation.settings import EvaluationSettings
from services.replay.errors import DatasetFileError
from services.replay.settings import DEFAULT_DATA_DIR
from services.replay.settings import Settings as ReplaySettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="script")
    add_sample_arguments(parser)
    return parser


@pytest.mark.parametrize("cutoff", ["0", "201", "abc"])
def test_sample_arguments_reject_cutoff_outside_evaluation_range(
    capsys: pytest.CaptureFixture[str], cutoff: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        _parser().parse_args(["rees46", "--cutoff", cutoff])

    assert caught.value.code == 2
    assert (
        f"argument --cutoff: expected an integer from 1 to 200, got {cutoff!r}"
        in capsys.readouterr().err
    )


def test_sample_arguments_accept_longest_cutoff() -> None:
    args = _parser().parse_args(["rees46", "--cutoff", "200"])

    assert args.cutoff == 200


def test_sample_arguments_state_cutoff_range_in_help() -> None:
    text = " ".join(_parser().format_help().split())

    assert "list length K, from 1 to 200" in text


def test_load_sample_reads_default_data_folder_of_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CARTWHEEL_REPLAY_DATA_DIR", raising=False)
    folders: list[Path] = []

    def load_dataset(name: str, data_dir: Path, **options: Any) -> Any:
        folders.append(data_dir)
        raise DatasetFileError(f"{name} not read")

    monkeypatch.setattr(offline, "load_dataset", load_dataset)
    parser = _parser()
    settings = SettingsLoader().load(ReplaySettings)

    with pytest.raises(SystemExit):
        offline.load_sample(parser, parser.parse_args(["otto"]), settings)

    assert folders == [DEFAULT_DATA_DIR]


def test_loader_names_invalid_nested_block(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CARTWHEEL_EVALUATION_BASELINE_KNN_NEIGHBORS", "0")
    monkeypatch.setenv("CARTWHEEL_EVALUATION_TIMELINE_BUCKETS", "0")
    loader = SettingsLoader()

    loader.load(EvaluationSettings)
    with pytest.raises(SystemExit) as caught:
        loader.exit_if_invalid(_parser())

    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert "CARTWHEEL_EVALUATION_BASELINE_KNN_NEIGHBORS='0'" in error
    assert "CARTWHEEL_EVALUATION_TIMELINE_BUCKETS='0'" in error


def test_settings_loader_leaves_connection_blocks_unread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_SECURITY_PROTOCOL", "bogus")
    monkeypatch.setenv("CARTWHEEL_TOPIC_EVENTS", "__reserved")
    loader = SettingsLoader()

    settings = loader.load(EvaluationSettings)
    loader.exit_if_invalid(_parser())

    assert settings.kafka.security_protocol == "PLAINTEXT"
    assert settings.topics.events == TopicSettings.model_fields["events"].default
