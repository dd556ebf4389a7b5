from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from services.bench.powerlaw import PowerLaw, debiased_exponent, power_law_exponent
from services.bench.profile import LoadProfile, fit_profile
from services.replay.datasets import REES46_SAMPLE, rees46


def test_power_law_exponent_recovers_slope_of_exact_counts() -> None:
    counts = [round(100_000 * rank**-0.8) for rank in range(1, 500)]

    assert power_law_exponent(counts) == pytest.approx(0.8, abs=0.01)


def test_exponent_zero_with_few_ranks() -> None:
    assert power_law_exponent([50, 20, 9, 1, 1, 1]) == 0.0


def test_debiased_exponent_recovers_law_behind_small_sample() -> None:
    law = PowerLaw(5000, 0.8)
    rng = random.Random(7)
    counts = Counter(law.draw(rng) for _ in range(12_000))
    observed = power_law_exponent(counts.values())

    corrected = debiased_exponent(observed, 12_000, 5000)

    assert observed < 0.78
    assert corrected == pytest.approx(0.8, abs=0.04)


def test_fit_profile_measures_rees46_funnel(rees46_profile: LoadProfile) -> None:
    # 11,313 clicks, 110 cart adds and 139 purchases in the committed sample.
    assert rees46_profile.sample_events == 11_562
    assert rees46_profile.cart_per_click == pytest.approx(110 / 11_313)
    assert 0.0 < rees46_profile.purchase_after_cart <= 1.0
    assert rees46_profile.direct_purchase_per_click > 0.0


def test_fit_profile_session_lengths_sum_to_one(rees46_profile: LoadProfile) -> None:
    assert sum(rees46_profile.session_length_weights) == pytest.approx(1.0)
    assert rees46_profile.mean_session_length == pytest.approx(11_562 / 3584)


def test_fit_profile_gap_quantiles_are_sorted(rees46_profile: LoadProfile) -> None:
    gaps = rees46_profile.gap_quantiles_seconds

    assert len(gaps) == 101
    assert gaps == sorted(gaps)


def test_fit_profile_locality_shares_are_probabilities(
    rees46_profile: LoadProfile,
) -> None:
    assert 0.0 < rees46_profile.repeat_click < 1.0
    assert 0.0 < rees46_profile.same_category < 1.0


def test_fit_profile_corrects_exponents_upwards(rees46_profile: LoadProfile) -> None:
    assert rees46_profile.item_exponent > rees46_profile.item_exponent_observed > 0.0


def test_profile_round_trips_through_json(rees46_profile: LoadProfile) -> None:
    document = json.loads(rees46_profile.model_dump_json())

    assert LoadProfile.model_validate(document) == rees46_profile


def test_fit_profile_rejects_datasets_without_events() -> None:
    empty = rees46.load(REES46_SAMPLE)
    empty.events = []

    with pytest.raises(ValueError, match="no events"):
        fit_profile([empty])
