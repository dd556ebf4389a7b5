"""Online (River) models that learn per event in the hot path."""

from __future__ import annotations

from models.online.affinity import AffinityModel
from models.online.base import OnlineExample, OnlineModel
from models.online.checkpoint import (
    dump_checkpoint,
    load_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from models.online.conversion import ConversionModel
from models.online.drift import DriftMonitor
from models.online.prequential import PrequentialEvaluator, PrequentialResult

__all__ = [
    "AffinityModel",
    "ConversionModel",
    "DriftMonitor",
    "OnlineExample",
    "OnlineModel",
    "PrequentialEvaluator",
    "PrequentialResult",
    "dump_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "write_checkpoint",
]
