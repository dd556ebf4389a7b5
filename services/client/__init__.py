"""Client library for site code: publish shop events, consume recommendation slates."""

from __future__ import annotations

from services.client.consumer import SlateConsumer
from services.client.producer import DeliveryReport, EventProducer

__all__ = ["DeliveryReport", "EventProducer", "SlateConsumer"]
