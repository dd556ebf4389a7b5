"""``cartwheel learner`` subcommands against a real redis-server."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from services.cli.command import build_parser
from services.common.redis_features import FeatureStore
from services.common.settings import RedisSettings
from services.learner.evaluation import replay_prequential
from services.learner.settings import LearnerSettings
from services.learner.stage import LearningStage
from services.replay.datasets import REES46_SAMPLE, rees46

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
    stage.checkpoint()
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


def test_evaluate_ignores_existing_checkpoint(
    environment: Path,
    capsys: pytest.CaptureFixture[str],
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A checkpoint that has already learned these events, as a hot path leaves.
    settings = LearnerSettings(
        redis=redis_settings.model_copy(update={"key_prefix": "warm"}),
        checkpoint_dir=environment,
        checkpoint_key="secret",
    )
    store = FeatureStore(redis_client, "warm")
    store.load_scripts()
    warm = LearningStage(settings, redis_client)
    events = rees46.load(REES46_SAMPLE).events[:1500]
    replay_prequential(events, store, warm)
    warm.close()
    checkpoint = environment / "learner.ckpt"
    checkpoint_bytes = checkpoint.read_bytes()
    (environment / "learner.ckpt.lock").unlink()
    empty = tmp_path_factory.mktemp("empty-checkpoints")

    status = run("evaluate", "--limit", "1500")
    with_checkpoint = capsys.readouterr().out
    monkeypatch.setenv("CARTWHEEL_LEARNER_CHECKPOINT_DIR", str(empty))
    run("evaluate", "--limit", "1500")
    without_checkpoint = capsys.readouterr().out

    assert status == 0
    assert sorted(path.name for path in environment.iterdir()) == ["learner.ckpt"]
    assert checkpoint.read_bytes() == checkpoint_bytes
    assert list(empty.iterdir()) == []
    assert _table(with_checkpoint) == _table(without_checkpoint)


def _table(output: str) -> list[str]:
    """Drop the first line, which carries the wall-clock time."""
    return output.splitlines()[1:]
