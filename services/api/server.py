"""Wire the API to Redis, Kafka and the slate builder, and serve it with uvicorn."""

from __future__ import annotations

import logging
import socket

import redis
import uvicorn
from confluent_kafka import Producer
from fastapi import FastAPI

from services.api.app import create_app
from services.api.ondemand import OnDemandSlates
from services.api.settings import ApiSettings
from services.common.errors import InvalidSettingsError, TopicMissingError
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
    """Serve the API until interrupted; on-demand slates use the newest model.

    Raises:
        InvalidSettingsError: the address cannot be bound. The message names
            ``CARTWHEEL_API_PORT`` and ``CARTWHEEL_API_HOST``.
    """
    listener = _listen(settings.host, settings.port)
    watcher = ModelWatcher(settings.kafka, settings.topics.models, _MODEL_NAME)
    try:
        try:
            watcher.start()
            models: ModelWatcher | None = watcher
        except TopicMissingError as exc:
            logger.warning("on-demand slates use the heuristic ranker: %s", exc)
            models = None
        app = build_app(settings, models=models)
        # Access lines stay off because /metrics counts every request.
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                log_level="info",
                access_log=False,
            )
        )
        host, port = listener.getsockname()[:2]
        url_host = f"[{host}]" if ":" in host else host
        # uvicorn prints no address for a socket it did not bind, so this line
        # takes its place, through its logger and format.
        logging.getLogger("uvicorn.error").info(
            "Cartwheel API running on http://%s:%d (Press CTRL+C to quit)",
            url_host,
            port,
        )
        server.run(sockets=[listener])
    finally:
        watcher.stop()
        listener.close()


def _listen(host: str, port: int) -> socket.socket:
    """Bind the API's socket, so that a failure names the settings to change."""
    listener = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
        return listener
    except OSError as exc:
        if listener is not None:
            listener.close()
        raise InvalidSettingsError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; set "
            "CARTWHEEL_API_PORT (or --port) to a free port, or CARTWHEEL_API_HOST "
            "(or --host) to an address of this machine"
        ) from exc
