"""Batched inference with a loaded ranker artifact, for the scorer.

Shape letters (B, C, S, F, T) are defined in ``models.multitask.features``.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from models.multitask.features import SPARSE_FIELDS, TASKS, FeatureSpec, IdHasher
from models.multitask.model import RankerModule
from models.registry import LoadedArtifact
from schemas.events import EventType

__all__ = ["CandidateInput", "CandidateLike", "RankRequest", "Ranker"]

# Catalog price inside item features, read when a candidate comes without one.
_ITEM_PRICE_FEATURE = "item_price"

# Items whose id hashes are remembered before the memo starts over.
_MAX_MEMO_ITEMS = 500_000


@dataclass(frozen=True)
class CandidateInput:
    """One candidate item with its features at scoring time.

    Attributes:
        item_id: the candidate.
        item_features: the item's numeric features; names the model was not
            trained on are ignored, and names it expects but are absent read 0.
        category_id: the item's category, None when unknown.
        brand: the item's brand, None when unknown.
        price: the item's price, None when unknown (read as 0).
    """

    item_id: str
    item_features: Mapping[str, float] = field(default_factory=dict)
    category_id: str | None = None
    brand: str | None = None
    price: float | None = None


CandidateLike = CandidateInput | tuple[str, Mapping[str, float]]
"""A candidate, or an ``(item_id, item_features)`` pair.

A pair has no category or brand, so those embeddings read the missing-id row.
Pass a CandidateInput when they are known, because training saw them.
"""


@dataclass(frozen=True)
class RankRequest:
    """The candidates of one event, for ``Ranker.predict_many``."""

    user_id: str
    user_features: Mapping[str, float]
    candidates: Sequence[CandidateLike]


class Ranker:
    """A trained model ready to score candidates; immutable once built.

    Args:
        model: a multi-task model (tasks click, cart_add, purchase).
        spec: the feature spec it was trained with.
        model_version: the artifact's version, attached to every output.
    """

    def __init__(
        self, model: RankerModule, spec: FeatureSpec, model_version: str
    ) -> None:
        if tuple(model.tasks) != TASKS:
            raise ValueError(
                f"model predicts tasks {[str(task) for task in model.tasks]}; "
                f"expected {[str(task) for task in TASKS]}"
            )
        self._model = model.eval()
        self._spec = spec
        self._hasher = IdHasher()
        self._item_hash_memo: dict[
            tuple[str, str | None, str | None], tuple[int, int, int]
        ] = {}
        self._get_item_values = operator.itemgetter(*spec.item_feature_names or ("",))
        self.model_version = model_version
        self.tasks: tuple[EventType, ...] = TASKS

    @classmethod
    def from_artifact(cls, artifact: LoadedArtifact) -> Ranker:
        """Build a ranker from a verified artifact."""
        return cls(artifact.model, artifact.spec, artifact.metadata.model_version)

    def predict(
        self,
        user_id: str,
        user_features: Mapping[str, float],
        candidates: Sequence[CandidateLike],
    ) -> np.ndarray:
        """Return the task probabilities of each candidate for one user.

        Returns:
            Shape (C, T) float32, columns click, cart_add, purchase; each row
            is non-increasing because of the ESMM chain.
        """
        return self.predict_many([RankRequest(user_id, user_features, candidates)])[0]

    def predict_many(self, requests: Sequence[RankRequest]) -> list[np.ndarray]:
        """Score the candidates of several events in one forward pass.

        Returns:
            One (C_i, T) array per request, in request order.
        """
        sizes = [len(request.candidates) for request in requests]
        total = sum(sizes)
        if total == 0:
            return [np.zeros((0, len(TASKS)), dtype=np.float32) for _ in requests]
        ids, numeric = self._encode(requests, total)
        with torch.inference_mode():
            probs = torch.exp(
                self._model(torch.from_numpy(ids), torch.from_numpy(numeric))
            )
        flat = probs.numpy()
        results = []
        start = 0
        for size in sizes:
            results.append(flat[start : start + size])
            start += size
        return results

    def _encode(
        self, requests: Sequence[RankRequest], total: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Build (B, S) id hashes and (B, F) raw numerics for all candidates.

        Columns follow the spec: user features, item features, then price.
        Rows are gathered as tuples and copied into the arrays once per batch.
        """
        spec = self._spec
        hash_id = self._hasher.hash
        item_hashes = self._item_hashes
        item_values = self._item_values
        user_width = len(spec.user_feature_names)
        id_rows: list[tuple[int, int, int, int]] = []
        item_rows: list[tuple[float, ...]] = []
        user_rows: list[list[float]] = []
        counts: list[int] = []
        for request in requests:
            count = len(request.candidates)
            if count == 0:
                continue
            user_rows.append(
                [
                    request.user_features.get(name, 0.0)
                    for name in spec.user_feature_names
                ]
            )
            counts.append(count)
            user_hash = hash_id("user_id", request.user_id)
            for given in request.candidates:
                candidate = _as_input(given)
                id_rows.append(
                    (
                        user_hash,
                        *item_hashes(
                            candidate.item_id, candidate.category_id, candidate.brand
                        ),
                    )
                )
                item_rows.append(
                    (
                        *item_values(candidate.item_features),
                        candidate.price if candidate.price is not None else 0.0,
                    )
                )
        ids = np.array(id_rows, dtype=np.int64).reshape(total, len(SPARSE_FIELDS))
        numeric = np.empty((total, len(spec.numeric_names)), dtype=np.float32)
        numeric[:, :user_width] = np.repeat(
            np.array(user_rows, dtype=np.float32).reshape(len(counts), user_width),
            counts,
            axis=0,
        )
        numeric[:, user_width:] = np.array(item_rows, dtype=np.float32).reshape(
            total, len(spec.numeric_names) - user_width
        )
        return ids, numeric

    def _item_hashes(
        self, item_id: str, category_id: str | None, brand: str | None
    ) -> tuple[int, int, int]:
        """Return the item, category and brand hashes, from a per-item memo."""
        key = (item_id, category_id, brand)
        found = self._item_hash_memo.get(key)
        if found is None:
            hash_id = self._hasher.hash
            found = (
                hash_id("item_id", item_id),
                hash_id("category_id", category_id),
                hash_id("brand", brand),
            )
            if len(self._item_hash_memo) >= _MAX_MEMO_ITEMS:
                self._item_hash_memo.clear()
            self._item_hash_memo[key] = found
        return found

    def _item_values(self, features: Mapping[str, float]) -> tuple[float, ...]:
        """Return the spec's item features in order; absent names read 0."""
        names = self._spec.item_feature_names
        if not names:
            return ()
        try:
            values = self._get_item_values(features)
        except KeyError:
            return tuple(features.get(name, 0.0) for name in names)
        return values if len(names) > 1 else (values,)


# LIMITATION(L-42): a bare (item_id, features) pair has no category or brand,
# so those two embeddings read the missing-id row that training rarely saw.
def _as_input(candidate: CandidateLike) -> CandidateInput:
    if isinstance(candidate, CandidateInput):
        return candidate
    item_id, features = candidate
    return CandidateInput(item_id, features, price=features.get(_ITEM_PRICE_FEATURE))
