"""``cartwheel learner`` subcommands against a real redis-server."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from services.cli.__main__ import build_parser
from services.common.settings import RedisSettings
from services.learner.settings import LearnerSettings
from services.learner.stage import LearningStage

pytestmark = pytest.mark.integration


def run(*argv: str) -> int:
    args = build_parser(("services.learner.cli",)).parse_args(["learner", *argv])
    status: int = args.handler(args)
    return status


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, tmp_path: Path
) -> Path:
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", redis_url)
    monkeypatch.setenv("CARTWHEEL_LEARNER_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("CARTWHEEL_LEARNER_CHECKPOINT_KEY", "secret")
    return tmp_path


def test_evaluate_prints_auc_table_and_removes_keys(
    environment: Path,
    capsys: pytest.CaptureFixture[str],
    redis_client: redis.Redis,
) -> None:
    status = run("evaluate", "--limit", "2000")

    output = capsys.readouterr().out
    assert status == 0
    assert "| cart_add |" in output
    assert "item rate AUC" in output
    assert list(redis_client.scan_iter("evaluate-*")) == []


def test_evaluate_reads_dataset_named_by_option(
    environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run("evaluate", "--dataset", "rees46", "--limit", "300")

    output = capsys.readouterr().out
    assert status == 0
    assert output.startswith("rees46: 300 events in ")


def test_verify_checkpoint_prints_model_versions(
    environment: Path,
    capsys: pytest.CaptureFixture[str],
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
) -> None:
    settings = LearnerSettings(
        redis=redis_settings, checkpoint_dir=environment, checkpoint_key="secret"
    )
    stage = LearningStage(settings, redis_client)
    stage.close()

    status = run("verify-checkpoint")

    output = capsys.readouterr().out
    assert status == 0
    assert f"model_version={stage.model_versions['affinity']}" in output


def test_verify_checkpoint_rejects_foreign_file(
    environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = environment / "foreign.ckpt"
    foreign.write_bytes(b"not a checkpoint")

    status = run("verify-checkpoint", str(foreign))

    assert status == 1
    assert "not a Cartwheel checkpoint" in capsys.readouterr().out
