"""``cartwheel bench``: the hot path end to end on a synthetic, calibrated load."""

from __future__ import annotations

__all__: list[str] = []
