"""The hot-path process stopping while its broker and Redis go down with its demo."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.killed_demo import kill_demo_parent

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="parent death signal is Linux only"
)
def test_hot_path_exits_0_without_traceback_when_its_demo_is_killed(
    tmp_path: Path,
) -> None:
    # The hot path gets SIGTERM in the middle of a batch, as redis-server dies
    # with its parent, while it waits for a broker killed a moment before:
    # its slate and producer flushes and its last commit meet a broker that
    # refuses connections.
    killed = kill_demo_parent("hotpath", tmp_path, broker_lead_seconds=1.0)

    assert killed.exit_status == 0, killed.log
    assert "stop requested signal=SIGTERM" in killed.log
    assert "hot path stopped topic=events" in killed.log
    assert "Traceback" not in killed.log
