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
    "ScoredCandidates",
    "apply_rules",
    "excluded_items",
    "is_excluded",
    "select_rows",
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


class ScoredCandidates:
    """The scored candidates of one event, one list per field.

    Row ``r`` contains the fields of one :class:`RankedCandidate`. An event scores
    dozens of candidates but shows about twenty, so the rules walk rows
    and only the candidates that make it onto a slate are built as tuples.

    Args:
        item_ids: the candidate of each row.
        scores: one score per row.
        task_probs: p(click), p(cart_add) and p(purchase) per row.
        sources: the candidate source per row.
        affinity: the online affinity per row.

    Attributes:
        order: the rows best first: by score, then by item id on a tie.
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        scores: Sequence[float],
        task_probs: Sequence[Sequence[float]],
        sources: Sequence[CandidateSource],
        affinity: Sequence[float],
    ) -> None:
        self.item_ids = item_ids
        self.scores = scores
        self.task_probs = task_probs
        self.sources = sources
        self.affinity = affinity
        # Two stable sorts with built-in key functions, by item id and then
        # by score, give the order of one sort by (-score, item id) faster.
        negated = [-score for score in scores]
        self.order = sorted(range(len(item_ids)), key=item_ids.__getitem__)
        self.order.sort(key=negated.__getitem__)

    @classmethod
    def of(cls, candidates: Sequence[RankedCandidate]) -> ScoredCandidates:
        """Return the candidates as rows, in their order."""
        return cls(
            [candidate.item_id for candidate in candidates],
            [candidate.score for candidate in candidates],
            [candidate.task_probs for candidate in candidates],
            [candidate.source for candidate in candidates],
            [candidate.affinity for candidate in candidates],
        )

    def __len__(self) -> int:
        return len(self.item_ids)

    def candidate(self, row: int) -> RankedCandidate:
        """Return the candidate in ``row``."""
        click, cart_add, purchase = self.task_probs[row]
        return RankedCandidate(
            self.item_ids[row],
            self.scores[row],
            (click, cart_add, purchase),
            self.sources[row],
            self.affinity[row],
        )


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

    The set is built from the context once, so each candidate
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
    scored = ScoredCandidates.of(list(best.values()))
    rows = select_rows(scored, scored.order, context, settings, size)
    return [scored.candidate(row) for row in rows]


def select_rows(
    candidates: ScoredCandidates,
    rows: Sequence[int],
    context: RuleContext,
    settings: RuleSettings,
    size: int,
) -> list[int]:
    """Apply the diversity rule and the new-item slots to rows left by the exclusions.

    Args:
        candidates: the scored candidates of one event.
        rows: the rows that passed the exclusions, best first (a subsequence
            of ``candidates.order``).
        context: the facts about the triggering event.
        settings: the rules.
        size: the maximum number of rows to return.

    Returns:
        At most ``size`` of ``rows``, in slate order.
    """
    item_ids = candidates.item_ids
    if settings.diversity == "per_category":
        selected = _cap_per_category(
            item_ids, rows, context, settings.max_per_category, size
        )
    elif settings.diversity == "mmr":
        selected = _mmr(candidates, rows, context, settings.mmr_lambda, size)
    else:
        selected = list(rows[:size])
    return _reserve_new_item_slots(item_ids, selected, rows, context, settings, size)


def _category(item_id: str, context: RuleContext) -> str | None:
    attributes = context.attributes.get(item_id)
    return attributes.category_id if attributes is not None else None


def _cap_per_category(
    item_ids: Sequence[str],
    rows: Sequence[int],
    context: RuleContext,
    cap: int,
    size: int,
) -> list[int]:
    # A slate of at most ``cap`` items cannot break the cap.
    if cap >= size:
        return list(rows[:size])
    # Items without a known category are not limited, because no attribute
    # marks them as alike.
    attributes = context.attributes
    counts: dict[str, int] = {}
    selected = []
    for row in rows:
        found = attributes.get(item_ids[row])
        category = found.category_id if found is not None else None
        if category is not None:
            count = counts.get(category, 0)
            if count >= cap:
                continue
            counts[category] = count + 1
        selected.append(row)
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
    candidates: ScoredCandidates,
    rows: Sequence[int],
    context: RuleContext,
    weight: float,
    size: int,
) -> list[int]:
    """Maximal marginal relevance: trade score against similarity to picked items."""
    if not rows:
        return []
    item_ids = [candidates.item_ids[row] for row in rows]
    scores = np.array([candidates.scores[row] for row in rows])
    spread = float(scores.max() - scores.min()) or 1.0
    relevance = (scores - scores.min()) / spread
    remaining = list(range(len(rows)))
    picked: list[int] = []
    while remaining and len(picked) < size:
        best_index, best_value = remaining[0], -np.inf
        for index in remaining:
            redundancy = max(
                (
                    _similarity(item_ids[index], item_ids[other], context)
                    for other in picked
                ),
                default=0.0,
            )
            value = weight * relevance[index] - (1.0 - weight) * redundancy
            if value > best_value:
                best_index, best_value = index, value
        picked.append(best_index)
        remaining.remove(best_index)
    return [rows[index] for index in picked]


def _new_rows(
    item_ids: Sequence[str],
    rows: Sequence[int],
    context: RuleContext,
    settings: RuleSettings,
) -> list[int]:
    """Return the rows of little-seen items, in their order.

    An item counts as little-seen below ``new_item_max_views`` recent views.
    """
    views = context.item_views
    threshold = settings.new_item_max_views
    return [row for row in rows if views.get(item_ids[row], 0.0) < threshold]


def _reserve_new_item_slots(
    item_ids: Sequence[str],
    selected: list[int],
    rows: Sequence[int],
    context: RuleContext,
    settings: RuleSettings,
    size: int,
) -> list[int]:
    """Put the best little-seen items on the slate's last slots if none made it."""
    wanted = settings.new_item_slots - len(
        _new_rows(item_ids, selected, context, settings)
    )
    if wanted <= 0:
        return selected
    chosen = set(selected)
    newcomers = [
        row for row in _new_rows(item_ids, rows, context, settings) if row not in chosen
    ][:wanted]
    for newcomer in newcomers:
        trial = selected
        if len(trial) >= size:
            trial = _drop_last_established(item_ids, selected, context, settings)
        if len(trial) >= size:
            break
        if settings.diversity == "per_category" and _category_full(
            item_ids, newcomer, trial, context, settings.max_per_category
        ):
            continue
        selected = [*trial, newcomer]
    return selected


def _drop_last_established(
    item_ids: Sequence[str],
    selected: list[int],
    context: RuleContext,
    settings: RuleSettings,
) -> list[int]:
    views = context.item_views
    threshold = settings.new_item_max_views
    for index in range(len(selected) - 1, -1, -1):
        if not views.get(item_ids[selected[index]], 0.0) < threshold:
            return selected[:index] + selected[index + 1 :]
    return selected


def _category_full(
    item_ids: Sequence[str],
    newcomer: int,
    selected: Sequence[int],
    context: RuleContext,
    cap: int,
) -> bool:
    category = _category(item_ids[newcomer], context)
    if category is None:
        return False
    same = sum(_category(item_ids[row], context) == category for row in selected)
    return same >= cap
