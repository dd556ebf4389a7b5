"""The HTTP API: latest slates, event ingestion, health, readiness and metrics.

The application is built by :func:`services.api.app.create_app`; this package
imports only the settings, so reading them does not load PyTorch or River.
"""

from __future__ import annotations

from services.api.settings import ApiSettings

__all__ = ["ApiSettings"]
