"""Power laws: exact draws by rank, and the exponent of a rank-frequency curve.

The exponent fitted on a small sample's counts is lower than the exponent of
the law that produced them, because sorting noisy counts flattens the curve.
:func:`debiased_exponent` corrects for that by simulation: it finds the
exponent whose samples of the same size show the observed fitted value.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from array import array
from collections import Counter
from collections.abc import Iterable

import numpy as np

__all__ = [
    "PowerLaw",
    "debiased_exponent",
    "draw_cumulative",
    "power_law_exponent",
]

# The exponent is fitted on the ranks whose count is at least this, because
# the tail of ones and twos is flat in any finite sample.
_MIN_FIT_COUNT = 3
_MAX_FIT_RANKS = 1000
_MAX_EXPONENT = 3.0
_SIMULATIONS = 3
_STEP = 0.25


class PowerLaw:
    """Ranks 0 to ``count - 1`` drawn with weight ``(rank + 1)^-exponent``, exactly.

    The cumulative weights are kept in one array of doubles (8 bytes per
    rank), and a draw is a binary search in it.
    """

    def __init__(self, count: int, exponent: float) -> None:
        weights = np.arange(1, count + 1, dtype=np.float64) ** -exponent
        self.count = count
        self.cumulative = array("d", np.cumsum(weights).tobytes())

    def weight(self, rank: int) -> float:
        """Return the weight of ``rank``."""
        below = self.cumulative[rank - 1] if rank else 0.0
        return self.cumulative[rank] - below

    def draw(self, rng: random.Random) -> int:
        """Draw a rank."""
        return draw_cumulative(rng, self.cumulative)


def draw_cumulative(rng: random.Random, cumulative: array[float]) -> int:
    """Draw an index with probability proportional to its step in ``cumulative``."""
    target = rng.random() * cumulative[-1]
    return min(len(cumulative) - 1, bisect.bisect_right(cumulative, target))


def power_law_exponent(counts: Iterable[int]) -> float:
    """Return the slope ``s`` of ``count ~ rank^-s``, fitted in log-log space.

    Only ranks with a count of at least 3 enter the fit (at most 1000 of
    them), because the flat tail of ones and twos reflects the sample's size,
    not the shape. Returns 0.0 when fewer than 5 ranks qualify.
    """
    ranked = sorted(
        (count for count in counts if count >= _MIN_FIT_COUNT), reverse=True
    )
    ranked = ranked[:_MAX_FIT_RANKS]
    if len(ranked) < 5:
        return 0.0
    xs = [math.log(rank) for rank in range(1, len(ranked) + 1)]
    ys = [math.log(count) for count in ranked]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return max(0.0, -slope / spread)


def debiased_exponent(observed: float, draws: int, ranks: int, seed: int = 0) -> float:
    """Return the exponent whose samples fit to ``observed``, by bisection.

    Args:
        observed: :func:`power_law_exponent` of the real counts.
        draws: how many draws the real counts sum to.
        ranks: how many ranks (users, items, ...) the draws fell on.
        seed: seeds the simulated samples.

    Returns:
        An exponent of at least ``observed``. When ``observed`` is 0 (too
        few ranks to fit) or no simulated exponent up to 3 reaches it, it is
        ``observed`` itself.
    """
    if observed <= 0.0 or draws < 1 or ranks < 5:
        return observed
    # Walk up to an exponent whose samples fit at least ``observed``. A steep
    # law leaves too few ranks to fit (the fit is then 0), so the walk stops
    # there instead of jumping to the upper bound.
    low = high = observed
    while True:
        fitted = _simulated_fit(high, draws, ranks, seed)
        if fitted >= observed:
            break
        if fitted == 0.0 or high >= _MAX_EXPONENT:
            return observed
        low, high = high, high + _STEP
    for _ in range(8):
        middle = (low + high) / 2
        if _simulated_fit(middle, draws, ranks, seed) < observed:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _simulated_fit(exponent: float, draws: int, ranks: int, seed: int) -> float:
    law = PowerLaw(ranks, exponent)
    fits = []
    for index in range(_SIMULATIONS):
        rng = random.Random(f"debias-{seed}-{index}")
        counts = Counter(law.draw(rng) for _ in range(draws))
        fits.append(power_law_exponent(counts.values()))
    return statistics.fmean(fits)
