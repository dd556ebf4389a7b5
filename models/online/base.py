"""The interface shared by every online (River) model of the hot path.

An online model scores and learns one labelled example at a time. An example is
a (user, item) pair with a flat ``dict[str, float]`` of features, River's native
input. Each model carries a ``model_version`` that survives checkpoints, so a
score can always be traced to the model that produced it.
"""

from __future__ import annotations

import hashlib
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = ["OnlineExample", "OnlineModel", "make_model_version", "squash_features"]


@dataclass(frozen=True)
class OnlineExample:
    """One (user, item) pair to score or learn from.

    Attributes:
        user_id: who acted.
        item_id: on which item.
        features: point-in-time features of the pair, by name.
        event_id: the event the example was made from, when there is one.
    """

    user_id: str
    item_id: str
    features: Mapping[str, float] = field(default_factory=dict)
    event_id: str | None = None


def make_model_version(model_name: str, seed: int, created_at: datetime) -> str:
    """Return ``<model>-<YYYYMMDD>-<7 hex digits>`` for a freshly created model.

    The hex part is drawn from ``seed`` and the creation time, so two models
    created with the same seed at the same time share a version, and a
    restarted process that starts fresh gets a new one.
    """
    digest = hashlib.sha256(f"{seed}:{created_at.isoformat()}".encode()).hexdigest()
    return f"{model_name}-{created_at.astimezone(UTC):%Y%m%d}-{digest[:7]}"


def squash_features(features: Mapping[str, float]) -> dict[str, float]:
    """Map every value through sign(x) * log1p(|x|) and drop non-finite values.

    Counts and prices in the feature store are heavy-tailed; squashing them
    keeps one outlier from dominating a running mean and variance.
    """
    squashed = {}
    for name, value in features.items():
        number = float(value)
        if math.isfinite(number):
            squashed[name] = math.copysign(math.log1p(abs(number)), number)
    return squashed


class OnlineModel(ABC):
    """A binary classifier that learns one example at a time.

    Subclasses set ``model_name`` and implement :meth:`predict_proba` and
    :meth:`learn_one`. Instances must be picklable: checkpoints pickle them
    behind a signature check (see :mod:`models.online.checkpoint`).

    Attributes:
        model_version: identity of this model, kept across checkpoints.
        n_updates: examples learned since the model was created.
    """

    model_name: str = "online"

    def __init__(self, seed: int = 0, created_at: datetime | None = None) -> None:
        self.seed = seed
        self.model_version = make_model_version(
            self.model_name, seed, created_at or datetime.now(UTC)
        )
        self.n_updates = 0
        self._rng = random.Random(seed)

    @abstractmethod
    def predict_proba(self, example: OnlineExample) -> float:
        """Return the probability that the example is positive, without learning."""

    @abstractmethod
    def learn_one(self, example: OnlineExample, label: bool) -> None:
        """Update the model with one labelled example."""

    def predict_proba_many(self, examples: Sequence[OnlineExample]) -> list[float]:
        """Return :meth:`predict_proba` for each example, in order."""
        return [self.predict_proba(example) for example in examples]

    def learn_many(
        self, examples: Sequence[OnlineExample], labels: Sequence[bool]
    ) -> None:
        """Learn labelled examples; by default one at a time, in order."""
        if len(examples) != len(labels):
            raise ValueError(
                f"got {len(labels)} labels for {len(examples)} examples; "
                "expected one label per example"
            )
        for example, label in zip(examples, labels, strict=True):
            self.learn_one(example, label)
