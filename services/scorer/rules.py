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

__all__ = ["RankedCandidate", "RuleContext", "apply_rules", "is_excluded"]


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
    if settings.exclude_trigger and item_id == context.trigger_item_id:
        return True
    if item_id in context.excluded:
        return True
    attributes = context.attributes.get(item_id)
    if settings.exclude_purchased and item_id in context.purchased:
        is_consumable = attributes is not None and attributes.is_consumable
        if not (settings.allow_consumables and is_consumable):
            return True
    if settings.exclude_out_of_stock and attributes is not None:
        if attributes.stock is not None and attributes.stock <= 0:
            return True
    return False


def apply_rules(
    candidates: Sequence[RankedCandidate],
    context: RuleContext,
    settings: RuleSettings,
    size: int,
) -> list[RankedCandidate]:
    """Return at most ``size`` candidates that satisfy every rule, best first."""
    best: dict[str, RankedCandidate] = {}
    for candidate in candidates:
        if is_excluded(candidate.item_id, context, settings):
            continue
        kept = best.get(candidate.item_id)
        if kept is None or candidate.score > kept.score:
            best[candidate.item_id] = candidate
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
    counts: dict[str, int] = {}
    selected = []
    for candidate in ordered:
        category = _category(candidate.item_id, context)
        if category is not None:
            if counts.get(category, 0) >= cap:
                continue
            counts[category] = counts.get(category, 0) + 1
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


def _reserve_new_item_slots(
    selected: list[RankedCandidate],
    ordered: Sequence[RankedCandidate],
    context: RuleContext,
    settings: RuleSettings,
    size: int,
) -> list[RankedCandidate]:
    """Put the best little-seen items on the slate's last slots if none made it."""
    wanted = settings.new_item_slots - sum(
        _is_new(candidate.item_id, context, settings) for candidate in selected
    )
    if wanted <= 0:
        return selected
    chosen = {candidate.item_id for candidate in selected}
    newcomers = [
        candidate
        for candidate in ordered
        if candidate.item_id not in chosen
        and _is_new(candidate.item_id, context, settings)
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
