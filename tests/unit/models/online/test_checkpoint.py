from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from models.errors import CheckpointFormatError, CheckpointIntegrityError
from models.online import (
    AffinityModel,
    OnlineExample,
    dump_checkpoint,
    load_checkpoint,
    read_checkpoint,
    write_checkpoint,
)


def test_load_checkpoint_returns_state_signed_with_key() -> None:
    data = dump_checkpoint({"answer": 42}, b"key")

    assert load_checkpoint(data, b"key") == {"answer": 42}


def test_load_checkpoint_rejects_flipped_payload_byte() -> None:
    data = bytearray(dump_checkpoint({"answer": 42}, b"key"))
    data[-3] ^= 0x01

    with pytest.raises(CheckpointIntegrityError, match="failed verification"):
        load_checkpoint(bytes(data), b"key")


def test_load_checkpoint_rejects_truncated_file() -> None:
    data = dump_checkpoint({"answer": list(range(100))}, None)

    with pytest.raises(CheckpointIntegrityError, match="failed verification"):
        load_checkpoint(data[:-10], None)


def test_load_checkpoint_rejects_wrong_key() -> None:
    data = dump_checkpoint({"answer": 42}, b"key")

    with pytest.raises(CheckpointIntegrityError) as caught:
        load_checkpoint(data, b"other", key_setting="KEY_VARIABLE")

    message = str(caught.value)
    assert "failed verification" in message
    assert "signed with a different key" in message
    assert "compare KEY_VARIABLE with the key" in message


def test_truncated_digest_file_names_no_key() -> None:
    data = dump_checkpoint({"answer": list(range(100))}, None)

    with pytest.raises(CheckpointIntegrityError) as caught:
        load_checkpoint(data[:-10], None, key_setting="KEY_VARIABLE")

    message = str(caught.value)
    assert "SHA-256 digest does not match" in message
    assert "KEY_VARIABLE" not in message


def test_load_checkpoint_rejects_digest_file_when_key_configured() -> None:
    data = dump_checkpoint({"answer": 42}, None)

    with pytest.raises(CheckpointIntegrityError) as caught:
        load_checkpoint(data, b"key", key_setting="KEY_VARIABLE")

    message = str(caught.value)
    assert "is not signed (it was written without a key)" in message
    assert "KEY_VARIABLE is set" in message
    assert "b'D'" not in message


def test_load_checkpoint_rejects_signed_file_without_key() -> None:
    data = dump_checkpoint({"answer": 42}, b"key")

    with pytest.raises(CheckpointIntegrityError) as caught:
        load_checkpoint(data, None, key_setting="KEY_VARIABLE")

    message = str(caught.value)
    assert "is signed with a key, but no key is set" in message
    assert "set KEY_VARIABLE to the key" in message
    assert "b'H'" not in message


def test_load_checkpoint_rejects_unknown_signing_mode() -> None:
    data = bytearray(dump_checkpoint({"answer": 42}, b"key"))
    data[5] = ord("X")

    with pytest.raises(CheckpointFormatError, match="unknown signing mode b'X'"):
        load_checkpoint(bytes(data), b"key")


def test_load_checkpoint_rejects_foreign_file() -> None:
    with pytest.raises(CheckpointFormatError) as caught:
        load_checkpoint(pickle.dumps({"answer": 42}), b"key")

    message = str(caught.value)
    assert "not a Cartwheel checkpoint" in message
    assert "delete" not in message


@pytest.mark.parametrize("length", [4, 11, 37], ids=["magic", "short", "header-1"])
def test_load_checkpoint_reports_file_cut_within_header(length: int) -> None:
    data = dump_checkpoint({"answer": 42}, b"key")[:length]

    with pytest.raises(CheckpointIntegrityError) as caught:
        load_checkpoint(data, b"key", source="x.ckpt")

    message = str(caught.value)
    assert f"x.ckpt is truncated: it has {length} bytes" in message
    assert "fewer than the 38 bytes of a checkpoint header" in message


def test_load_checkpoint_rejects_empty_file_as_foreign() -> None:
    with pytest.raises(CheckpointFormatError, match="not a Cartwheel checkpoint"):
        load_checkpoint(b"", b"key")


def test_load_checkpoint_rejects_signed_class_outside_allow_list() -> None:
    # Even a correctly signed file may not name arbitrary callables.
    data = dump_checkpoint(Path("/tmp"), b"key")

    with pytest.raises(CheckpointIntegrityError, match="not an allowed model class"):
        load_checkpoint(data, b"key")


def test_write_checkpoint_round_trip_keeps_predictions(tmp_path: Path) -> None:
    model = AffinityModel(user_buckets=16, item_buckets=16, seed=1)
    example = OnlineExample("u1", "i1")
    for _ in range(5):
        model.learn_one(example, True)
    path = tmp_path / "nested" / "model.ckpt"

    write_checkpoint(path, model, b"key")
    restored = read_checkpoint(path, b"key")

    assert restored.predict_proba(example) == model.predict_proba(example)
    assert restored.model_version == model.model_version
    assert list(path.parent.iterdir()) == [path]
