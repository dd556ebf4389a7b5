"""Client library for site code that publishes shop events to Cartwheel."""

from __future__ import annotations

from services.client.producer import DeliveryReport, EventProducer

__all__ = ["DeliveryReport", "EventProducer"]
