"""Wire the API to Redis, Kafka and the slate builder, and serve it with uvicorn."""

from __future__ import annotations

import logging

import redis
import uvicorn
from confluent_kafka import Producer
from fastapi import FastAPI

from services.api.app import create_app
from services.api.ondemand import OnDemandSlates
from services.api.settings import ApiSettings
from services.common.errors import TopicMissingError
from services.common.kafka import producer_config
from services.common.model_watcher import ModelWatcher
from services.common.redis_features import FeatureStore
from services.scorer.protocols import ModelSource
from services.scorer.session_knn import SessionIndex
from services.scorer.slates import SlateBuilder
from services.scorer.store import RedisCandidateStore

__all__ = ["build_app", "serve"]

logger = logging.getLogger(__name__)

_MODEL_NAME = "ranker"


def build_app(settings: ApiSettings, *, models: ModelSource | None = None) -> FastAPI:
    """Create the clients and the application.

    Args:
        settings: the API settings.
        models: the trained ranker source; on-demand slates are ranked
            heuristically without it.
    """
    client = redis.Redis.from_url(settings.redis.url.get_secret_value())
    # Ingestion waits for each event's acknowledgement, so batching only adds delay.
    producer = Producer(producer_config(settings.kafka, linger_ms=0))
    on_demand = None
    if settings.is_on_demand_enabled:
        scorer = settings.scorer
        store = RedisCandidateStore(
            FeatureStore(client, settings.redis.key_prefix),
            cache_ttl_seconds=scorer.item_cache_ttl_seconds,
            cache_size=scorer.item_cache_size,
        )
        # LIMITATION(L-51): the API has no session index and no online models;
        # on-demand slates lack session-kNN candidates and River signals.
        sessions = SessionIndex(1, 1, 1)
        builder = SlateBuilder(store, sessions, scorer, models=models)
        on_demand = OnDemandSlates(builder, store, scorer)
    return create_app(
        settings, redis_client=client, producer=producer, on_demand=on_demand
    )


def serve(settings: ApiSettings) -> None:
    """Serve the API until interrupted; on-demand slates use the newest model."""
    watcher = ModelWatcher(settings.kafka, settings.topics.models, _MODEL_NAME)
    try:
        watcher.start()
        models: ModelWatcher | None = watcher
    except TopicMissingError as exc:
        logger.warning("on-demand slates use the heuristic ranker: %s", exc)
        models = None
    app = build_app(settings, models=models)
    try:
        # uvicorn's INFO lines show the bound address ("Uvicorn running on").
        # Access lines stay off because /metrics counts every request.
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="info",
            access_log=False,
        )
    finally:
        watcher.stop()
