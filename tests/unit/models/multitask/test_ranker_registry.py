from __future__ import annotations

import json
import os
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.errors import (
    ArtifactCorruptError,
    ArtifactIncompatibleError,
    ArtifactNotFoundError,
)
from models.multitask.dataset import TrainingSet
from models.multitask.evaluation import predict_probs
from models.multitask.features import FeatureSpec
from models.registry import ArtifactMetadata, DataWindow, ModelRegistry, load_artifact

WINDOW = DataWindow(start=None, end=None, examples=10, rows=50)
NOW = datetime(2026, 5, 17, 12, 0, tzinfo=UTC)


def _save(registry: ModelRegistry, trained: tuple[Any, FeatureSpec]) -> Any:
    model, spec = trained
    return registry.save(
        "ranker", model, spec, WINDOW, {"auc_click": 0.7}, now=NOW, code="abc1234"
    )


def test_save_numbers_versions_per_day(
    tmp_path: Path, trained_tiny: tuple[Any, FeatureSpec]
) -> None:
    registry = ModelRegistry(tmp_path)

    first = _save(registry, trained_tiny)
    second = _save(registry, trained_tiny)

    assert first.model_version == "ranker-20260517-abc1234-1"
    assert second.model_version == "ranker-20260517-abc1234-2"
    assert registry.versions("ranker") == [first.model_version, second.model_version]


def test_load_round_trip_keeps_predictions(
    tmp_path: Path, trained_tiny: tuple[Any, FeatureSpec], synthetic_set: TrainingSet
) -> None:
    registry = ModelRegistry(tmp_path)
    metadata = _save(registry, trained_tiny)

    loaded = registry.load(metadata.model_version)

    model, spec = trained_tiny
    expected = predict_probs(model, spec, synthetic_set)
    actual = predict_probs(loaded.model, loaded.spec, synthetic_set)
    assert np.array_equal(expected, actual)
    assert loaded.metadata == metadata


def test_save_stores_nan_metric_as_null(
    tmp_path: Path, trained_tiny: tuple[Any, FeatureSpec]
) -> None:
    model, spec = trained_tiny
    registry = ModelRegistry(tmp_path)

    metadata = registry.save(
        "ranker", model, spec, WINDOW, {"auc_purchase": float("nan")}
    )

    document = json.loads(
        (registry.path_of(metadata.model_version) / "metadata.json").read_text()
    )
    assert document["metrics"] == {"auc_purchase": None}


def test_load_rejects_weights_with_other_hash(
    tmp_path: Path, trained_tiny: tuple[Any, FeatureSpec]
) -> None:
    registry = ModelRegistry(tmp_path)
    metadata = _save(registry, trained_tiny)
    weights = registry.path_of(metadata.model_version) / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))

    with pytest.raises(ArtifactCorruptError, match="SHA-256"):
        registry.load(metadata.model_version)


def test_load_rejects_other_format_version(
    tmp_path: Path, trained_tiny: tuple[Any, FeatureSpec]
) -> None:
    registry = ModelRegistry(tmp_path)
    metadata = _save(registry, trained_tiny)
    path = registry.path_of(metadata.model_version) / "metadata.json"
    document = json.loads(path.read_text())
    document["format_version"] = 99
    path.write_text(json.dumps(document))

    with pytest.raises(ArtifactIncompatibleError, match="format_version=99"):
        registry.load(metadata.model_version)


def test_load_rejects_mismatched_weights(
    tmp_path: Path, trained_tiny: tuple[Any, FeatureSpec]
) -> None:
    registry = ModelRegistry(tmp_path)
    metadata = _save(registry, trained_tiny)
    path = registry.path_of(metadata.model_version) / "metadata.json"
    document = json.loads(path.read_text())
    document["feature_spec"]["hash_buckets"]["brand"] = 99
    path.write_text(json.dumps(document))

    with pytest.raises(ArtifactIncompatibleError, match="do not fit"):
        registry.load(metadata.model_version)


def test_load_rejects_metadata_that_is_not_json(tmp_path: Path) -> None:
    (tmp_path / "metadata.json").write_text("{not json")

    with pytest.raises(ArtifactCorruptError, match="not valid JSON"):
        load_artifact(tmp_path)


def test_load_rejects_metadata_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "metadata.json").write_bytes(b'{"format_version": "\xff"}')

    with pytest.raises(ArtifactCorruptError, match="not UTF-8"):
        load_artifact(tmp_path)


def test_load_raises_not_found_for_unreadable_metadata(tmp_path: Path) -> None:
    (tmp_path / "metadata.json").mkdir()

    with pytest.raises(ArtifactNotFoundError, match="cannot be read"):
        load_artifact(tmp_path)


def test_load_raises_not_found_for_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError, match="no artifact metadata"):
        load_artifact(tmp_path / "absent")


def test_promote_sets_the_champion(
    tmp_path: Path, trained_tiny: tuple[Any, FeatureSpec]
) -> None:
    registry = ModelRegistry(tmp_path)
    metadata = _save(registry, trained_tiny)

    registry.promote(metadata)

    assert registry.champion_version("ranker") == metadata.model_version
    champion = registry.load_champion("ranker")
    assert champion is not None
    assert champion.metadata.model_version == metadata.model_version


def _save_hourly(
    registry: ModelRegistry, model: Any, spec: FeatureSpec, codes: list[str]
) -> list[ArtifactMetadata]:
    """Save one version per code version, an hour apart from NOW on."""
    return [
        registry.save(
            "ranker",
            model,
            spec,
            WINDOW,
            {},
            now=NOW + timedelta(hours=hour),
            code=code,
        )
        for hour, code in enumerate(codes)
    ]


def test_prune_keeps_newest_and_champion(
    tmp_path: Path, trained_tiny: tuple[Any, FeatureSpec]
) -> None:
    registry = ModelRegistry(tmp_path)
    model, spec = trained_tiny
    saved = _save_hourly(
        registry, model, spec, ["bbb2222", "aaa1111", "ccc3333", "aaa1111"]
    )
    registry.promote(saved[0])

    deleted = registry.prune("ranker", keep=2)

    assert deleted == [saved[1].model_version]
    assert set(registry.versions("ranker")) == {
        saved[0].model_version,
        saved[2].model_version,
        saved[3].model_version,
    }


def test_champion_is_none_before_first_promotion(tmp_path: Path) -> None:
    assert ModelRegistry(tmp_path).load_champion("ranker") is None


def _champion_file(registry: ModelRegistry, content: bytes) -> Path:
    path = registry.champion_path("ranker")
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


def test_champion_version_rejects_file_that_is_not_utf8(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    path = _champion_file(registry, b"\xff\xfe\x00")

    with pytest.raises(ArtifactCorruptError, match="is not UTF-8 text") as caught:
        registry.champion_version("ranker")

    assert str(path) in str(caught.value)
    assert "let the next promotion replace it" in str(caught.value)


@pytest.mark.parametrize(
    "content",
    [b"../../../etc/ranker-20260517-abc1234-1", b"other-20260517-abc1234-1", b"x"],
)
def test_champion_version_rejects_text_that_is_no_version(
    tmp_path: Path, content: bytes
) -> None:
    registry = ModelRegistry(tmp_path)
    _champion_file(registry, content)

    with pytest.raises(ArtifactCorruptError, match="expected a version of 'ranker'"):
        registry.champion_version("ranker")


def test_champion_version_is_none_for_empty_file(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _champion_file(registry, b"\n")

    assert registry.champion_version("ranker") is None


def test_champion_version_reports_unreadable_file(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.champion_path("ranker").mkdir(parents=True)

    with pytest.raises(ArtifactNotFoundError, match="cannot be read"):
        registry.champion_version("ranker")


def test_save_rejects_invalid_model_name(
    tmp_path: Path, trained_tiny: tuple[Any, FeatureSpec]
) -> None:
    model, spec = trained_tiny

    with pytest.raises(ValueError, match="model_name='Ranker-X'"):
        ModelRegistry(tmp_path).save("Ranker-X", model, spec, WINDOW, {})


def test_history_orders_readable_versions_by_creation(
    tmp_path: Path, trained_tiny: tuple[Any, FeatureSpec]
) -> None:
    registry = ModelRegistry(tmp_path)
    model, spec = trained_tiny
    saved = _save_hourly(registry, model, spec, ["bbb2222", "aaa1111", "ccc3333"])
    (registry.path_of(saved[2].model_version) / "metadata.json").write_text("{")

    history = registry.history("ranker")

    assert [m.model_version for m in history] == [
        saved[0].model_version,
        saved[1].model_version,
    ]


def _saved_artifact(root: Path, trained: tuple[Any, FeatureSpec]) -> Path:
    registry = ModelRegistry(root)
    return registry.path_of(_save(registry, trained).model_version)


def _edit_metadata(artifact: Path, **changes: Any) -> None:
    path = artifact / "metadata.json"
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    "weights_file",
    ["/dev/zero", "../../x", "..", ".", "", "sub/weights.safetensors", "a\\b"],
)
def test_load_rejects_weights_file_with_path(
    tmp_path: Path, trained_tiny: tuple[Any, FeatureSpec], weights_file: str
) -> None:
    artifact = _saved_artifact(tmp_path, trained_tiny)
    _edit_metadata(artifact, weights_file=weights_file)

    with pytest.raises(ArtifactCorruptError, match="weights_file") as caught:
        load_artifact(artifact)

    assert f"weights_file={weights_file!r} is not a file name" in str(caught.value)


def _link_to_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


@pytest.mark.parametrize(
    ("make_file", "expected"),
    [(_link_to_dev_zero, "is a symbolic link"), (os.mkfifo, "is a named pipe")],
    ids=["link", "pipe"],
)
def test_load_rejects_irregular_weights(
    tmp_path: Path,
    trained_tiny: tuple[Any, FeatureSpec],
    make_file: Callable[[Path], None],
    expected: str,
) -> None:
    weights = _saved_artifact(tmp_path, trained_tiny) / "weights.safetensors"
    weights.unlink()
    make_file(weights)

    # A named pipe opened for reading would wait here for a writer.
    with pytest.raises(ArtifactCorruptError, match=expected):
        load_artifact(weights.parent)


def test_load_rejects_oversized_weights_unread(
    tmp_path: Path, trained_tiny: tuple[Any, FeatureSpec]
) -> None:
    artifact = _saved_artifact(tmp_path, trained_tiny)
    # A sparse file of 1 TiB: reading it would exhaust memory.
    os.truncate(artifact / "weights.safetensors", 1 << 40)

    with pytest.raises(ArtifactCorruptError, match=f"has {1 << 40} bytes, more than"):
        load_artifact(artifact)


def test_load_rejects_weights_too_small_for_model(
    tmp_path: Path, trained_tiny: tuple[Any, FeatureSpec]
) -> None:
    artifact = _saved_artifact(tmp_path, trained_tiny)
    spec = trained_tiny[1].to_dict()
    spec["hash_buckets"]["user_id"] = 10_000_000
    _edit_metadata(artifact, feature_spec=spec)

    with pytest.raises(ArtifactIncompatibleError, match="fewer than the"):
        load_artifact(artifact)


@pytest.mark.parametrize("embedding_dim", [5_000, 20_000_000, 10**9, 10**30])
def test_load_rejects_absurd_model_size_in_little_memory(
    tmp_path: Path, trained_tiny: tuple[Any, FeatureSpec], embedding_dim: int
) -> None:
    artifact = _saved_artifact(tmp_path, trained_tiny)
    architecture = trained_tiny[0].config.to_dict()
    architecture["embedding_dim"] = embedding_dim
    _edit_metadata(artifact, architecture=architecture)

    tracemalloc.start()
    try:
        with pytest.raises(ArtifactIncompatibleError, match="fewer than the"):
            load_artifact(artifact)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # The weights of the tiny model take about 60 KiB; the described model
    # takes 30 MiB at the smallest size tested.
    assert peak < 4 << 20


@pytest.mark.parametrize(
    ("field", "value"), [("embedding_dim", 4.0), ("expert_count", float("nan"))]
)
def test_load_rejects_fractional_architecture_size(
    tmp_path: Path, trained_tiny: tuple[Any, FeatureSpec], field: str, value: float
) -> None:
    artifact = _saved_artifact(tmp_path, trained_tiny)
    architecture = trained_tiny[0].config.to_dict()
    architecture[field] = value
    _edit_metadata(artifact, architecture=architecture)

    with pytest.raises(ArtifactCorruptError, match=f"{field}=.*expected an integer"):
        load_artifact(artifact)


def test_load_rejects_metadata_symlink(tmp_path: Path) -> None:
    (tmp_path / "metadata.json").symlink_to("/dev/zero")

    with pytest.raises(ArtifactCorruptError, match="is a symbolic link"):
        load_artifact(tmp_path)


def test_load_rejects_oversized_metadata_unread(tmp_path: Path) -> None:
    with (tmp_path / "metadata.json").open("wb") as metadata:
        metadata.truncate(1 << 30)

    with pytest.raises(ArtifactCorruptError, match=f"has {1 << 30} bytes, more than"):
        load_artifact(tmp_path)


def test_champion_version_rejects_symlink(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    path = registry.champion_path("ranker")
    path.parent.mkdir(parents=True)
    path.symlink_to("/dev/zero")

    with pytest.raises(ArtifactCorruptError, match="is a symbolic link"):
        registry.champion_version("ranker")


def test_champion_version_rejects_oversized_file(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _champion_file(registry, b"ranker-20260517-abc1234-1\n" * 100)

    with pytest.raises(ArtifactCorruptError, match="more than the 1024 bytes"):
        registry.champion_version("ranker")
