"""Replay public shop datasets and raw event files to Kafka (``cartwheel replay``)."""
