"""Compact encoding of a pending example's point-in-time features.

Pending examples wait in Redis for up to the label horizon, so their size sets
the learner's Redis memory. The features named in :mod:`schemas.features` are
stored as one float32 vector in that fixed order, in base64 so that clients
that decode responses as text can read it. Any other feature travels in a
small JSON header. A payload is::

    ["<layout>", event_id, user_id, item_id, event_time, {extra features}]\\n<base64>

``layout`` is a digest of the ordered feature names: a payload written under
another feature layout cannot be mapped back to names and is not decoded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping

import numpy as np

from schemas.events import Event
from schemas.features import ITEM_FEATURES, PAIR_FEATURES, USER_FEATURES

__all__ = ["FEATURE_LAYOUT", "decode_example", "encode_example"]

_NAMES: tuple[str, ...] = (*USER_FEATURES, *ITEM_FEATURES, *PAIR_FEATURES)
_INDEX = {name: index for index, name in enumerate(_NAMES)}

FEATURE_LAYOUT = hashlib.sha256("\n".join(_NAMES).encode()).hexdigest()[:8]
"""Digest of the ordered feature names that vectors are stored in."""

DecodedExample = tuple[str, str, str, float, dict[str, float]]


def encode_example(event: Event, features: Mapping[str, float]) -> str:
    """Encode an event's identity and features; missing features become NaN."""
    vector = np.full(len(_NAMES), np.nan, dtype=np.float32)
    extras: dict[str, float] = {}
    for name, value in features.items():
        index = _INDEX.get(name)
        if index is None:
            extras[name] = float(value)
        else:
            vector[index] = value
    header = json.dumps(
        [
            FEATURE_LAYOUT,
            event.event_id,
            event.user_id,
            event.item_id,
            event.event_timestamp,
            extras,
        ],
        separators=(",", ":"),
    )
    return header + "\n" + base64.b64encode(vector.tobytes()).decode("ascii")


def decode_example(payload: str) -> DecodedExample | None:
    """Decode a payload into (event_id, user_id, item_id, event_time, features).

    Returns None when the payload was written under another feature layout.
    """
    header, _, encoded = payload.partition("\n")
    layout, event_id, user_id, item_id, event_time, extras = json.loads(header)
    if layout != FEATURE_LAYOUT:
        return None
    vector = np.frombuffer(base64.b64decode(encoded), dtype=np.float32)
    features = {
        name: float(value)
        for name, value in zip(_NAMES, vector.tolist(), strict=True)
        if not math.isnan(value)
    }
    features.update(extras)
    return event_id, user_id, item_id, float(event_time), features
