"""Errors raised by the models package.

```
CartwheelError (schemas.errors)
└── ModelError
    ├── CheckpointError
    │   ├── CheckpointIntegrityError   digest or signature mismatch, truncated file
    │   ├── CheckpointFormatError      unknown header or format version
    │   └── ModelStateError            a checkpoint holds another model's state
    └── ArtifactError
        ├── ArtifactNotFoundError      ranker artifact directory or file missing
        ├── ArtifactCorruptError       weights hash mismatch, unparsable metadata
        └── ArtifactIncompatibleError  other format version, weights do not fit
```
"""

from __future__ import annotations

from schemas.errors import CartwheelError

__all__ = [
    "ArtifactCorruptError",
    "ArtifactError",
    "ArtifactIncompatibleError",
    "ArtifactNotFoundError",
    "CheckpointError",
    "CheckpointFormatError",
    "CheckpointIntegrityError",
    "ModelError",
    "ModelStateError",
]


class ModelError(CartwheelError):
    """Base class of the errors raised by model code."""


class CheckpointError(ModelError):
    """Raised when a model checkpoint cannot be written or read back."""


class CheckpointIntegrityError(CheckpointError):
    """Raised when a checkpoint's signature or digest does not match its payload."""


class CheckpointFormatError(CheckpointError):
    """Raised when a checkpoint file does not start with a known header."""


class ModelStateError(CheckpointError):
    """Raised when a verified checkpoint does not hold the expected model state."""


class ArtifactError(ModelError):
    """Base class of the errors raised while saving or loading a ranker artifact."""


class ArtifactNotFoundError(ArtifactError):
    """Raised when an artifact directory, its metadata or its weights do not exist."""


class ArtifactCorruptError(ArtifactError):
    """Raised when artifact weights fail their SHA-256 check or cannot be parsed,
    or when an artifact file is not a regular file or is larger than its cap."""


class ArtifactIncompatibleError(ArtifactError):
    """Raised when an artifact has another format version or weights that do not fit."""
