"""User-item affinity learned from implicit feedback with sampled negatives.

Every event is a positive (user, item) pair. Negatives are drawn uniformly from
a fixed-size ring of distinct, recently seen items. On the REES46 sample,
negatives drawn in proportion to popularity (from a ring of recent events)
scored a prequential AUC of 0.34, below chance. Most positives there are items
seen for the first time, while popularity-drawn negatives are exactly the
items the model has just learned to like.

The model is a factorization machine over two one-hot fields, the user and the
item, which reduces to logistic matrix factorization, plus a bias per hashed
(user, item) pair::

    p(u, i) = sigmoid(b + b_u + b_i + b_ui + <v_u, v_i>)

The pair bias lets the model remember that a user came back to an item, which
shoppers often do. On the REES46 sample, learned in chunks of 64 events, it
raised the prequential AUC from 0.60 to 0.67 (measured during development with
the stage's chunked learning replayed offline).

It is written with NumPy instead of River's ``facto.FMClassifier`` for two
reasons. River's machine creates a weight and a latent vector for every feature
name it meets, even when it only predicts, so memory grows with every new id.
It also cost about 100 µs per event (three learned pairs) on this project's
2-core machine, which made it the hot path's bottleneck. Here ids are hashed
into a fixed number of buckets per field, so memory is fixed at creation:
``(user_buckets + item_buckets) * (n_factors + 1) + pair_buckets`` float32
values. The price is collisions once ids outnumber buckets. A batch of pairs is
scored and learned with a few vectorized operations.

Each id gets a 64-bit hash of its own, and a pair's bucket is mixed from its
user's and its item's hashes with integer arithmetic over the whole batch.
Hashing the joined ids as one string instead cost a cache miss per pair, which
was most of the time scoring spent in this model. How pairs are bucketed is
versioned and saved with the model (see :data:`PAIR_HASHING`).

Learning is mini-batch SGD: :meth:`AffinityModel.learn_many` computes every
pair's gradient from the parameters as they were before the call, then adds
them up (pairs sharing a bucket add their gradients).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np

from models.errors import CheckpointFormatError
from models.online.base import OnlineExample, OnlineModel

__all__ = ["PAIR_HASHING", "AffinityModel"]

logger = logging.getLogger(__name__)

PAIR_HASHING = 2
"""Version of the way (user, item) pairs are mapped to pair buckets.

It is saved with every model. Version 1 hashed the joined ids as one string;
version 2 mixes the two ids' hashes. User and item buckets are the same in
both, so a model saved with version 1 is loaded with its pair biases reset and
everything else kept. Loading a model saved with an unknown version raises
``CheckpointFormatError``.
"""

# Logits are clipped before the sigmoid so exp() never overflows.
_MAX_LOGIT = 30.0

# splitmix64's increment and finalizer multipliers (Steele, Lea and Flood).
_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


@functools.lru_cache(maxsize=1 << 16)
def _id_hash(value: str) -> int:
    # blake2b, unlike hash(), gives the same value in every process, which a
    # restored checkpoint relies on. The cache skips rehashing the ids of
    # active users and candidate items.
    digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _id_hashes(ids: Sequence[str]) -> np.ndarray:
    """Return the 64-bit hash of each id as a (N,) uint64 array."""
    return np.fromiter(map(_id_hash, ids), dtype=np.uint64, count=len(ids))


def _buckets(hashes: np.ndarray, count: int) -> np.ndarray:
    """Return ``hashes % count`` as (N,) indexes."""
    if count & (count - 1) == 0:
        # A mask gives the same buckets as the modulo, several times faster.
        return (hashes & np.uint64(count - 1)).astype(np.intp)
    return (hashes % np.uint64(count)).astype(np.intp)


def _pair_hashes(user_hashes: np.ndarray, item_hashes: np.ndarray) -> np.ndarray:
    """Mix each user's and item's uint64 hashes into one hash per pair."""
    # Multiplying the user's hash first makes (a, b) and (b, a) differ; the
    # splitmix64 finalizer then spreads every input bit over the whole result.
    # uint64 arithmetic wraps around, as the finalizer expects.
    mixed: np.ndarray = user_hashes * _GOLDEN_GAMMA + item_hashes
    mixed ^= mixed >> np.uint64(30)
    mixed *= _MIX_1
    mixed ^= mixed >> np.uint64(27)
    mixed *= _MIX_2
    mixed ^= mixed >> np.uint64(31)
    return mixed


# LIMITATION(L-32): on the REES46 sample this model reaches a prequential AUC
# of about 0.67, barely above the 0.65 of "has the user seen this item before"
# used alone, so its latent factors add little so far.
class _Indexes(NamedTuple):
    users: np.ndarray
    items: np.ndarray
    pairs: np.ndarray


class AffinityModel(OnlineModel):
    """Logistic matrix factorization over hashed user and item ids.

    Args:
        user_buckets: number of hash buckets for user ids.
        item_buckets: number of hash buckets for item ids.
        pair_buckets: number of hash buckets for (user, item) pairs.
        n_factors: size of each latent vector.
        learning_rate: SGD step of biases and latent vectors.
        l2: L2 penalty on biases and latent vectors.
        negatives: negatives sampled per positive by :meth:`sample_negatives`.
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
        pair_buckets: int = 1 << 18,
        n_factors: int = 8,
        learning_rate: float = 0.3,
        l2: float = 1e-4,
        negatives: int = 2,
        recent_items: int = 2048,
        seed: int = 0,
        created_at: datetime | None = None,
    ) -> None:
        if min(user_buckets, item_buckets, pair_buckets) < 1:
            raise ValueError(
                f"user_buckets={user_buckets!r} item_buckets={item_buckets!r} "
                f"pair_buckets={pair_buckets!r}; expected at least 1 each"
            )
        super().__init__(seed=seed, created_at=created_at)
        self.user_buckets = user_buckets
        self.item_buckets = item_buckets
        self.learning_rate = learning_rate
        self.l2 = l2
        self.negatives = negatives
        self.pair_hashing = PAIR_HASHING
        self._recent_items: deque[str] = deque(maxlen=recent_items)
        self._recent_item_set: set[str] = set()

        generator = np.random.default_rng(seed)
        scale = 0.1 / np.sqrt(n_factors)
        self.intercept = 0.0
        self.user_bias = np.zeros(user_buckets, dtype=np.float32)
        self.item_bias = np.zeros(item_buckets, dtype=np.float32)
        self.pair_bias = np.zeros(pair_buckets, dtype=np.float32)
        self.user_factors = generator.normal(
            0.0, scale, (user_buckets, n_factors)
        ).astype(np.float32)
        self.item_factors = generator.normal(
            0.0, scale, (item_buckets, n_factors)
        ).astype(np.float32)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Models saved before the version was recorded hashed pairs as version 1.
        version = state.get("pair_hashing", 1)
        pair_bias = state.get("pair_bias")
        # A bool is an int in Python (True == 1), so the type is checked exactly.
        if type(version) is not int or version not in (1, PAIR_HASHING):
            raise CheckpointFormatError(
                f"affinity model {state.get('model_version')!r} maps (user, item) "
                f"pairs to buckets with pair hashing version {version!r}; this "
                f"version of Cartwheel reads versions 1 and {PAIR_HASHING}"
            )
        if not isinstance(pair_bias, np.ndarray):
            raise CheckpointFormatError(
                f"affinity model {state.get('model_version')!r} has pair biases "
                f"of type {type(pair_bias).__name__}; expected a NumPy array"
            )
        if version == 1:
            # Its pair biases belong to other buckets now. The user and item
            # biases and factors do not depend on the pair hashing.
            state = {
                **state,
                "pair_bias": np.zeros_like(pair_bias),
                "pair_hashing": PAIR_HASHING,
            }
            logger.warning(
                "affinity model restored with its pair biases reset, because it "
                "was saved with pair hashing version 1; user and item parameters "
                "are kept model_version=%s pair_buckets=%d",
                state.get("model_version"),
                len(pair_bias),
            )
        self.__dict__.update(state)

    @property
    def n_parameters(self) -> int:
        """Number of parameters; fixed at creation, whatever ids arrive."""
        arrays = (
            self.user_bias,
            self.item_bias,
            self.pair_bias,
            self.user_factors,
            self.item_factors,
        )
        return 1 + sum(array.size for array in arrays)

    def _indexes(self, examples: Sequence[OnlineExample]) -> _Indexes:
        return self._hash_indexes(
            _id_hashes([example.user_id for example in examples]),
            _id_hashes([example.item_id for example in examples]),
        )

    def _hash_indexes(
        self, user_hashes: np.ndarray, item_hashes: np.ndarray
    ) -> _Indexes:
        pair_hashes = _pair_hashes(user_hashes, item_hashes)
        return _Indexes(
            users=_buckets(user_hashes, self.user_buckets),
            items=_buckets(item_hashes, self.item_buckets),
            pairs=_buckets(pair_hashes, len(self.pair_bias)),
        )

    def _probs(self, index: _Indexes) -> np.ndarray:
        logits = (
            self.intercept
            + self.user_bias[index.users]
            + self.item_bias[index.items]
            + self.pair_bias[index.pairs]
            + np.einsum(
                "bf,bf->b",
                self.user_factors[index.users],
                self.item_factors[index.items],
            )
        )
        return np.asarray(
            1.0 / (1.0 + np.exp(-np.clip(logits, -_MAX_LOGIT, _MAX_LOGIT)))
        )

    def predict_proba(self, example: OnlineExample) -> float:
        """Return the affinity of the example's user for its item, in [0, 1]."""
        return self.predict_proba_many([example])[0]

    def predict_proba_many(self, examples: Sequence[OnlineExample]) -> list[float]:
        """Return the affinity of each example's pair, with one vectorized pass."""
        if not examples:
            return []
        return [float(prob) for prob in self._probs(self._indexes(examples))]

    def predict_pairs(
        self,
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        counts: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Return the affinity of each (user, item) pair as a (N,) array.

        Equals :meth:`predict_proba_many` without building an example per pair.

        Args:
            user_ids: the user of each pair, or with ``counts`` each user once
                for a run of consecutive pairs, such as a user's candidates.
            item_ids: the item of each pair.
            counts: the number of pairs in each user's run; one each when None.
        """
        user_hashes = _id_hashes(user_ids)
        if counts is not None:
            if len(counts) != len(user_ids):
                raise ValueError(
                    f"got {len(counts)} counts for {len(user_ids)} user ids; "
                    "expected one count per user"
                )
            user_hashes = np.repeat(user_hashes, counts)
        if len(user_hashes) != len(item_ids):
            raise ValueError(
                f"got {len(user_hashes)} pairs' users and {len(item_ids)} item "
                "ids; expected one user per item"
            )
        return self._probs(self._hash_indexes(user_hashes, _id_hashes(item_ids)))

    def learn_one(self, example: OnlineExample, label: bool) -> None:
        """Learn one (user, item) pair as a positive or a negative."""
        self.learn_many([example], [label])

    def learn_many(
        self, examples: Sequence[OnlineExample], labels: Sequence[bool]
    ) -> None:
        """Take one SGD step on a batch of labelled pairs."""
        if len(examples) != len(labels):
            raise ValueError(
                f"got {len(labels)} labels for {len(examples)} examples; "
                "expected one label per example"
            )
        if not examples:
            return
        index = self._indexes(examples)
        users, items, pairs = index.users, index.items, index.pairs
        # Gradient of the log loss with respect to the logit, per pair.
        targets = np.asarray(labels, dtype=np.float32)
        errors = (self._probs(index) - targets).astype(np.float32)[:, None]
        user_vectors = self.user_factors[users]
        item_vectors = self.item_factors[items]
        rate, l2 = self.learning_rate, self.l2

        for bias, rows in (
            (self.user_bias, users),
            (self.item_bias, items),
            (self.pair_bias, pairs),
        ):
            np.add.at(bias, rows, -rate * (errors[:, 0] + l2 * bias[rows]))
        np.add.at(
            self.user_factors,
            users,
            -rate * (errors * item_vectors + l2 * user_vectors),
        )
        np.add.at(
            self.item_factors,
            items,
            -rate * (errors * user_vectors + l2 * item_vectors),
        )
        # The shared intercept moves slowly, like River's default intercept_lr.
        self.intercept -= 0.01 * float(errors.mean())
        self.n_updates += len(examples)

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
