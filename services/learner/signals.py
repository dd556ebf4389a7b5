"""The online signals that scoring reads from the learner's models.

The learning stage applies :func:`signal_matrix` to the models it trains, and
the HTTP API to the models of the learner's newest checkpoint, so both score
candidates the same way.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import NamedTuple

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
    rows = _feature_rows(requests)
    total = len(rows.item_ids)
    if total == 0:
        return np.zeros((0, len(SIGNAL_NAMES)))
    # A user's features repeat on each of their candidates, so they are
    # squashed once per user. Only the fm learner reads the raw matrix.
    counts = rows.counts
    squashed = np.hstack(
        (
            np.repeat(squash_matrix(rows.user_features), counts, axis=0),
            squash_matrix(rows.item_features),
        )
    )
    signals = np.empty((total, len(SIGNAL_NAMES)), dtype=np.float64)
    for column, task in enumerate(SIGNAL_MODELS[:2]):
        model = evaluators[task].model
        if not isinstance(model, ConversionModel):
            raise TypeError(
                f"the {task} model has type {type(model).__name__}; "
                "expected ConversionModel"
            )
        if model.learner == "fm":
            raw = np.hstack(
                (np.repeat(rows.user_features, counts, axis=0), rows.item_features)
            )
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
    signals[:, 2] = affinity.predict_pairs(rows.user_ids, rows.item_ids, counts)
    return signals


class _FeatureRows(NamedTuple):
    """The features of every candidate of a batch, user features kept per user.

    R counts the users with at least one candidate, N all their candidates.
    """

    user_ids: list[str]
    """(R,) the users, in request order."""
    counts: list[int]
    """(R,) each user's number of candidates."""
    user_features: np.ndarray
    """(R, len(USER_FEATURES)) each user's features."""
    item_ids: list[str]
    """(N,) every candidate, grouped by user."""
    item_features: np.ndarray
    """(N, len(CANDIDATE_FEATURES)) every candidate's item and pair features."""


def _feature_rows(requests: Requests) -> _FeatureRows:
    user_ids: list[str] = []
    counts: list[int] = []
    user_rows: list[list[float]] = []
    item_ids: list[str] = []
    item_blocks: list[np.ndarray] = []
    for user_id, user_features, candidates in requests:
        if len(candidates) == 0:
            continue
        user_ids.append(user_id)
        counts.append(len(candidates))
        user_rows.append([user_features.get(name, np.nan) for name in USER_FEATURES])
        if isinstance(candidates, CandidateMatrix):
            item_blocks.append(candidates.array)
            item_ids += candidates.item_ids
        else:
            item_blocks.append(
                np.array([_item_row(features) for _, features in candidates])
            )
            item_ids += [item_id for item_id, _ in candidates]
    return _FeatureRows(
        user_ids=user_ids,
        counts=counts,
        user_features=np.array(user_rows, dtype=np.float64).reshape(
            len(user_rows), len(USER_FEATURES)
        ),
        item_ids=item_ids,
        item_features=(
            np.concatenate(item_blocks, dtype=np.float64)
            if item_blocks
            else np.empty((0, len(_ITEM_COLUMNS)))
        ),
    )
