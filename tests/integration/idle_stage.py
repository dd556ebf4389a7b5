"""A hot-path stage that does nothing, for tests of the feature store alone.

The hot path needs at least one stage, so a test that runs it as a process
and checks only the state in Redis names :func:`build` in
``CARTWHEEL_HOTPATH_STAGES``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.hotpath.stages import AppliedEvent


class IdleStage:
    """A stage that leaves every batch to the feature store."""

    name = "idle"

    def process(self, batch: Sequence[AppliedEvent]) -> None:
        """Do nothing: the state under test is the feature store's."""

    def close(self) -> None:
        """Do nothing: the stage has no resources to release."""


def build(settings: Any, client: Any) -> IdleStage:
    """Return an idle stage, ignoring the hot-path settings and the client."""
    return IdleStage()
