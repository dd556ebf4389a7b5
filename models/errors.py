"""Errors raised by the models package.

```
CartwheelError (schemas.errors)
└── ModelError
    ├── CheckpointError
    │   ├── CheckpointIntegrityError   digest or signature mismatch, truncated file
    │   ├── CheckpointFormatError      unknown header or format version
    │   └── ModelStateError            a checkpoint holds another model's state
```
"""

from __future__ import annotations

from schemas.errors import CartwheelError

__all__ = [
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
    """Raised when an artifact's weights do not match the SHA-256 in its metadata,
    or its metadata or weights cannot be parsed."""


class ArtifactIncompatibleError(ArtifactError):
    """Raised when an artifact was written in another format version or its
    weights do not fit the model that its metadata describes."""
