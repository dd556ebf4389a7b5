"""The learning stage against a real redis-server: delayed labels, restarts,
replays, retrain requests and checkpoints."""

from __future__ import annotations

import errno
import fcntl
import logging
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis
from prometheus_client import REGISTRY

from models.online import OnlineExample
from schemas.events import Event, EventType
from schemas.features import CandidateMatrix
from services.common.errors import InvalidSettingsError
from services.common.retrain import take_retrain_request
from services.common.settings import RedisSettings
from services.hotpath.stages import AppliedEvent
from services.learner import metrics
from services.learner.checkpoints import load_evaluators
from services.learner.settings import LearnerSettings
from services.learner.stage import (
    ONLINE_AFFINITY,
    ONLINE_CART_PROB,
    ONLINE_PURCHASE_PROB,
    SIGNAL_NAMES,
    LearningStage,
)

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def make_applied() -> Callable[..., AppliedEvent]:
    counter = iter(range(1_000_000))

    def make(
        event_type: EventType,
        minutes: float,
        user_id: str = "u1",
        item_id: str = "i1",
        partition: int = 0,
        event_id: str | None = None,
        features: dict[str, float] | None = None,
    ) -> AppliedEvent:
        number = next(counter)
        event = Event(
            event_id=event_id or f"e{number}",
            event_type=event_type,
            user_id=user_id,
            item_id=item_id,
            event_time=START + timedelta(minutes=minutes),
        )
        return AppliedEvent(
            event=event,
            user_features={"user_click_count_1h": 3.0},
            item_features=features or {"item_view_to_cart_rate_7d": 0.1},
            received_at=0.0,
            partition=partition,
            offset=number,
        )

    return make


@pytest.fixture
def make_stage(
    redis_settings: RedisSettings, redis_client: redis.Redis, tmp_path: Path
) -> Callable[..., LearningStage]:
    def make(**overrides: object) -> LearningStage:
        values: dict[str, object] = {
            "redis": redis_settings,
            "checkpoint_dir": tmp_path / "checkpoints",
            "allowed_lateness_seconds": 0.0,
            "checkpoint_interval_seconds": 3600.0,
            "affinity_user_buckets": 64,
            "affinity_item_buckets": 64,
        }
        values.update(overrides)
        return LearningStage(LearnerSettings(**values), redis_client, clock=lambda: 0.0)

    return make


def cart_labels(stage: LearningStage) -> tuple[int, int]:
    evaluator = stage.evaluators["cart_add"]
    return evaluator.n_positives, evaluator.n_examples - evaluator.n_positives


def test_click_then_cart_add_within_horizon_yields_one_positive(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    stage = make_stage()

    stage.process([make_applied(EventType.CLICK, 0)])
    stage.process([make_applied(EventType.CART_ADD, 10)])
    stage.process([make_applied(EventType.CLICK, 120, user_id="other")])

    assert cart_labels(stage) == (1, 0)


def test_click_without_cart_add_yields_one_negative_after_horizon(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    stage = make_stage()

    stage.process([make_applied(EventType.CLICK, 0)])
    stage.process([make_applied(EventType.CLICK, 29, user_id="other")])
    before_horizon = cart_labels(stage)
    stage.process([make_applied(EventType.CLICK, 31, user_id="other")])

    assert before_horizon == (0, 0)
    assert cart_labels(stage) == (0, 1)


def _negatives(stage: LearningStage) -> dict[str, int]:
    return {
        task: stage.evaluators[task].n_examples - stage.evaluators[task].n_positives
        for task in ("cart_add", "purchase")
    }


def test_watermark_jump_resolves_backlog_over_batches(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    stage = make_stage(max_resolutions_per_event=4)
    # Clicks open cart-add examples and cart adds open purchase examples, each
    # on its own item so that no outcome resolves them.
    stage.process(
        [make_applied(EventType.CLICK, 0, item_id=f"c{n}") for n in range(12)]
        + [make_applied(EventType.CART_ADD, 0, item_id=f"p{n}") for n in range(12)]
    )
    late = 2 * 24 * 60

    stage.process([make_applied(EventType.CLICK, late, user_id="other")])
    after_one_event = _negatives(stage)
    stage.process(
        [make_applied(EventType.CLICK, late, user_id=f"u{n}") for n in range(3)]
    )
    after_three_more = _negatives(stage)
    for n in range(4):
        stage.process(
            [
                make_applied(EventType.CLICK, late, user_id=f"v{n}"),
                make_applied(EventType.CLICK, late, user_id=f"w{n}"),
            ]
        )

    assert after_one_event == {"cart_add": 2, "purchase": 2}
    assert after_three_more == {"cart_add": 8, "purchase": 8}
    assert _negatives(stage) == {"cart_add": 12, "purchase": 12}


def test_resolution_budget_passes_unused_share_on(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    stage = make_stage(max_resolutions_per_event=4)
    stage.process(
        [make_applied(EventType.CART_ADD, 0, item_id=f"p{n}") for n in range(6)]
    )

    stage.process([make_applied(EventType.CLICK, 2 * 24 * 60, user_id="other")])

    assert _negatives(stage) == {"cart_add": 0, "purchase": 4}


def test_unused_share_returns_to_earlier_task(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    stage = make_stage(max_resolutions_per_event=2)
    stage.process(
        [make_applied(EventType.CLICK, 0, item_id=f"c{n}") for n in range(10)]
    )

    stage.process([make_applied(EventType.CLICK, 2 * 24 * 60, user_id="other")])

    assert _negatives(stage) == {"cart_add": 2, "purchase": 0}


def test_cart_add_after_horizon_is_not_a_positive(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    stage = make_stage()

    stage.process(
        [make_applied(EventType.CLICK, 0), make_applied(EventType.CART_ADD, 45)]
    )

    assert cart_labels(stage) == (0, 1)


def test_restart_between_click_and_cart_add_keeps_positive(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    first = make_stage()
    first.process([make_applied(EventType.CLICK, 0)])
    first.close()

    second = make_stage()
    second.process([make_applied(EventType.CART_ADD, 5)])

    assert cart_labels(second) == (1, 0)


def test_restart_without_checkpoint_keeps_negative(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    first = make_stage()
    first.process([make_applied(EventType.CLICK, 0)])

    second = make_stage(instance_name="replacement")
    second.process([make_applied(EventType.CLICK, 40, user_id="other")])

    assert cart_labels(second) == (0, 1)


def test_replayed_batch_learns_once(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    stage = make_stage()
    batch = [
        make_applied(EventType.CLICK, 0),
        make_applied(EventType.CART_ADD, 1),
        make_applied(EventType.PURCHASE, 2),
    ]

    stage.process(batch)
    affinity_after_first = stage.evaluators["affinity"].model.n_updates
    stage.process(batch)

    assert cart_labels(stage) == (1, 0)
    assert stage.evaluators["purchase"].n_positives == 1
    assert stage.evaluators["affinity"].model.n_updates == affinity_after_first


def test_replay_after_crash_learns_once_in_new_stage(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    batch = [make_applied(EventType.CLICK, 0), make_applied(EventType.CART_ADD, 1)]
    make_stage().process(batch)

    restarted = make_stage()
    restarted.process(batch)

    assert cart_labels(restarted) == (0, 0)
    assert restarted.evaluators["affinity"].model.n_updates == 0


def test_duplicate_event_within_batch_learns_once(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    stage = make_stage(affinity_negatives=0)
    click = make_applied(EventType.CLICK, 0, event_id="same")

    stage.process([click, click])

    assert stage.evaluators["affinity"].model.n_updates == 1


def test_partitions_keep_separate_watermarks(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    stage = make_stage()

    stage.process([make_applied(EventType.CLICK, 0, partition=0)])
    stage.process([make_applied(EventType.CLICK, 90, user_id="other", partition=1)])

    assert cart_labels(stage) == (0, 0)


def test_cart_add_then_purchase_yields_purchase_positive(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    stage = make_stage()

    stage.process([make_applied(EventType.CART_ADD, 0)])
    stage.process([make_applied(EventType.PURCHASE, 600)])

    assert stage.evaluators["purchase"].n_positives == 1


def test_drift_writes_retrain_request(
    make_stage: Callable[..., LearningStage],
    make_applied: Callable[..., AppliedEvent],
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
) -> None:
    stage = make_stage(drift_grace_period=20, drift_delta=0.05)
    batch = []
    # Stable regime: no click converts. Then every click converts.
    for index in range(300):
        batch.append(make_applied(EventType.CLICK, index, item_id=f"a{index}"))
    for index in range(300, 600):
        batch.append(make_applied(EventType.CLICK, index, item_id=f"b{index}"))
        batch.append(make_applied(EventType.CART_ADD, index + 0.5, item_id=f"b{index}"))

    stage.process(batch)

    request = take_retrain_request(redis_client, redis_settings.key_prefix)
    assert stage.evaluators["cart_add"].drift_monitor.n_drifts >= 1
    assert request is not None
    assert "cart_add" in request.reason


def test_checkpoint_on_close_restores_identical_signals(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    stage = make_stage()
    batch = [
        make_applied(EventType.CLICK, index, item_id=f"i{index % 7}")
        for index in range(50)
    ]
    batch += [
        make_applied(EventType.CART_ADD, 50 + index, item_id=f"i{index}")
        for index in range(3)
    ]
    stage.process(batch)
    stage.process([make_applied(EventType.CLICK, 200, user_id="late")])
    candidates = [
        (f"i{index}", {"item_view_to_cart_rate_7d": index / 10}) for index in range(5)
    ]
    stage.close()

    restored = make_stage()

    assert restored.model_versions == stage.model_versions
    assert restored.signals(
        "u1", {"user_click_count_1h": 2.0}, candidates
    ) == stage.signals("u1", {"user_click_count_1h": 2.0}, candidates)


def _interval_stage(
    settings: LearnerSettings, client: redis.Redis, now: list[float]
) -> LearningStage:
    return LearningStage(settings, client, clock=lambda: now[0])


@pytest.fixture
def interval_settings(redis_settings: RedisSettings, tmp_path: Path) -> LearnerSettings:
    return LearnerSettings(
        redis=redis_settings,
        checkpoint_dir=tmp_path / "checkpoints",
        checkpoint_interval_seconds=60.0,
    )


def test_idle_stage_writes_no_checkpoint(
    interval_settings: LearnerSettings, redis_client: redis.Redis
) -> None:
    now = [0.0]
    stage = _interval_stage(interval_settings, redis_client, now)
    now[0] = 120.0

    stage.process([])
    stage.close()

    assert not stage.checkpoint_path.exists()


def test_replay_after_restore_writes_no_checkpoint(
    interval_settings: LearnerSettings,
    redis_client: redis.Redis,
    make_applied: Callable[..., AppliedEvent],
) -> None:
    batch = [make_applied(EventType.CLICK, index) for index in range(5)]
    now = [0.0]
    trained = _interval_stage(interval_settings, redis_client, now)
    trained.process(batch)
    trained.close()
    restarted = _interval_stage(interval_settings, redis_client, now)
    now[0] = 120.0
    written = {"outcome": "written"}
    before = REGISTRY.get_sample_value("cartwheel_learner_checkpoints_total", written)

    restarted.process(batch)
    restarted.close()

    after = REGISTRY.get_sample_value("cartwheel_learner_checkpoints_total", written)
    assert restarted.model_updates == trained.model_updates
    assert after == before


def test_learning_after_restore_checkpoints_on_interval(
    interval_settings: LearnerSettings,
    redis_client: redis.Redis,
    make_applied: Callable[..., AppliedEvent],
) -> None:
    now = [0.0]
    first = _interval_stage(interval_settings, redis_client, now)
    first.process([make_applied(EventType.CLICK, 0)])
    first.close()
    second = _interval_stage(interval_settings, redis_client, now)
    now[0] = 120.0

    second.process([make_applied(EventType.CLICK, 1)])
    saved = load_evaluators(second.checkpoint_path, None)

    assert second.model_updates["affinity"] > first.model_updates["affinity"]
    assert saved["affinity"].model.n_updates == second.model_updates["affinity"]
    assert not second.has_unsaved_learning
    second.close()


def test_stage_without_checkpoint_writes_nothing(
    make_stage: Callable[..., LearningStage],
    make_applied: Callable[..., AppliedEvent],
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    trained = make_stage()
    trained.process([make_applied(EventType.CLICK, index) for index in range(20)])
    trained.close()
    checkpoint_dir = tmp_path / "checkpoints"
    files_before = sorted(path.name for path in checkpoint_dir.iterdir())
    (checkpoint_dir / "learner.ckpt.lock").unlink()
    settings = LearnerSettings(
        redis=redis_settings,
        checkpoint_dir=checkpoint_dir,
        checkpoint_interval_seconds=1.0,
    )

    stage = LearningStage(
        settings, redis_client, clock=lambda: 1e9, has_checkpoint=False
    )
    stage.process([make_applied(EventType.CLICK, 30)])
    stage.close()

    assert files_before == ["learner.ckpt", "learner.ckpt.lock"]
    assert stage.model_updates["affinity"] == 1
    assert sorted(path.name for path in checkpoint_dir.iterdir()) == ["learner.ckpt"]
    with pytest.raises(RuntimeError, match="has_checkpoint=False"):
        stage.checkpoint()


def test_unwritable_checkpoint_dir_stops_start(
    make_stage: Callable[..., LearningStage], tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")

    with pytest.raises(InvalidSettingsError) as caught:
        make_stage(checkpoint_dir=tmp_path / "a-file" / "learner")

    assert "CARTWHEEL_LEARNER_CHECKPOINT_DIR=" in str(caught.value)


def test_checkpoint_path_directory_stops_start(
    make_stage: Callable[..., LearningStage], tmp_path: Path
) -> None:
    (tmp_path / "checkpoints" / "learner.ckpt").mkdir(parents=True)

    with pytest.raises(InvalidSettingsError) as caught:
        make_stage(instance_name="learner")

    assert "CARTWHEEL_LEARNER_CHECKPOINT_DIR=" in str(caught.value)
    assert "learner.ckpt is a directory" in str(caught.value)


def test_shared_checkpoint_file_warns(
    make_stage: Callable[..., LearningStage], caplog: pytest.LogCaptureFixture
) -> None:
    text = "another process writes the learner checkpoint"
    first = make_stage()
    with caplog.at_level(logging.WARNING, logger="services.learner.stage"):
        second = make_stage()
    shared = [message for message in caplog.messages if text in message]
    second.close()
    first.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="services.learner.stage"):
        make_stage().close()

    assert len(shared) == 1
    assert not any(text in message for message in caplog.messages)


def test_stage_starts_unlocked_when_locks_rejected(
    make_stage: Callable[..., LearningStage],
    make_applied: Callable[..., AppliedEvent],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def reject_lock(handle: object, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", reject_lock)
    with caplog.at_level(logging.WARNING, logger="services.learner.stage"):
        stage = make_stage()

    stage.process([make_applied(EventType.CLICK, 0)])
    stage.close()

    assert "learner checkpoint not locked" in caplog.text
    assert "No locks available" in caplog.text
    assert make_stage().evaluators["affinity"].model.n_updates > 0


def test_failed_checkpoint_write_does_not_fail_the_batch(
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    make_applied: Callable[..., AppliedEvent],
    tmp_path: Path,
) -> None:
    settings = LearnerSettings(
        redis=redis_settings,
        checkpoint_dir=tmp_path / "checkpoints",
        checkpoint_interval_seconds=60.0,
    )
    now = [0.0]
    stage = LearningStage(settings, redis_client, clock=lambda: now[0])
    shutil.rmtree(tmp_path / "checkpoints")
    (tmp_path / "checkpoints").write_text("")
    failed = {"outcome": "failed"}
    before = REGISTRY.get_sample_value("cartwheel_learner_checkpoints_total", failed)
    now[0] = 120.0

    stage.process([make_applied(EventType.CLICK, 0)])

    after = REGISTRY.get_sample_value("cartwheel_learner_checkpoints_total", failed)
    assert (after or 0.0) == (before or 0.0) + 1


def test_tampered_checkpoint_is_rejected_and_stage_starts_fresh(
    make_stage: Callable[..., LearningStage],
    make_applied: Callable[..., AppliedEvent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    stage = make_stage(checkpoint_key="secret")
    stage.process([make_applied(EventType.CLICK, 0)])
    stage.close()
    data = bytearray(stage.checkpoint_path.read_bytes())
    data[-20] ^= 0xFF
    stage.checkpoint_path.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger="services.learner.checkpoints"):
        restored = make_stage(checkpoint_key="secret")

    assert restored.evaluators["affinity"].model.n_updates == 0
    assert "checkpoint rejected" in caplog.text
    assert "failed verification" in caplog.text


def test_checkpoint_with_other_key_is_rejected(
    make_stage: Callable[..., LearningStage],
    make_applied: Callable[..., AppliedEvent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    stage = make_stage(checkpoint_key="secret")
    stage.process([make_applied(EventType.CLICK, 0)])
    stage.close()

    with caplog.at_level(logging.WARNING, logger="services.learner.checkpoints"):
        make_stage(checkpoint_key="another")

    assert "failed verification" in caplog.text
    assert "compare CARTWHEEL_LEARNER_CHECKPOINT_KEY with the key" in caplog.text


def test_disabled_stage_writes_nothing_to_redis(
    make_stage: Callable[..., LearningStage],
    make_applied: Callable[..., AppliedEvent],
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
) -> None:
    stage = make_stage(is_enabled=False)

    stage.process([make_applied(EventType.CLICK, 0)])

    assert list(redis_client.scan_iter(f"{redis_settings.key_prefix}:*")) == []


@pytest.mark.parametrize("learner", ["alma", "logistic_regression", "fm"])
def test_signals_match_models_scoring_each_candidate(
    make_stage: Callable[..., LearningStage],
    make_applied: Callable[..., AppliedEvent],
    learner: str,
) -> None:
    stage = make_stage(conversion_learner=learner)
    batch = [
        make_applied(EventType.CLICK, index, item_id=f"i{index % 5}")
        for index in range(40)
    ]
    batch += [make_applied(EventType.CART_ADD, 40, item_id="i1")]
    batch += [make_applied(EventType.CLICK, 100, user_id="later")]
    stage.process(batch)
    user_features = {"user_click_count_1h": 2.0}
    candidates = [
        (
            f"i{index}",
            {"item_view_to_cart_rate_7d": index / 10, "pair_is_purchased": 0.0},
        )
        for index in range(5)
    ]

    signals = stage.signals("u1", user_features, candidates)

    for (item_id, features), signal in zip(candidates, signals, strict=True):
        example = OnlineExample("u1", item_id, {**user_features, **features})
        cart = stage.evaluators["cart_add"].model.predict_proba(example)
        purchase = stage.evaluators["purchase"].model.predict_proba(example)
        affinity = stage.evaluators["affinity"].model.predict_proba(example)
        assert signal[ONLINE_CART_PROB] == pytest.approx(cart, rel=1e-9)
        assert signal[ONLINE_PURCHASE_PROB] == pytest.approx(purchase, rel=1e-9)
        assert signal[ONLINE_AFFINITY] == pytest.approx(affinity, rel=1e-9)


def test_signals_return_nothing_for_no_candidates(
    make_stage: Callable[..., LearningStage],
) -> None:
    assert make_stage().signals("u1", {}, []) == []


def test_restored_models_keep_their_learner_and_warn(
    make_stage: Callable[..., LearningStage],
    make_applied: Callable[..., AppliedEvent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    stage = make_stage(conversion_learner="alma")
    stage.process([make_applied(EventType.CLICK, 0)])
    stage.close()

    with caplog.at_level(logging.WARNING, logger="services.learner.stage"):
        restored = make_stage(conversion_learner="logistic_regression")

    assert restored.evaluators["cart_add"].model.learner == "alma"
    assert "delete the checkpoint to switch" in caplog.text


def test_stage_exports_pending_examples_per_model(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    stage = make_stage()

    stage.process(
        [
            make_applied(EventType.CLICK, 0, item_id="a"),
            make_applied(EventType.CLICK, 1, item_id="b"),
            make_applied(EventType.CART_ADD, 2, item_id="a"),
        ]
    )

    assert stage._pending[0] == {"cart_add": 1, "purchase": 1}
    assert metrics.PENDING.labels(model="cart_add")._value.get() == 1
    assert stage.model_updates["cart_add"] == 1


def test_pending_cap_drops_earliest_examples(
    make_stage: Callable[..., LearningStage], make_applied: Callable[..., AppliedEvent]
) -> None:
    stage = make_stage(max_pending_per_task=3)
    evicted_before = metrics.PENDING_EVICTED._value.get()

    stage.process([make_applied(EventType.CLICK, n, item_id=f"i{n}") for n in range(5)])
    pending_after_clicks = dict(stage._pending[0])
    stage.process(
        [
            make_applied(EventType.CART_ADD, 10, item_id="i0"),
            make_applied(EventType.CART_ADD, 11, item_id="i4"),
        ]
    )

    assert pending_after_clicks["cart_add"] == 3
    assert metrics.PENDING_EVICTED._value.get() == evicted_before + 2
    assert cart_labels(stage) == (1, 0)


def _stage_after_clicks(
    make_stage: Callable[..., LearningStage],
    make_applied: Callable[..., AppliedEvent],
) -> LearningStage:
    stage = make_stage()
    stage.process(
        [
            make_applied(EventType.CLICK, index, item_id=f"i{index % 3}")
            for index in range(20)
        ]
    )
    return stage


def test_signal_matrix_stacks_user_signals(
    make_stage: Callable[..., LearningStage],
    make_applied: Callable[..., AppliedEvent],
) -> None:
    stage = _stage_after_clicks(make_stage, make_applied)
    requests = [
        ("u1", {"user_click_count_1h": 2.0}, [("i0", {"pair_is_purchased": 1.0})]),
        ("u2", {}, []),
        ("u3", {}, [("i1", {}), ("i2", {"item_view_to_cart_rate_7d": 0.5})]),
    ]

    matrix = stage.signal_matrix(requests)

    rows = [
        [signal[name] for name in SIGNAL_NAMES]
        for user_id, user_features, candidates in requests
        for signal in stage.signals(user_id, user_features, candidates)
    ]
    assert matrix.shape == (3, 3)
    np.testing.assert_allclose(matrix, rows, rtol=1e-12)


def test_signal_matrix_reads_candidate_matrices_like_mappings(
    make_stage: Callable[..., LearningStage],
    make_applied: Callable[..., AppliedEvent],
) -> None:
    stage = _stage_after_clicks(make_stage, make_applied)
    items = {"i0": {"pair_is_purchased": 1.0}, "i1": {}, "i2": {"item_price": 9.0}}
    user = {"user_click_count_1h": 2.0}

    by_mappings = stage.signal_matrix([("u1", user, list(items.items()))])
    by_matrix = stage.signal_matrix(
        [("u1", user, CandidateMatrix.from_mappings(items, list(items)))]
    )

    np.testing.assert_array_equal(by_matrix, by_mappings)


def test_new_stage_exports_drift_count_per_model(
    make_stage: Callable[..., LearningStage],
) -> None:
    stage = make_stage()

    for model_name in stage.evaluators:
        sample = REGISTRY.get_sample_value(
            "cartwheel_learner_drifts_total", {"model": model_name}
        )
        assert sample is not None, model_name
