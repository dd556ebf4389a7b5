"""Run the catalog consumer: ``python -m services.features``.

Load settings, configure logging, serve /metrics, then consume the catalog
topic until SIGINT or SIGTERM.
"""

from __future__ import annotations

import logging
import sys

import redis
from confluent_kafka import Consumer, Producer

from services.common.entrypoint import parse_service_arguments, run_entry_point
from services.common.kafka import TopicSpec, producer_config, verify_topics
from services.common.lifecycle import serve_metrics, stop_on_signals
from services.common.logging import configure_logging
from services.common.redis_check import verify_redis
from services.common.settings import load_settings, masked_settings
from services.features.catalog import CatalogWriter
from services.features.consumer import CatalogConsumer, catalog_consumer_config
from services.features.marker import CatalogMarker
from services.features.settings import CatalogSettings

__all__ = ["main", "run"]

logger = logging.getLogger(__name__)


def run(settings: CatalogSettings) -> None:
    """Serve /metrics and store catalog records until SIGINT or SIGTERM."""
    logger.info("catalog consumer starting settings=%s", masked_settings(settings))
    topics = settings.topics
    verify_topics(
        settings.kafka,
        [
            TopicSpec(topics.catalog, topics.partitions, is_compacted=True),
            TopicSpec(topics.dead_letters, topics.partitions),
        ],
    )
    verify_redis(settings.redis)
    serve_metrics(settings, settings.metrics_port, settings.metrics_host)
    client = redis.Redis.from_url(settings.redis.url.get_secret_value())
    writer = CatalogWriter(
        client, settings.redis.key_prefix, settings.catalog_ttl_seconds
    )
    marker = CatalogMarker(
        client, settings.redis.key_prefix, topics.catalog, settings.group_id
    )
    consumer = CatalogConsumer(
        settings,
        Consumer(catalog_consumer_config(settings)),
        # The consumer polls its dead-letter producer on every batch and every
        # idle poll, so librdkafka's lines can go to the logger.
        Producer(producer_config(settings.kafka, is_polled_steadily=True)),
        writer,
        marker,
    )

    stop_on_signals(consumer.stop)
    consumer.run()


def main() -> None:
    """Load the settings from the environment and run the catalog consumer."""
    settings = load_settings(CatalogSettings)
    configure_logging(settings.log_level)
    run(settings)


if __name__ == "__main__":
    parse_service_arguments("services.features", __doc__)
    sys.exit(run_entry_point("services.features", main))
