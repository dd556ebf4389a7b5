"""Slate rules: exclusions, deduplication, diversity and slots for new items.

The rules run after scoring, on the candidates of one event, in this order:
exclusions (trigger item, recently purchased, out of stock, caller's extra
set), deduplication, diversity (at most N per category, or MMR), then slots
reserved for little-seen items so new items get exposure.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from schemas.recommendations import CandidateSource
from services.scorer.protocols import ItemAttributes
from services.scorer.settings import RuleSettings

__all__ = [
    "RankedCandidate",
    "RuleContext",
    "apply_rules",
    "excluded_items",
    "is_excluded",
]


class RankedCandidate(NamedTuple):
    """A scored candidate with blended task probabilities and online affinity.

    ``task_probs`` contains p(click), p(cart_add) and p(purchase) in that order.
    A named tuple, not a frozen dataclass, because every event builds about
    a hundred and a named tuple is built about twice as fast.
    """

    item_id: str
    score: float
    task_probs: tuple[float, float, float]
    source: CandidateSource
    affinity: float = 0.0


@dataclass(frozen=True)
class RuleContext:
    """The facts about the triggering event that the rules check against.

    Attributes:
        trigger_item_id: the item of the triggering event.
        purchased: items the user bought recently, with their times.
        attributes: catalog attributes of the candidates.
        item_views: recent views per candidate, to spot new items.
        excluded: further items to leave out (e.g. the cart on bundles).
    """

    trigger_item_id: str
    purchased: Mapping[str, float] = field(default_factory=dict)
    attributes: Mapping[str, ItemAttributes] = field(default_factory=dict)
    item_views: Mapping[str, float] = field(default_factory=dict)
    excluded: Collection[str] = frozenset()


def is_excluded(item_id: str, context: RuleContext, settings: RuleSettings) -> bool:
    """Return whether an item may never appear on this slate."""
    return item_id in excluded_items(context, settings)


def excluded_items(context: RuleContext, settings: RuleSettings) -> set[str]:
    """Return every item that may never appear on this slate.

    The set is built from the context once per slate, so each candidate
    then costs one membership test.
    """
    excluded = set(context.excluded)
    if settings.exclude_trigger:
        excluded.add(context.trigger_item_id)
    if settings.exclude_purchased:
        attributes = context.attributes
        for item_id in context.purchased:
            found = attributes.get(item_id)
            is_consumable = found is not None and found.is_consumable
            if not (settings.allow_consumables and is_consumable):
                excluded.add(item_id)
    if settings.exclude_out_of_stock:
        excluded.update(
            item_id
            for item_id, found in context.attributes.items()
            if found.stock is not None and found.stock <= 0
        )
    return excluded


def apply_rules(
    candidates: Sequence[RankedCandidate],
    context: RuleContext,
    settings: RuleSettings,
    size: int,
) -> list[RankedCandidate]:
    """Return at most ``size`` candidates that satisfy every rule, best first."""
    excluded = excluded_items(context, settings)
    best: dict[str, RankedCandidate] = {}
    for candidate in candidates:
        item_id = candidate.item_id
        if item_id in excluded:
            continue
        kept = best.get(item_id)
        if kept is None or candidate.score > kept.score:
            best[item_id] = candidate
    ordered = sorted(best.values(), key=lambda entry: (-entry.score, entry.item_id))

    if settings.diversity == "per_category":
        selected = _cap_per_category(ordered, context, settings.max_per_category, size)
    elif settings.diversity == "mmr":
        selected = _mmr(ordered, context, settings.mmr_lambda, size)
    else:
        selected = ordered[:size]
    return _reserve_new_item_slots(selected, ordered, context, settings, size)


def _category(item_id: str, context: RuleContext) -> str | None:
    attributes = context.attributes.get(item_id)
    return attributes.category_id if attributes is not None else None


def _cap_per_category(
    ordered: Sequence[RankedCandidate], context: RuleContext, cap: int, size: int
) -> list[RankedCandidate]:
    # Items without a known category are not limited, because no attribute
    # marks them as alike.
    attributes = context.attributes
    counts: dict[str, int] = {}
    selected = []
    for candidate in ordered:
        found = attributes.get(candidate.item_id)
        category = found.category_id if found is not None else None
        if category is not None:
            count = counts.get(category, 0)
            if count >= cap:
                continue
            counts[category] = count + 1
        selected.append(candidate)
        if len(selected) == size:
            break
    return selected


def _similarity(left: str, right: str, context: RuleContext) -> float:
    left_attributes = context.attributes.get(left)
    right_attributes = context.attributes.get(right)
    if left_attributes is None or right_attributes is None:
        return 0.0
    if left_attributes.category_id is not None and (
        left_attributes.category_id == right_attributes.category_id
    ):
        return 1.0
    if (
        left_attributes.brand is not None
        and left_attributes.brand == right_attributes.brand
    ):
        return 0.5
    return 0.0


def _mmr(
    ordered: Sequence[RankedCandidate], context: RuleContext, weight: float, size: int
) -> list[RankedCandidate]:
    """Maximal marginal relevance: trade score against similarity to picked items."""
    if not ordered:
        return []
    scores = np.array([candidate.score for candidate in ordered])
    spread = float(scores.max() - scores.min()) or 1.0
    relevance = (scores - scores.min()) / spread
    remaining = list(range(len(ordered)))
    picked: list[int] = []
    while remaining and len(picked) < size:
        best_index, best_value = remaining[0], -np.inf
        for index in remaining:
            redundancy = max(
                (
                    _similarity(ordered[index].item_id, ordered[other].item_id, context)
                    for other in picked
                ),
                default=0.0,
            )
            value = weight * relevance[index] - (1.0 - weight) * redundancy
            if value > best_value:
                best_index, best_value = index, value
        picked.append(best_index)
        remaining.remove(best_index)
    return [ordered[index] for index in picked]


def _is_new(item_id: str, context: RuleContext, settings: RuleSettings) -> bool:
    return context.item_views.get(item_id, 0.0) < settings.new_item_max_views


def _new_items(
    candidates: Sequence[RankedCandidate], context: RuleContext, settings: RuleSettings
) -> list[RankedCandidate]:
    """Return the little-seen candidates (see :func:`_is_new`), in their order."""
    views = context.item_views
    threshold = settings.new_item_max_views
    return [
        candidate
        for candidate in candidates
        if views.get(candidate.item_id, 0.0) < threshold
    ]


def _reserve_new_item_slots(
    selected: list[RankedCandidate],
    ordered: Sequence[RankedCandidate],
    context: RuleContext,
    settings: RuleSettings,
    size: int,
) -> list[RankedCandidate]:
    """Put the best little-seen items on the slate's last slots if none made it."""
    wanted = settings.new_item_slots - len(_new_items(selected, context, settings))
    if wanted <= 0:
        return selected
    chosen = {candidate.item_id for candidate in selected}
    newcomers = [
        candidate
        for candidate in _new_items(ordered, context, settings)
        if candidate.item_id not in chosen
    ][:wanted]
    for newcomer in newcomers:
        trial = selected
        if len(trial) >= size:
            trial = _drop_last_established(selected, context, settings)
        if len(trial) >= size:
            break
        if settings.diversity == "per_category" and _category_full(
            newcomer, trial, context, settings.max_per_category
        ):
            continue
        selected = [*trial, newcomer]
    return selected


def _drop_last_established(
    selected: list[RankedCandidate], context: RuleContext, settings: RuleSettings
) -> list[RankedCandidate]:
    for index in range(len(selected) - 1, -1, -1):
        if not _is_new(selected[index].item_id, context, settings):
            return selected[:index] + selected[index + 1 :]
    return selected


def _category_full(
    newcomer: RankedCandidate,
    selected: Sequence[RankedCandidate],
    context: RuleContext,
    cap: int,
) -> bool:
    category = _category(newcomer.item_id, context)
    if category is None:
        return False
    same = sum(_category(entry.item_id, context) == category for entry in selected)
    return same >= cap
