"""Signed checkpoints of online model state.

River models are plain Python objects, so a checkpoint is a pickle. Unpickling
runs code chosen by whoever wrote the bytes, so a checkpoint is verified
*before* it is unpickled, and unpickling then accepts only classes from an
allow-list of modules.

File layout: ``CWCK`` magic, one format-version byte, one mode byte, a 32-byte
tag, then the pickle. Two modes:

- ``H``: the tag is HMAC-SHA256 of the pickle under a secret key. It catches
  corruption and also tampering by anyone who can write the checkpoint
  directory but does not hold the key (a shared volume, a restored backup).
  It does not help once the key itself leaks, e.g. with the process's
  environment.
- ``D``: the tag is a plain SHA-256 digest, used when no key is configured. It
  catches truncation and bit rot only: anyone who can write the file can also
  write a matching digest.

A reader configured with a key accepts only ``H`` files, so an attacker cannot
downgrade a checkpoint to a digest they can forge.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import os
import pickle
from pathlib import Path
from typing import Any

from models.errors import (
    CheckpointError,
    CheckpointFormatError,
    CheckpointIntegrityError,
)

__all__ = ["dump_checkpoint", "load_checkpoint", "read_checkpoint", "write_checkpoint"]

logger = logging.getLogger(__name__)

_MAGIC = b"CWCK"
_FORMAT_VERSION = 1
_MODE_HMAC = b"H"
_MODE_DIGEST = b"D"
_TAG_BYTES = 32
_HEADER_BYTES = len(_MAGIC) + 2 + _TAG_BYTES

# Modules whose classes a checkpoint may contain: the model wrappers, River,
# and the standard containers and numeric types their state is made of.
_ALLOWED_MODULE_PREFIXES = (
    "models.online.",
    "river.",
    "numpy",
    "collections",
    "random",
    "datetime",
    "functools",
    "copyreg",
    "_codecs",
    "math",
    "statistics",
)
_ALLOWED_BUILTINS = frozenset(
    {
        "dict",
        "list",
        "set",
        "frozenset",
        "tuple",
        "float",
        "int",
        "bool",
        "str",
        "bytes",
        "bytearray",
        "complex",
        "slice",
        "range",
        "object",
        "getattr",
    }
)


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _ALLOWED_BUILTINS:
            return super().find_class(module, name)
        if module.startswith(_ALLOWED_MODULE_PREFIXES):
            return super().find_class(module, name)
        raise CheckpointIntegrityError(
            f"checkpoint refers to {module}.{name}, which is not an allowed model "
            "class; the file was not written by Cartwheel's online learner"
        )


def _tag(payload: bytes, key: bytes | None) -> tuple[bytes, bytes]:
    if key:
        return _MODE_HMAC, hmac.new(key, payload, hashlib.sha256).digest()
    return _MODE_DIGEST, hashlib.sha256(payload).digest()


def dump_checkpoint(state: object, key: bytes | None) -> bytes:
    """Pickle ``state`` and prefix it with its header and tag.

    Args:
        state: picklable object, usually a dict of models.
        key: HMAC key; None or empty writes a plain SHA-256 digest instead.
    """
    payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    mode, tag = _tag(payload, key)
    return _MAGIC + bytes([_FORMAT_VERSION]) + mode + tag + payload


def load_checkpoint(
    data: bytes,
    key: bytes | None,
    source: str = "<bytes>",
    key_setting: str = "the checkpoint key",
) -> Any:
    """Verify a checkpoint and unpickle its state.

    Args:
        data: the whole checkpoint.
        key: the HMAC key it was signed with, or None for digest mode.
        source: where the bytes came from, for error messages.
        key_setting: the setting that contains the reader's key, named in the
            messages about keys, such as ``CARTWHEEL_LEARNER_CHECKPOINT_KEY``.

    Raises:
        CheckpointFormatError: the data does not start with the checkpoint
            magic, or has another format version.
        CheckpointIntegrityError: the data ends within the header, the tag
            does not match the payload, the mode does not match the configured
            key, or the payload names a class outside the allow-list.
    """
    if not data.startswith(_MAGIC):
        raise CheckpointFormatError(
            f"{source} is not a Cartwheel checkpoint (length={len(data)}, "
            f"starts with {data[:4]!r}; expected {_MAGIC!r}); check that the path "
            "names a checkpoint file"
        )
    if len(data) < _HEADER_BYTES:
        raise CheckpointIntegrityError(
            f"{source} is truncated: it has {len(data)} bytes, fewer than the "
            f"{_HEADER_BYTES} bytes of a checkpoint header; it was not loaded"
        )
    version = data[len(_MAGIC)]
    if version != _FORMAT_VERSION:
        raise CheckpointFormatError(
            f"{source} has format version {version}; expected {_FORMAT_VERSION}"
        )
    mode = data[len(_MAGIC) + 1 : len(_MAGIC) + 2]
    tag = data[len(_MAGIC) + 2 : _HEADER_BYTES]
    payload = data[_HEADER_BYTES:]

    expected_mode, expected_tag = _tag(payload, key)
    if mode != expected_mode:
        raise _mode_mismatch(source, mode, key_setting)
    if not hmac.compare_digest(tag, expected_tag):
        raise _tag_mismatch(source, mode, key_setting)
    try:
        return _AllowListUnpickler(io.BytesIO(payload)).load()
    except (
        pickle.UnpicklingError,
        AttributeError,
        ImportError,
        EOFError,
        KeyError,
        TypeError,
        ValueError,
        CheckpointFormatError,
    ) as exc:
        # The tag matched, so the bytes are ours; the classes they name have
        # changed since they were written (an upgrade between save and load),
        # or a model refused state saved in an older layout or lacking a
        # field it needs.
        raise CheckpointFormatError(
            f"{source} was written by an incompatible version of the models ({exc})"
        ) from exc


def _mode_mismatch(source: str, mode: bytes, key_setting: str) -> CheckpointError:
    if mode == _MODE_HMAC:
        return CheckpointIntegrityError(
            f"{source} is signed with a key, but no key is set; set {key_setting} "
            "to the key of the process that wrote it"
        )
    if mode == _MODE_DIGEST:
        # A reader with a key rejects unsigned files, so that no one can swap
        # in a checkpoint whose digest they can compute without the key.
        return CheckpointIntegrityError(
            f"{source} is not signed (it was written without a key), but "
            f"{key_setting} is set, and a reader with a key accepts only signed "
            f"checkpoints; set the same key where it is written, or unset "
            f"{key_setting}"
        )
    return CheckpointFormatError(
        f"{source} has the unknown signing mode {mode!r}; expected {_MODE_HMAC!r} "
        f"(signed with a key) or {_MODE_DIGEST!r} (SHA-256 digest)"
    )


def _tag_mismatch(source: str, mode: bytes, key_setting: str) -> CheckpointError:
    if mode == _MODE_HMAC:
        return CheckpointIntegrityError(
            f"{source} failed verification: its signature does not match its "
            f"content under the key in {key_setting}; most likely it was signed "
            f"with a different key, so compare {key_setting} with the key of the "
            "process that wrote it; otherwise it is corrupt, truncated or was "
            "modified; it was not loaded"
        )
    return CheckpointIntegrityError(
        f"{source} failed verification: its SHA-256 digest does not match its "
        "content, so it is corrupt, truncated or was modified; it was not loaded"
    )


def write_checkpoint(path: Path, state: object, key: bytes | None) -> int:
    """Write a checkpoint atomically (temp file, fsync, rename); return its size."""
    data = dump_checkpoint(state, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return len(data)


def read_checkpoint(
    path: Path, key: bytes | None, key_setting: str = "the checkpoint key"
) -> Any:
    """Read and verify the checkpoint at ``path``.

    ``key_setting`` names the setting that contains ``key`` in error messages.

    Raises:
        FileNotFoundError: there is no checkpoint at ``path``.
        CheckpointFormatError: see :func:`load_checkpoint`.
        CheckpointIntegrityError: see :func:`load_checkpoint`.
    """
    return load_checkpoint(
        path.read_bytes(), key, source=str(path), key_setting=key_setting
    )
