"""The online signals that scoring reads from the learner's models.

The learning stage applies :func:`signal_matrix` to the models it trains, and
the HTTP API to the models of the learner's newest checkpoint, so both score
candidates the same way.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence

import numpy as np

from models.online import AffinityModel, ConversionModel, PrequentialEvaluator
from models.online.conversion import squash_matrix
from schemas.events import EventType
from schemas.features import CANDIDATE_FEATURES, USER_FEATURES, CandidateMatrix

__all__ = [
    "AFFINITY_MODEL",
    "ONLINE_AFFINITY",
    "ONLINE_CART_PROB",
    "ONLINE_PURCHASE_PROB",
    "SIGNAL_MODELS",
    "SIGNAL_NAMES",
    "Requests",
    "signal_matrix",
]

ONLINE_CART_PROB = "online_cart_prob"
"""Signal: P(cart add within the cart horizon | the user clicks the item now)."""

ONLINE_PURCHASE_PROB = "online_purchase_prob"
"""Signal: P(purchase within the purchase horizon | the user carts the item now).

It is conditional on a cart add; multiply by ``online_cart_prob`` for the
probability of a purchase after a click.
"""

ONLINE_AFFINITY = "online_affinity"
"""Signal: the affinity model's score of the (user, item) pair, in [0, 1]."""

SIGNAL_NAMES = (ONLINE_CART_PROB, ONLINE_PURCHASE_PROB, ONLINE_AFFINITY)
"""The columns of :func:`signal_matrix`, in order."""

AFFINITY_MODEL = "affinity"
"""Metric label of the affinity model; the conversion models use their task name."""

SIGNAL_MODELS = (EventType.CART_ADD.value, EventType.PURCHASE.value, AFFINITY_MODEL)
"""The model names :func:`signal_matrix` reads, one per column of its result."""

_ITEM_COLUMNS: tuple[str, ...] = CANDIDATE_FEATURES
_SIGNAL_COLUMNS: tuple[str, ...] = (*USER_FEATURES, *_ITEM_COLUMNS)
_get_item_columns = operator.itemgetter(*_ITEM_COLUMNS)

Requests = Sequence[
    tuple[
        str,
        Mapping[str, float],
        Sequence[tuple[str, Mapping[str, float]]] | CandidateMatrix,
    ]
]
"""``(user_id, user_features, candidates)`` per user, as scoring passes them."""


def _item_row(features: Mapping[str, float]) -> tuple[float, ...]:
    # The feature store fills every item and pair feature, so one itemgetter
    # call usually reads the whole row; other callers may leave some out.
    try:
        return tuple(_get_item_columns(features))
    except KeyError:
        return tuple(features.get(name, np.nan) for name in _ITEM_COLUMNS)


def signal_matrix(
    evaluators: Mapping[str, PrequentialEvaluator], requests: Requests
) -> np.ndarray:
    """Return the online signals of every candidate of several users at once.

    One matrix covers the whole batch, so the models' parameters are read
    and applied once per batch instead of once per user. The models are only
    read, never updated.

    Args:
        evaluators: the learner's models by name; :data:`SIGNAL_MODELS` must
            be among them.
        requests: ``(user_id, user_features, candidates)`` per user, with
            candidates as ``(item_id, item_features)`` pairs or one matrix.
            Only the features named in :mod:`schemas.features` are read.

    Returns:
        Shape (N, 3) for the N candidates of all requests in order; the
        columns are ``ONLINE_CART_PROB``, ``ONLINE_PURCHASE_PROB`` and
        ``ONLINE_AFFINITY`` (see :data:`SIGNAL_NAMES`).

    Raises:
        TypeError: a model of :data:`SIGNAL_MODELS` has another type.
    """
    total = sum(len(candidates) for _, _, candidates in requests)
    if total == 0:
        return np.zeros((0, len(SIGNAL_NAMES)))
    raw, users, items = _raw_rows(requests, total)

    squashed = squash_matrix(raw)
    signals = np.empty((total, len(SIGNAL_NAMES)), dtype=np.float64)
    for column, task in enumerate(SIGNAL_MODELS[:2]):
        model = evaluators[task].model
        if not isinstance(model, ConversionModel):
            raise TypeError(
                f"the {task} model has type {type(model).__name__}; "
                "expected ConversionModel"
            )
        if model.learner == "fm":
            signals[:, column] = model.predict_proba_matrix(_SIGNAL_COLUMNS, raw)
        else:
            signals[:, column] = model.predict_proba_matrix(
                _SIGNAL_COLUMNS, squashed, is_squashed=True
            )
    affinity = evaluators[AFFINITY_MODEL].model
    if not isinstance(affinity, AffinityModel):
        raise TypeError(
            f"the {AFFINITY_MODEL} model has type {type(affinity).__name__}; "
            "expected AffinityModel"
        )
    signals[:, 2] = affinity.predict_pairs(users, items)
    return signals


def _raw_rows(
    requests: Requests, total: int
) -> tuple[np.ndarray, list[str], list[str]]:
    """Return the (N, F) user and item feature rows, and each row's user and item."""
    raw = np.empty((total, len(_SIGNAL_COLUMNS)), dtype=np.float64)
    user_width = len(USER_FEATURES)
    users: list[str] = []
    items: list[str] = []
    row = 0
    for user_id, user_features, candidates in requests:
        count = len(candidates)
        if count == 0:
            continue
        raw[row : row + count, :user_width] = [
            user_features.get(name, np.nan) for name in USER_FEATURES
        ]
        if isinstance(candidates, CandidateMatrix):
            raw[row : row + count, user_width:] = candidates.array
            items += candidates.item_ids
        else:
            raw[row : row + count, user_width:] = [
                _item_row(features) for _, features in candidates
            ]
            items += [item_id for item_id, _ in candidates]
        users += [user_id] * count
        row += count
    return raw, users, items
