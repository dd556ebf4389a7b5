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

__all__ = [
    "CandidateColumns",
    "CandidateInput",
    "CandidateLike",
    "RankRequest",
    "Ranker",
]

# Catalog price inside item features, read when a candidate comes without one.
_ITEM_PRICE_FEATURE = "item_price"

# Ids of one field whose hashes are remembered before the memo starts over.
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
class CandidateColumns:
    """The candidates of one event as columns, read without a loop per feature.

    Attributes:
        item_ids: the candidates.
        category_ids: each candidate's category, None when unknown.
        brands: each candidate's brand, None when unknown.
        prices: (C,) prices; NaN where unknown, read as 0.
        features: (C, len(feature_names)) numeric features; names the model
            was not trained on are ignored, and NaN or absent names read 0.
        feature_names: the column names of ``features``.
    """

    item_ids: Sequence[str]
    category_ids: Sequence[str | None]
    brands: Sequence[str | None]
    prices: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.item_ids)


@dataclass(frozen=True)
class RankRequest:
    """The candidates of one event, for ``Ranker.predict_many``."""

    user_id: str
    user_features: Mapping[str, float]
    candidates: Sequence[CandidateLike] | CandidateColumns


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
        self._hash_memos: dict[str, dict[str | None, int]] = {
            field: {} for field in SPARSE_FIELDS[1:]
        }
        self._get_item_values = operator.itemgetter(*spec.item_feature_names or ("",))
        self._column_maps: dict[tuple[str, ...], tuple[list[int], list[int]]] = {}
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
        Each group of columns is filled for the whole batch in one step.
        """
        spec = self._spec
        user_width = len(spec.user_feature_names)
        counts = [len(request.candidates) for request in requests]
        candidate_sets = [
            _as_columns_or_inputs(request.candidates) for request in requests
        ]
        ids = np.empty((total, len(SPARSE_FIELDS)), dtype=np.int64)
        numeric = np.empty((total, len(spec.numeric_names)), dtype=np.float32)

        # User columns: one row per request, repeated for each of its candidates.
        user_hashes = [
            self._hasher.hash("user_id", request.user_id) for request in requests
        ]
        ids[:, 0] = np.repeat(np.array(user_hashes, dtype=np.int64), counts)
        user_values = [
            [request.user_features.get(name, 0.0) for name in spec.user_feature_names]
            for request in requests
        ]
        numeric[:, :user_width] = np.repeat(
            np.array(user_values, dtype=np.float64).reshape(len(requests), user_width),
            counts,
            axis=0,
        )

        # Item columns: the item, category and brand ids of all candidates.
        for column, values in enumerate(_id_columns(candidate_sets), start=1):
            ids[:, column] = self._hash_column(SPARSE_FIELDS[column], values)
        numeric[:, user_width:] = self._item_numerics(candidate_sets)
        return ids, numeric

    def _item_numerics(
        self, candidate_sets: Sequence[CandidateColumns | list[CandidateInput]]
    ) -> np.ndarray:
        """Return the item numerics of all candidates, one row each, price last."""
        columns = [
            candidates
            for candidates in candidate_sets
            if isinstance(candidates, CandidateColumns)
        ]
        names = {candidates.feature_names for candidates in columns}
        if len(columns) == len(candidate_sets) and len(names) == 1:
            # The scorer gives every event the same feature names, so the
            # features of all events are gathered in one step.
            return self._column_values(
                names.pop(),
                np.concatenate([candidates.features for candidates in columns]),
                np.concatenate([candidates.prices for candidates in columns]),
            )
        return np.concatenate(
            [
                self._column_values(
                    candidates.feature_names, candidates.features, candidates.prices
                )
                if isinstance(candidates, CandidateColumns)
                else self._input_values(candidates)
                for candidates in candidate_sets
            ]
        )

    def _input_values(self, candidates: Sequence[CandidateInput]) -> np.ndarray:
        """Return the item numerics of candidates given one by one."""
        rows = [
            (
                *self._item_values(candidate.item_features),
                candidate.price if candidate.price is not None else 0.0,
            )
            for candidate in candidates
        ]
        width = len(self._spec.item_feature_names) + 1
        return np.array(rows, dtype=np.float32).reshape(len(rows), width)

    def _column_values(
        self, names: tuple[str, ...], features: np.ndarray, prices: np.ndarray
    ) -> np.ndarray:
        """Return the item numerics of candidates given as columns."""
        spec_columns, given_columns = self._column_map(names)
        items = np.zeros((len(features), len(self._spec.item_feature_names) + 1))
        items[:, spec_columns] = features[:, given_columns]
        items[:, -1] = prices
        items[np.isnan(items)] = 0.0
        return items

    def _column_map(self, names: tuple[str, ...]) -> tuple[list[int], list[int]]:
        """Return which spec item columns are given, and where they are in ``names``."""
        found = self._column_maps.get(names)
        if found is None:
            position = {name: column for column, name in enumerate(names)}
            pairs = [
                (spec_column, position[name])
                for spec_column, name in enumerate(self._spec.item_feature_names)
                if name in position
            ]
            found = ([pair[0] for pair in pairs], [pair[1] for pair in pairs])
            self._column_maps[names] = found
        return found

    def _hash_column(self, field: str, values: Sequence[str | None]) -> np.ndarray:
        """Return the hash of each value of one id field, from a per-field memo.

        The events of a batch share most candidates, so few values are new.
        """
        memo = self._hash_memos[field]
        missing = set(values).difference(memo)
        if len(memo) + len(missing) > _MAX_MEMO_ITEMS:
            memo.clear()
            missing = set(values)
        for value in missing:
            memo[value] = self._hasher.hash(field, value)
        return np.fromiter(
            map(memo.__getitem__, values), dtype=np.int64, count=len(values)
        )

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


def _as_columns_or_inputs(
    candidates: Sequence[CandidateLike] | CandidateColumns,
) -> CandidateColumns | list[CandidateInput]:
    if isinstance(candidates, CandidateColumns):
        return candidates
    return [_as_input(candidate) for candidate in candidates]


def _id_columns(
    candidate_sets: Sequence[CandidateColumns | list[CandidateInput]],
) -> tuple[list[str | None], list[str | None], list[str | None]]:
    """Return the item ids, category ids and brands of all candidates.

    The three follow ``SPARSE_FIELDS`` after the user id.
    """
    item_ids: list[str | None] = []
    category_ids: list[str | None] = []
    brands: list[str | None] = []
    for candidates in candidate_sets:
        if isinstance(candidates, CandidateColumns):
            item_ids += candidates.item_ids
            category_ids += candidates.category_ids
            brands += candidates.brands
        else:
            item_ids += [candidate.item_id for candidate in candidates]
            category_ids += [candidate.category_id for candidate in candidates]
            brands += [candidate.brand for candidate in candidates]
    return item_ids, category_ids, brands


# LIMITATION(L-42): a bare (item_id, features) pair has no category or brand,
# so those two embeddings read the missing-id row that training rarely saw.
def _as_input(candidate: CandidateLike) -> CandidateInput:
    if isinstance(candidate, CandidateInput):
        return candidate
    item_id, features = candidate
    return CandidateInput(item_id, features, price=features.get(_ITEM_PRICE_FEATURE))
