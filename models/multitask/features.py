"""Feature specification of the multi-task ranker: which inputs it reads and how.

A row is one (user, candidate item) pair. The ranker reads four sparse id fields
and a vector of numeric features. The specification fixes their order, the
hash bucket counts and the normalisation statistics. It travels in the
artifact's metadata, so a model always reads the features it was trained on.

Shape letters used across ``models.multitask``:

    B  rows in a batch (one row = one user and one candidate item)
    C  candidates scored for one user
    S  sparse id fields per row (user, item, category, brand), S = 4
    F  numeric features per row
    T  tasks, in the order click, cart_add, purchase
    D  embedding width
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas.events import EventType

__all__ = [
    "MISSING_ID_HASH",
    "PAIR_FEATURE_PREFIX",
    "PRICE_FEATURE",
    "SPARSE_FIELDS",
    "TASKS",
    "Z_LIMIT",
    "FeatureSpec",
    "IdHasher",
    "signed_log1p",
]

TASKS: tuple[EventType, ...] = (
    EventType.CLICK,
    EventType.CART_ADD,
    EventType.PURCHASE,
)
SPARSE_FIELDS: tuple[str, ...] = ("user_id", "item_id", "category_id", "brand")
PRICE_FEATURE = "price"
# LIMITATION(L-46): user-item pair features (``pair_*``, carried in the item
# vector) describe the event's own user. A sampled negative only has another
# user's pair values, so the ranker leaves all pair features out rather than
# train on values that scoring would never show it.
PAIR_FEATURE_PREFIX = "pair_"
# Stands for an absent id; the model maps it to the reserved bucket 0.
MISSING_ID_HASH = -1

_DEFAULT_BUCKETS = {
    "user_id": 1 << 17,
    "item_id": 1 << 17,
    "category_id": 1 << 12,
    "brand": 1 << 12,
}
# z-scores beyond this are clipped, so one absurd counter cannot saturate a unit.
Z_LIMIT = 8.0


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """Compress heavy-tailed counts and prices: sign(x) * log(1 + |x|)."""
    return np.asarray(np.sign(values) * np.log1p(np.abs(values)))


class IdHasher:
    """Stable 63-bit hashes of id strings, the same in every process and run.

    Python's ``hash`` is salted per process, so it cannot be used for an
    embedding table that must read the same bucket at training and serving
    time. BLAKE2b keyed by the field name keeps ``item_id="5"`` and
    ``brand="5"`` apart. Results are memoised because ids repeat a lot.
    """

    def __init__(self, max_cache_size: int = 1_000_000) -> None:
        self._cache: dict[tuple[str, str], int] = {}
        self._max_cache_size = max_cache_size

    def hash(self, field_name: str, value: str | None) -> int:
        """Return the hash of one id, or MISSING_ID_HASH when it is None or empty."""
        if not value:
            return MISSING_ID_HASH
        key = (field_name, value)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        digest = hashlib.blake2b(
            value.encode(), digest_size=8, key=field_name.encode()
        ).digest()
        result = int.from_bytes(digest, "little") >> 1
        if len(self._cache) >= self._max_cache_size:
            self._cache.clear()
        self._cache[key] = result
        return result


@dataclass(frozen=True)
class FeatureSpec:
    """The inputs a trained model reads, in order, with their normalisation.

    Numeric columns are the user features, then the item features, then the
    candidate's price. Each column is transformed by ``signed_log1p`` and then
    standardised with ``means`` and ``stds``; a feature absent at serving time
    reads 0 before that transform.

    Attributes:
        user_feature_names: names looked up in the user's feature dict.
        item_feature_names: names looked up in the item's feature dict.
        means: mean of each transformed numeric column, length F.
        stds: standard deviation of each transformed column, length F.
        hash_buckets: embedding rows per sparse field, bucket 0 reserved for
            a missing id.
    """

    user_feature_names: tuple[str, ...]
    item_feature_names: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    hash_buckets: Mapping[str, int] = field(
        default_factory=lambda: dict(_DEFAULT_BUCKETS)
    )

    def __post_init__(self) -> None:
        width = len(self.numeric_names)
        if len(self.means) != width or len(self.stds) != width:
            raise ValueError(
                f"feature spec has {width} numeric columns but {len(self.means)} "
                f"means and {len(self.stds)} stds; expected one of each per column"
            )
        if set(self.hash_buckets) != set(SPARSE_FIELDS):
            raise ValueError(
                f"hash_buckets has fields {sorted(self.hash_buckets)}; "
                f"expected exactly {list(SPARSE_FIELDS)}"
            )
        if any(
            not isinstance(count, int) or count < 2
            for count in self.hash_buckets.values()
        ):
            raise ValueError(
                f"hash_buckets={dict(self.hash_buckets)!r}; expected an integer of "
                "at least 2 buckets per field (bucket 0 is reserved for a missing id)"
            )

    @property
    def numeric_names(self) -> tuple[str, ...]:
        """Names of the F numeric columns, in model input order."""
        return (*self.user_feature_names, *self.item_feature_names, PRICE_FEATURE)

    @classmethod
    def fit(
        cls,
        user_feature_names: Sequence[str],
        item_feature_names: Sequence[str],
        numeric: np.ndarray,
        numeric_names: Sequence[str],
        hash_buckets: Mapping[str, int] | None = None,
    ) -> FeatureSpec:
        """Compute normalisation statistics from training rows.

        Args:
            user_feature_names: user features the model will read.
            item_feature_names: item features the model will read.
            numeric: raw numeric matrix, shape (B, F') with columns
                ``numeric_names``.
            numeric_names: column names of ``numeric``.
            hash_buckets: embedding rows per sparse field; defaults when None.

        Returns:
            A spec whose statistics make each training column zero-mean and
            unit-variance after ``signed_log1p``.
        """
        draft = cls(
            tuple(user_feature_names),
            tuple(item_feature_names),
            means=(0.0,) * (len(user_feature_names) + len(item_feature_names) + 1),
            stds=(1.0,) * (len(user_feature_names) + len(item_feature_names) + 1),
            hash_buckets=dict(hash_buckets or _DEFAULT_BUCKETS),
        )
        transformed = signed_log1p(draft.select(numeric, numeric_names)).astype(
            np.float64
        )
        if transformed.shape[0] == 0:
            raise ValueError("cannot fit a feature spec on 0 rows; expected >= 1")
        means = transformed.mean(axis=0)
        stds = transformed.std(axis=0)
        # A constant column gets std 1 so that it maps to 0 instead of dividing by 0.
        stds = np.where(stds < 1e-6, 1.0, stds)
        return cls(
            draft.user_feature_names,
            draft.item_feature_names,
            means=tuple(float(value) for value in means),
            stds=tuple(float(value) for value in stds),
            hash_buckets=draft.hash_buckets,
        )

    def select(self, numeric: np.ndarray, numeric_names: Sequence[str]) -> np.ndarray:
        """Reorder raw numeric columns into this spec's order, zeros for absent ones.

        Args:
            numeric: raw matrix, shape (B, F') with columns ``numeric_names``.
            numeric_names: column names of ``numeric``.

        Returns:
            Raw matrix of shape (B, F) in ``numeric_names`` order of this spec.
        """
        if tuple(numeric_names) == self.numeric_names:
            return numeric
        position = {name: index for index, name in enumerate(numeric_names)}
        out = np.zeros((numeric.shape[0], len(self.numeric_names)), dtype=np.float32)
        for target, name in enumerate(self.numeric_names):
            source = position.get(name)
            if source is not None:
                out[:, target] = numeric[:, source]
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as JSON-ready data for the artifact's metadata."""
        return {
            "user_feature_names": list(self.user_feature_names),
            "item_feature_names": list(self.item_feature_names),
            "numeric_names": list(self.numeric_names),
            "numeric_transform": "signed_log1p then (x - mean) / std, clipped to "
            f"+-{Z_LIMIT:g}",
            "means": list(self.means),
            "stds": list(self.stds),
            "sparse_fields": list(SPARSE_FIELDS),
            "hash_buckets": dict(self.hash_buckets),
            "id_hash": "blake2b-64 keyed by field name, shifted right by 1",
            "tasks": [str(task) for task in TASKS],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Rebuild a spec from ``to_dict`` output.

        Raises:
            ValueError: when a field is missing or inconsistent.
        """
        try:
            spec = cls(
                tuple(data["user_feature_names"]),
                tuple(data["item_feature_names"]),
                means=tuple(float(value) for value in data["means"]),
                stds=tuple(float(value) for value in data["stds"]),
                hash_buckets={
                    str(name): int(count)
                    for name, count in data["hash_buckets"].items()
                },
            )
        except KeyError as exc:
            raise ValueError(f"feature spec misses the field {exc.args[0]!r}") from exc
        if any(not math.isfinite(value) for value in (*spec.means, *spec.stds)):
            raise ValueError("feature spec contains a non-finite mean or std")
        return spec
