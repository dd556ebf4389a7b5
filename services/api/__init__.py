"""The HTTP API: latest slates, event ingestion, health, readiness and metrics."""

from __future__ import annotations

from services.api.app import create_app
from services.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]
