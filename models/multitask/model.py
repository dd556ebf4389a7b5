"""The multi-task ranker (MMoE with an ESMM chain) and its single-task baseline.

Both models take the same inputs, hashed sparse ids and raw numeric features,
and return log-probabilities over the entire space of proposed items. Shape
letters (B, S, F, T, D) are defined in ``models.multitask.features``; in
addition E is the number of experts and H the expert width.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional

from models.multitask.features import SPARSE_FIELDS, TASKS, Z_LIMIT, FeatureSpec
from models.multitask.heads import Tower, esmm_log_probs
from schemas.events import EventType

__all__ = [
    "ModelConfig",
    "MultiTaskRanker",
    "RankerModule",
    "SharedInputs",
    "SingleTaskRanker",
    "build_model",
    "weight_count",
]

Architecture = Literal["mmoe", "single_task"]
ChainGradient = Literal["full", "own_tower"]


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the network; stored in the artifact's metadata.

    Attributes:
        architecture: ``mmoe`` for the multi-task ranker, ``single_task`` for
            one tower predicting ``task`` alone.
        task: the task of a single-task model; ignored by ``mmoe``.
        embedding_dim: D, width of every id embedding.
        expert_count: E, experts shared by the tasks.
        expert_width: H, output width of each expert.
        tower_width: hidden width of each task tower.
        input_dropout: share of the shared input vector (embeddings and
            numeric features) zeroed at random while training; no effect when
            scoring. It keeps the id embeddings of rare users and items from
            memorising the few purchases they were in.
        chain_gradient: which towers each task's loss trains. With ``full``
            it trains every tower upstream in the ESMM chain. With
            ``own_tower`` it trains only the task's own conditional tower, so
            the rare cart_add and purchase labels cannot pull the click tower
            away from the click labels. Either way the shared embeddings and
            experts learn from every task, and the outputs are the same.
    """

    architecture: Architecture = "mmoe"
    task: EventType = EventType.CLICK
    embedding_dim: int = 16
    expert_count: int = 4
    expert_width: int = 64
    tower_width: int = 32
    input_dropout: float = 0.2
    chain_gradient: ChainGradient = "own_tower"

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "expert_count", "expert_width", "tower_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}; expected an integer >= 1")
        if not 0.0 <= self.input_dropout < 1.0:
            raise ValueError(
                f"input_dropout={self.input_dropout}; expected >= 0 and < 1"
            )
        if self.chain_gradient not in ("full", "own_tower"):
            raise ValueError(
                f"chain_gradient={self.chain_gradient!r}; expected 'full' or "
                "'own_tower'"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the config as JSON-ready data."""
        data = asdict(self)
        data["task"] = str(self.task)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Rebuild a config from ``to_dict`` output."""
        values = dict(data)
        values["task"] = EventType(values.get("task", EventType.CLICK))
        return cls(**values)


class SharedInputs(nn.Module):
    """Hashed embeddings plus normalised numeric features, concatenated.

    Buckets per field come from the spec; bucket 0 of each table is the
    missing id. The normalisation statistics are buffers built from the spec
    and not saved with the weights: the spec in the metadata is their source.
    """

    buckets: torch.Tensor
    means: torch.Tensor
    stds: torch.Tensor

    def __init__(
        self, spec: FeatureSpec, embedding_dim: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.tables = nn.ModuleList(
            # Sparse gradients: an optimiser step touches only the rows a batch
            # used, instead of all 2 x 131072 x D rows of the id tables.
            nn.Embedding(spec.hash_buckets[name], embedding_dim, sparse=True)
            for name in SPARSE_FIELDS
        )
        buckets = [spec.hash_buckets[name] - 1 for name in SPARSE_FIELDS]
        self.register_buffer(
            "buckets", torch.tensor(buckets, dtype=torch.int64), persistent=False
        )
        self.register_buffer(
            "means", torch.tensor(spec.means, dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "stds", torch.tensor(spec.stds, dtype=torch.float32), persistent=False
        )
        self.output_width = len(SPARSE_FIELDS) * embedding_dim + len(spec.means)

    def forward(self, ids: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """Embed and normalise one batch.

        Args:
            ids: 63-bit id hashes, shape (B, S) int64, -1 for a missing id.
            numeric: raw numeric features, shape (B, F).

        Returns:
            Shape (B, S * D + F).
        """
        rows = torch.where(
            ids < 0, torch.zeros_like(ids), torch.remainder(ids, self.buckets) + 1
        )
        embedded = [table(rows[:, index]) for index, table in enumerate(self.tables)]
        transformed = torch.sign(numeric) * torch.log1p(torch.abs(numeric))
        z = ((transformed - self.means) / self.stds).clamp(-Z_LIMIT, Z_LIMIT)
        return self.dropout(torch.cat([*embedded, z], dim=-1))  # type: ignore[no-any-return]


class RankerModule(nn.Module):
    """Common interface: ``forward(ids, numeric)`` returns (B, len(tasks)) log-probs."""

    tasks: tuple[EventType, ...]
    config: ModelConfig


class MultiTaskRanker(RankerModule):
    """Multi-gate mixture of experts with click, cart_add and purchase towers.

    The experts and embeddings are shared; each task has a softmax gate over
    the experts and its own tower. Tower outputs are conditional logits that
    ``esmm_log_probs`` chains into p(click), p(cart_add) and p(purchase).
    """

    def __init__(self, spec: FeatureSpec, config: ModelConfig) -> None:
        super().__init__()
        self.tasks = TASKS
        self.config = config
        self.inputs = SharedInputs(spec, config.embedding_dim, config.input_dropout)
        width = self.inputs.output_width
        # All experts in one matrix multiply: (B, in) -> (B, E * H).
        self.experts = nn.Linear(width, config.expert_count * config.expert_width)
        self.gates = nn.Linear(width, len(TASKS) * config.expert_count)
        self.towers = nn.ModuleList(
            Tower(config.expert_width, config.tower_width) for _ in TASKS
        )

    def forward(self, ids: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """Score a batch.

        Args:
            ids: shape (B, S) int64 id hashes.
            numeric: shape (B, F) raw numeric features.

        Returns:
            Log-probabilities of click, cart_add and purchase, shape (B, T).
        """
        shared = self.inputs(ids, numeric)
        batch = shared.shape[0]
        experts = functional.relu(self.experts(shared)).view(
            batch, self.config.expert_count, self.config.expert_width
        )
        gates = torch.softmax(
            self.gates(shared).view(batch, len(TASKS), self.config.expert_count),
            dim=-1,
        )
        mixed = torch.einsum("bte,beh->bth", gates, experts)
        logits = torch.stack(
            [tower(mixed[:, index]) for index, tower in enumerate(self.towers)],
            dim=-1,
        )
        return esmm_log_probs(
            logits, detach_upstream=self.config.chain_gradient == "own_tower"
        )


class SingleTaskRanker(RankerModule):
    """Baseline: the same inputs, one MLP and one tower for one task.

    Its hidden layer matches the width of one expert, so the comparison with
    the multi-task model isolates sharing rather than capacity per task.
    """

    def __init__(self, spec: FeatureSpec, config: ModelConfig) -> None:
        super().__init__()
        self.tasks = (config.task,)
        self.config = config
        self.inputs = SharedInputs(spec, config.embedding_dim, config.input_dropout)
        self.hidden = nn.Linear(self.inputs.output_width, config.expert_width)
        self.tower = Tower(config.expert_width, config.tower_width)

    def forward(self, ids: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """Return log p(task), shape (B, 1), from (B, S) ids and (B, F) numerics."""
        hidden = functional.relu(self.hidden(self.inputs(ids, numeric)))
        return functional.logsigmoid(self.tower(hidden)).unsqueeze(-1)


def build_model(spec: FeatureSpec, config: ModelConfig) -> RankerModule:
    """Create an untrained model of the configured architecture."""
    if config.architecture == "mmoe":
        return MultiTaskRanker(spec, config)
    if config.architecture == "single_task":
        return SingleTaskRanker(spec, config)
    raise _unknown_architecture(config)


def weight_count(spec: FeatureSpec, config: ModelConfig) -> int:
    """Return how many weights ``build_model`` would create, without building it.

    The count is exact integer arithmetic, so an absurd size in a stored config
    neither allocates memory nor overflows.

    Raises:
        ValueError: the config names an unknown architecture.
    """
    dim = config.embedding_dim
    embeddings = sum(spec.hash_buckets[name] for name in SPARSE_FIELDS) * dim
    width = len(SPARSE_FIELDS) * dim + len(spec.means)
    tower = _linear_count(config.expert_width, config.tower_width) + _linear_count(
        config.tower_width, 1
    )
    if config.architecture == "mmoe":
        experts = _linear_count(width, config.expert_count * config.expert_width)
        gates = _linear_count(width, len(TASKS) * config.expert_count)
        return embeddings + experts + gates + len(TASKS) * tower
    if config.architecture == "single_task":
        return embeddings + _linear_count(width, config.expert_width) + tower
    raise _unknown_architecture(config)


def _linear_count(input_width: int, output_width: int) -> int:
    """Return the weights and biases of an ``nn.Linear``."""
    return (input_width + 1) * output_width


def _unknown_architecture(config: ModelConfig) -> ValueError:
    return ValueError(
        f"architecture={config.architecture!r}; expected 'mmoe' or 'single_task'"
    )
