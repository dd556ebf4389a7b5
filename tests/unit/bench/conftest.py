from __future__ import annotations

import pytest

from services.bench.profile import LoadProfile, fit_profile
from services.replay.datasets import REES46_SAMPLE, rees46


@pytest.fixture(scope="session")
def rees46_profile() -> LoadProfile:
    return fit_profile([rees46.load(REES46_SAMPLE)])
