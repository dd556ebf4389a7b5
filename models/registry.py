"""Versioned ranker artifacts in a directory, and the champion pointer.

Layout under the registry root::

    <model_name>/<model_version>/weights.safetensors
    <model_name>/<model_version>/metadata.json
    <model_name>/CHAMPION            the promoted version, one line

``model_version`` is ``<model_name>-<YYYYMMDD>-<git sha7 or nogit>-<n>`` with
``n`` counting up per name, day and code version, so versions are unique in a
registry. An artifact is written to a temporary directory and renamed into
place, so a reader never sees half of one. Loading checks the SHA-256 of the
weights against the metadata before any tensor is read, and no pickle is ever
loaded.

Loading reads only regular files, rejects a symbolic link in place of one,
and reads each within a size cap, so a damaged artifact cannot make a process
read without end. A file's size is checked before any byte of it is read, and
the read requests that size only, so no cap, however large, makes a load
allocate more memory than the file holds. ``weights_file`` in the metadata
must be a plain file name, with no folder in it. The caps follow from what
each file holds:

- ``metadata.json``: 1 MiB; it holds feature names and metrics, about 2 KiB.
- the weights: the tensors of the model that the metadata describes, plus
  64 KiB for the safetensors header; they must also hold at least those
  tensors, so the metadata cannot make the loader build a model larger than
  the weights on disk. That size is computed from the metadata with integer
  arithmetic, without building the model, so an absurd size in it is
  rejected without allocating anything.
- ``CHAMPION``: 1 KiB; it holds one version.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from models.errors import (
    ArtifactCorruptError,
    ArtifactError,
    ArtifactIncompatibleError,
    ArtifactNotFoundError,
)
from models.multitask.export import model_from_tensors, model_tensors
from models.multitask.features import FeatureSpec
from models.multitask.model import ModelConfig, RankerModule, weight_count

__all__ = [
    "ARTIFACT_FORMAT_VERSION",
    "ArtifactMetadata",
    "DataWindow",
    "LoadedArtifact",
    "ModelAnnouncement",
    "ModelRegistry",
    "code_version",
    "load_artifact",
]

logger = logging.getLogger(__name__)

ARTIFACT_FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
METADATA_FILE = "metadata.json"
CHAMPION_FILE = "CHAMPION"
_MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_MAX_VERSION_ATTEMPTS = 1000

# A file name inside the artifact directory: no folder, and not "." or "..".
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")

# Size caps of the files that a load reads. The module docstring explains each.
_MAX_METADATA_BYTES = 1 << 20
_MAX_CHAMPION_BYTES = 1 << 10
_WEIGHTS_HEADER_BYTES = 64 << 10

# Every tensor a ranker saves is float32.
_WEIGHT_BYTES = torch.float32.itemsize

_FILE_KINDS = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
}


class DataWindow(BaseModel):
    """The training data an artifact was fitted on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: AwareDatetime | None = Field(description="event time of the first example")
    end: AwareDatetime | None = Field(description="event time of the last example")
    examples: int = Field(ge=0, description="training examples (events) used")
    rows: int = Field(ge=0, description="training rows, negatives included")
    examples_sha256: str | None = Field(
        default=None,
        description="SHA-256 of the examples' event ids in window order; "
        "None in artifacts saved before it was recorded",
    )


class ArtifactMetadata(BaseModel):
    """Everything about an artifact except its weights; stored as metadata.json."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int
    model_name: str
    model_version: str
    architecture: dict[str, Any]
    feature_spec: dict[str, Any]
    data_window: DataWindow
    metrics: dict[str, float | None]
    code_version: str
    created_at: AwareDatetime
    weights_file: str = WEIGHTS_FILE
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    torch_version: str

    @field_validator("weights_file")
    @classmethod
    def _is_file_name(cls, value: str) -> str:
        if _FILE_NAME.fullmatch(value) is None:
            raise ValueError(
                f"weights_file={value!r} is not a file name inside the artifact "
                f"directory; expected a plain name such as {WEIGHTS_FILE!r}, "
                "without a folder"
            )
        return value


class ModelAnnouncement(BaseModel):
    """The value announced on the ``models`` topic (key: model name)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: int = 1
    model_name: str
    model_version: str
    artifact_uri: str = Field(description="absolute path of the artifact directory")
    announced_at: AwareDatetime


@dataclass(frozen=True)
class LoadedArtifact:
    """A verified artifact: the rebuilt model, its spec and its metadata."""

    model: RankerModule
    spec: FeatureSpec
    metadata: ArtifactMetadata
    path: Path


@functools.cache
def code_version() -> str:
    """Return the short git commit of the running code, or ``nogit`` outside git."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short=7", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "nogit"
    sha = completed.stdout.strip()
    return sha if re.fullmatch(r"[0-9a-f]{7}", sha) else "nogit"


# LIMITATION(L-43): the registry is a local directory and an announcement
# carries a filesystem path, so every scorer must mount the same volume.
class ModelRegistry:
    """Save, find and promote artifacts under one root directory.

    Args:
        root: directory of the registry; created on the first save.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def save(
        self,
        model_name: str,
        model: RankerModule,
        spec: FeatureSpec,
        data_window: DataWindow,
        metrics: dict[str, float],
        *,
        now: datetime | None = None,
        code: str | None = None,
    ) -> ArtifactMetadata:
        """Write a new artifact and return its metadata.

        Args:
            model_name: lower-case name, e.g. ``ranker``.
            model: the trained model.
            spec: the feature spec it was trained with.
            data_window: the training data it saw.
            metrics: evaluation results; NaN values are stored as null.
            now: creation time (UTC); the wall clock when None.
            code: code version; ``code_version()`` when None.
        """
        if not _MODEL_NAME.match(model_name):
            raise ValueError(
                f"model_name={model_name!r}; expected lower-case letters, digits "
                "and '_', starting with a letter, at most 40 characters"
            )
        created_at = (now or datetime.now(UTC)).astimezone(UTC)
        code = code or code_version()
        weights = save_safetensors(model_tensors(model))
        model_dir = self.root / model_name
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = model_dir / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            (staging / WEIGHTS_FILE).write_bytes(weights)
            prefix = f"{model_name}-{created_at:%Y%m%d}-{code}-"
            for _ in range(_MAX_VERSION_ATTEMPTS):
                metadata = ArtifactMetadata(
                    format_version=ARTIFACT_FORMAT_VERSION,
                    model_name=model_name,
                    model_version=f"{prefix}{self._next_number(model_dir, prefix)}",
                    architecture=model.config.to_dict(),
                    feature_spec=spec.to_dict(),
                    data_window=data_window,
                    metrics={
                        name: _json_number(value) for name, value in metrics.items()
                    },
                    code_version=code,
                    created_at=created_at,
                    weights_sha256=hashlib.sha256(weights).hexdigest(),
                    torch_version=torch.__version__,
                )
                (staging / METADATA_FILE).write_text(
                    metadata.model_dump_json(indent=2) + "\n"
                )
                try:
                    # rename() refuses an existing non-empty target, so two
                    # writers racing for one number cannot overwrite each other.
                    staging.rename(model_dir / metadata.model_version)
                except OSError:
                    continue
                logger.info(
                    "artifact saved model_version=%s path=%s",
                    metadata.model_version,
                    model_dir / metadata.model_version,
                )
                return metadata
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        raise ArtifactCorruptError(
            f"no free version number under {model_dir} for prefix {prefix!r} after "
            f"{_MAX_VERSION_ATTEMPTS} attempts; check the directory's permissions"
        )

    def path_of(self, model_version: str) -> Path:
        """Return the directory of an artifact from its version."""
        model_name = model_version.rsplit("-", 3)[0]
        return self.root / model_name / model_version

    def load(self, model_version: str) -> LoadedArtifact:
        """Load and verify an artifact by version; see ``load_artifact``."""
        return load_artifact(self.path_of(model_version))

    def metadata(self, model_version: str) -> ArtifactMetadata:
        """Read an artifact's metadata without loading its weights.

        Raises:
            ArtifactError: the metadata is missing, unreadable or invalid.
        """
        return _read_metadata(self.path_of(model_version))

    def versions(self, model_name: str, *, exclude: Collection[str] = ()) -> list[str]:
        """Return the saved versions of a model, oldest first.

        The versions in ``exclude`` are left out by name, before any look at
        their directories, so a hung read in one of them does not block the listing.
        """
        model_dir = self.root / model_name
        if not model_dir.is_dir():
            return []
        found = [
            path.name
            for path in model_dir.iterdir()
            if path.name not in exclude
            and not path.name.startswith(".")
            and path.is_dir()
        ]
        return sorted(found, key=lambda name: (name.rsplit("-", 1)[0], _number(name)))

    def history(
        self, model_name: str, *, exclude: Collection[str] = ()
    ) -> list[ArtifactMetadata]:
        """Return the metadata of the saved versions, oldest first.

        Versions are ordered by their metadata's ``created_at``. A version whose
        metadata cannot be read, or names another version than its directory,
        is left out, and so is every version in ``exclude``, whose directory is
        never read.
        """
        found = []
        for version in self.versions(model_name, exclude=exclude):
            try:
                metadata = _read_metadata(self.path_of(version))
            except ArtifactError:
                continue
            if metadata.model_version == version:
                found.append(metadata)
        return sorted(found, key=lambda m: (m.created_at, _number(m.model_version)))

    def promote(self, metadata: ArtifactMetadata) -> None:
        """Make a saved artifact the champion of its model name."""
        target = self.root / metadata.model_name / CHAMPION_FILE
        staging = target.with_name(f".{CHAMPION_FILE}-{uuid.uuid4().hex}")
        staging.write_text(metadata.model_version + "\n")
        os.replace(staging, target)
        logger.info("artifact promoted model_version=%s", metadata.model_version)

    def champion_path(self, model_name: str) -> Path:
        """Return the path of the file that names the champion's version."""
        return self.root / model_name / CHAMPION_FILE

    def champion_version(self, model_name: str) -> str | None:
        """Return the champion's version, or None before the first promotion.

        An empty champion file counts as no promotion yet.

        Raises:
            ArtifactNotFoundError: the champion file cannot be read.
            ArtifactCorruptError: the champion file is not a regular file, is
                a symbolic link, is larger than 1 KiB or is not UTF-8 text, or
                it names no version of ``model_name`` inside the registry.
        """
        path = self.champion_path(model_name)
        repair = (
            "write the champion's version into it, or let the next promotion replace it"
        )
        try:
            content = _read_regular_file(
                path,
                _MAX_CHAMPION_BYTES,
                what="champion file",
                cap_reason="that a version needs",
                repair=repair,
            )
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ArtifactNotFoundError(
                f"champion file {path} cannot be read: {exc.strerror or exc}; "
                "check the file and its permissions"
            ) from exc
        try:
            text = content.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise ArtifactCorruptError(
                f"champion file {path} is not UTF-8 text: {exc}; {repair}"
            ) from exc
        if text and not _is_version_of(model_name, text):
            raise ArtifactCorruptError(
                f"champion file {path} contains {text[:80]!r}, expected a version "
                f"of {model_name!r} such as '{model_name}-20260101-abc1234-1'; "
                "write the champion's version into it, or let the next promotion "
                "replace it"
            )
        return text or None

    def load_champion(self, model_name: str) -> LoadedArtifact | None:
        """Load and verify the champion, or return None when there is none."""
        version = self.champion_version(model_name)
        return self.load(version) if version is not None else None

    def prune(self, model_name: str, keep: int) -> list[str]:
        """Delete all but the ``keep`` newest versions and the champion.

        Versions are ordered as in ``history``. A version left out of the
        history is left alone, as is the champion.

        Returns:
            The deleted versions, oldest first.
        """
        if keep < 1:
            raise ValueError(f"keep={keep}; expected at least 1")
        champion = self.champion_version(model_name)
        history = self.history(model_name)
        deleted = []
        for metadata in history[: max(len(history) - keep, 0)]:
            version = metadata.model_version
            if version == champion:
                continue
            shutil.rmtree(self.path_of(version))
            deleted.append(version)
        if deleted:
            logger.info(
                "old artifacts deleted model=%s count=%d oldest=%s",
                model_name,
                len(deleted),
                deleted[0],
            )
        return deleted

    @staticmethod
    def _next_number(model_dir: Path, prefix: str) -> int:
        numbers = [
            _number(path.name)
            for path in model_dir.iterdir()
            if path.name.startswith(prefix)
        ]
        return max(numbers, default=0) + 1


def load_artifact(path: Path) -> LoadedArtifact:
    """Read an artifact directory, verify it and rebuild its model.

    Raises:
        ArtifactNotFoundError: the directory, metadata or weights are missing.
        ArtifactCorruptError: the metadata is not valid JSON for this format,
            the metadata or the weights are not a regular file or are larger
            than their cap, or the weights do not match their SHA-256 or
            cannot be parsed.
        ArtifactIncompatibleError: another format version, or weights that do
            not fit the described model.
    """
    path = Path(path)
    metadata = _read_metadata(path)
    try:
        spec = FeatureSpec.from_dict(metadata.feature_spec)
        config = ModelConfig.from_dict(metadata.architecture)
        tensor_bytes = _tensor_bytes(spec, config)
    except (ValueError, TypeError) as exc:
        raise ArtifactCorruptError(
            f"artifact {metadata.model_version!r} at {path} cannot be parsed: {exc}"
        ) from exc
    weights = _read_weights(
        path / metadata.weights_file, metadata, config, tensor_bytes
    )
    try:
        tensors = load_safetensors(weights)
    except SafetensorError as exc:
        raise ArtifactCorruptError(
            f"artifact {metadata.model_version!r} at {path} cannot be parsed: {exc}"
        ) from exc
    model = model_from_tensors(spec, config, tensors)
    return LoadedArtifact(model=model, spec=spec, metadata=metadata, path=path)


def _tensor_bytes(spec: FeatureSpec, config: ModelConfig) -> int:
    """Return the size in bytes of the tensors that a model saves as weights.

    The size is computed from the spec and config alone, without building
    the model, so an absurd size allocates nothing.

    Raises:
        ValueError: the config names an unknown architecture.
    """
    return weight_count(spec, config) * _WEIGHT_BYTES


def _read_weights(
    weights_path: Path,
    metadata: ArtifactMetadata,
    config: ModelConfig,
    tensor_bytes: int,
) -> bytes:
    """Read an artifact's weights and check them against their SHA-256.

    Raises:
        ArtifactIncompatibleError: the file is smaller than the ``tensor_bytes``
            of the model that the metadata describes. This is checked before
            any byte is read, so the metadata cannot make the loader allocate
            more than the weights on disk.
    """
    version = metadata.model_version

    def check_size(size: int) -> None:
        if size < tensor_bytes:
            raise ArtifactIncompatibleError(
                f"artifact {version!r} weights at {weights_path} have {size} "
                f"bytes, fewer than the {tensor_bytes} bytes of tensors of the "
                f"{config.architecture} model that its metadata describes; the "
                "file is truncated or the metadata describes another model, "
                "restore the artifact or announce another version"
            )

    try:
        weights = _read_regular_file(
            weights_path,
            tensor_bytes + _WEIGHTS_HEADER_BYTES,
            what=f"artifact {version!r} weights",
            cap_reason="that the tensors of the model its metadata describes and "
            "their header take",
            repair="restore the artifact or announce another version",
            check_size=check_size,
        )
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ArtifactNotFoundError(
            f"artifact {version!r} has no weights at {weights_path}; "
            "the artifact is incomplete, announce another version"
        ) from exc
    except OSError as exc:
        raise ArtifactNotFoundError(
            f"artifact {version!r} weights at {weights_path} cannot "
            f"be read: {exc.strerror or exc}; check the file and its permissions"
        ) from exc
    digest = hashlib.sha256(weights).hexdigest()
    if digest != metadata.weights_sha256:
        raise ArtifactCorruptError(
            f"artifact {version!r} weights have SHA-256 {digest!r}, "
            f"expected {metadata.weights_sha256!r}; the file at {weights_path} is "
            "corrupt or was replaced, restore it or announce another version"
        )
    return weights


def _read_metadata(path: Path) -> ArtifactMetadata:
    metadata_path = path / METADATA_FILE
    try:
        content = _read_regular_file(
            metadata_path,
            _MAX_METADATA_BYTES,
            what="artifact metadata",
            cap_reason="that metadata needs",
            repair="restore the artifact or announce another version",
        )
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ArtifactNotFoundError(
            f"no artifact metadata at {metadata_path}; check the artifact path"
        ) from exc
    except OSError as exc:
        raise ArtifactNotFoundError(
            f"artifact metadata at {metadata_path} cannot be read: "
            f"{exc.strerror or exc}; check the path and its permissions"
        ) from exc
    try:
        document = json.loads(content.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ArtifactCorruptError(
            f"artifact metadata at {metadata_path} is not UTF-8 text: {exc}"
        ) from exc
    except json.JSONDecodeError as exc:
        raise ArtifactCorruptError(
            f"artifact metadata at {metadata_path} is not valid JSON: {exc}"
        ) from exc
    found_version = (
        document.get("format_version") if isinstance(document, dict) else None
    )
    if found_version != ARTIFACT_FORMAT_VERSION:
        raise ArtifactIncompatibleError(
            f"artifact at {path} has format_version={found_version!r}, expected "
            f"{ARTIFACT_FORMAT_VERSION}; load it with the code version that wrote it "
            "or retrain"
        )
    try:
        return ArtifactMetadata.model_validate(document)
    except ValidationError as exc:
        raise ArtifactCorruptError(
            f"artifact metadata at {metadata_path} is invalid: {exc}"
        ) from exc


def _read_regular_file(
    path: Path,
    limit: int,
    *,
    what: str,
    cap_reason: str,
    repair: str,
    check_size: Callable[[int], None] | None = None,
) -> bytes:
    """Read a regular file of at most ``limit`` bytes, rejecting a symbolic link.

    The file is opened without blocking, so a named pipe is rejected instead
    of waiting for a writer. Its size is checked before any byte is read, and
    the read requests that size, never ``limit``, so a large cap allocates no
    more than the file holds. ``what``, ``cap_reason`` and ``repair`` form
    the error messages, such as "<what> at <path> has N bytes, more than the
    <limit> bytes <cap_reason>; <repair>".

    Args:
        check_size: called with the file's size once it is within ``limit``
            and before any byte is read; it raises to reject the file.

    Raises:
        ArtifactCorruptError: the file is a symbolic link, not a regular file
            or directory, larger than ``limit``, or changed size while it was
            read.
        IsADirectoryError: the path is a directory.
        OSError: the file cannot be opened or read.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and path.is_symlink():
            raise ArtifactCorruptError(
                f"{what} at {path} is a symbolic link, expected a regular file; "
                f"{repair}"
            ) from exc
        raise
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(descriptor)
        if stat.S_ISDIR(status.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(status.st_mode):
            kind = _FILE_KINDS.get(stat.S_IFMT(status.st_mode), "not a regular file")
            raise ArtifactCorruptError(
                f"{what} at {path} is {kind}, expected a regular file; {repair}"
            )
        size = status.st_size
        if size > limit:
            raise ArtifactCorruptError(
                f"{what} at {path} has {size} bytes, more than the {limit} bytes "
                f"{cap_reason}; {repair}"
            )
        if check_size is not None:
            check_size(size)
        content = handle.read(size)
        # One more byte shows whether the file grew since fstat.
        if len(content) != size or handle.read(1):
            raise ArtifactCorruptError(
                f"{what} at {path} changed size while it was read, from {size} "
                f"bytes; something is writing it in place, {repair}"
            )
    return content


def _is_version_of(model_name: str, text: str) -> bool:
    """Return whether ``text`` is a version of ``model_name``, with no path in it."""
    pattern = rf"{re.escape(model_name)}-[0-9]{{8}}-[0-9A-Za-z_]+-[0-9]+"
    return re.fullmatch(pattern, text) is not None


def _number(version: str) -> int:
    tail = version.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _json_number(value: float) -> float | None:
    return None if value != value or value in (float("inf"), float("-inf")) else value
