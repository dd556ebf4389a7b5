"""User-item affinity learned from implicit feedback with sampled negatives.

Every event is a positive (user, item) pair. Negatives are drawn uniformly from
a fixed-size ring of distinct, recently seen items. On the REES46 sample,
drawing them in proportion to popularity (from a ring of recent events) scored
a prequential AUC of 0.34, below chance: most positives are items seen for the
first time, while popularity-drawn negatives are exactly the items the model
has just learned to like. Uniform draws over distinct items scored 0.56 to
0.58. The classifier is River's factorization machine over two one-hot
fields, the user and the item.

River creates a weight and a latent vector for every feature name it meets,
even when it only predicts. The ids are therefore hashed into a fixed number of
buckets per field before they reach the model: memory is bounded by
``user_buckets + item_buckets`` entries however many users and items arrive,
at the price of collisions once ids outnumber buckets.
"""

from __future__ import annotations

import hashlib
from collections import deque
from datetime import datetime

from river import facto, optim

from models.online.base import OnlineExample, OnlineModel

__all__ = ["AffinityModel"]


def _bucket(field: str, value: str, buckets: int) -> str:
    # blake2b, unlike hash(), gives the same bucket in every process, which a
    # restored checkpoint relies on.
    digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
    return f"{field}{int.from_bytes(digest, 'little') % buckets}"


class AffinityModel(OnlineModel):
    """Factorization machine over hashed user and item ids.

    Args:
        user_buckets: number of hash buckets for user ids.
        item_buckets: number of hash buckets for item ids.
        n_factors: size of each latent vector.
        learning_rate: SGD step of weights and latent vectors.
        negatives: negatives sampled per positive in :meth:`update`.
        recent_items: number of distinct items in the ring that negatives are
            drawn from.
        seed: seeds the latent initialisation and the negative sampling.
        created_at: creation time used in ``model_version`` (now by default).
    """

    model_name = "affinity"

    def __init__(
        self,
        user_buckets: int = 1 << 15,
        item_buckets: int = 1 << 15,
        n_factors: int = 8,
        learning_rate: float = 0.3,
        negatives: int = 2,
        recent_items: int = 2048,
        seed: int = 0,
        created_at: datetime | None = None,
    ) -> None:
        if user_buckets < 1 or item_buckets < 1:
            raise ValueError(
                f"user_buckets={user_buckets!r} item_buckets={item_buckets!r}; "
                "expected at least 1 each"
            )
        super().__init__(seed=seed, created_at=created_at)
        self.user_buckets = user_buckets
        self.item_buckets = item_buckets
        self.negatives = negatives
        self._recent_items: deque[str] = deque(maxlen=recent_items)
        self._recent_item_set: set[str] = set()
        self._fm = facto.FMClassifier(
            n_factors=n_factors,
            weight_optimizer=optim.SGD(learning_rate),
            latent_optimizer=optim.SGD(learning_rate),
            l2_weight=1e-4,
            l2_latent=1e-4,
            seed=seed,
        )

    @property
    def n_parameters(self) -> int:
        """Number of weights plus latent vectors the machine holds."""
        return len(self._fm.weights) + len(self._fm.latents)

    def _inputs(self, example: OnlineExample) -> dict[str, float]:
        return {
            _bucket("u", example.user_id, self.user_buckets): 1.0,
            _bucket("i", example.item_id, self.item_buckets): 1.0,
        }

    def predict_proba(self, example: OnlineExample) -> float:
        """Return the affinity of the example's user for its item, in [0, 1]."""
        probs = self._fm.predict_proba_one(self._inputs(example))
        return float(probs.get(True, 0.0))

    def learn_one(self, example: OnlineExample, label: bool) -> None:
        """Learn one (user, item) pair as a positive or a negative."""
        self._fm.learn_one(self._inputs(example), bool(label))
        self.n_updates += 1

    def sample_negatives(self, example: OnlineExample) -> list[OnlineExample]:
        """Draw up to ``negatives`` recent items other than the example's item."""
        pool = self._recent_items
        sampled: list[OnlineExample] = []
        if not pool:
            return sampled
        for _ in range(self.negatives * 2):
            if len(sampled) == self.negatives:
                break
            item_id = pool[self._rng.randrange(len(pool))]
            if item_id != example.item_id:
                sampled.append(OnlineExample(example.user_id, item_id))
        return sampled

    def remember_item(self, item_id: str) -> None:
        """Add an item to the ring that negatives are drawn from, once."""
        if item_id in self._recent_item_set:
            return
        ring = self._recent_items
        if ring.maxlen is not None and len(ring) == ring.maxlen:
            self._recent_item_set.discard(ring[0])
        ring.append(item_id)
        self._recent_item_set.add(item_id)
