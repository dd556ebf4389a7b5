"""Wire the API to Redis, Kafka and the slate builder, and serve it with uvicorn."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import redis
import uvicorn
from confluent_kafka import Producer
from fastapi import FastAPI

from services.api.app import create_app
from services.api.ondemand import OnDemandSlates
from services.api.sessions import SessionFollower, SharedSessionIndex
from services.api.settings import ApiSettings
from services.api.signals import CheckpointSignals
from services.common.errors import InvalidSettingsError
from services.common.interrupts import record_stop_signal
from services.common.kafka import producer_config
from services.common.model_watcher import ModelWatcher
from services.common.redis_check import verify_redis
from services.common.redis_features import FeatureStore
from services.common.stop_request import StopRequest
from services.scorer.protocols import ModelSource, SignalSource
from services.scorer.session_knn import SessionIndex
from services.scorer.slates import SlateBuilder
from services.scorer.store import RedisCandidateStore

__all__ = ["build_app", "serve"]

logger = logging.getLogger(__name__)

_MODEL_NAME = "ranker"


def build_app(
    settings: ApiSettings,
    *,
    models: ModelSource | None = None,
    sessions: SharedSessionIndex | None = None,
    signals: SignalSource | None = None,
) -> FastAPI:
    """Create the clients and the application.

    Args:
        settings: the API settings.
        models: the trained ranker source; on-demand slates are ranked
            heuristically without it.
        sessions: the session-kNN index that a ``SessionFollower`` fills.
            Without it, on-demand slates have no session-kNN candidates.
        signals: the online learner's signals. Without them, on-demand slates
            are scored without online signals.
    """
    client = redis.Redis.from_url(settings.redis.url.get_secret_value())
    # Ingestion waits for each event's acknowledgement, so batching only adds delay.
    # A thread polls the producer from the start (see services.api.app).
    producer = Producer(
        producer_config(settings.kafka, linger_ms=0, is_polled_steadily=True)
    )
    on_demand = None
    if settings.is_on_demand_enabled:
        scorer = settings.scorer
        store = RedisCandidateStore(
            FeatureStore(client, settings.redis.key_prefix),
            cache_ttl_seconds=scorer.item_cache_ttl_seconds,
            cache_size=scorer.item_cache_size,
        )
        # Without a followed index, session-kNN reads one that stays empty.
        index = sessions if sessions is not None else SessionIndex(1, 1, 1)
        builder = SlateBuilder(store, index, scorer, models=models, signals=signals)
        on_demand = OnDemandSlates(
            builder,
            store,
            scorer,
            session_key_of=sessions.session_key_of if sessions is not None else None,
        )
    # redis-py 8.2 waits 5 s for a reply by default, which would let /readyz
    # outlast its own timeout and a probe's.
    readiness_timeout = settings.readiness_timeout_seconds
    readiness_redis = redis.Redis.from_url(
        settings.redis.url.get_secret_value(),
        socket_timeout=readiness_timeout,
        socket_connect_timeout=readiness_timeout,
    )
    return create_app(
        settings,
        redis_client=client,
        producer=producer,
        on_demand=on_demand,
        readiness_redis=readiness_redis,
    )


def serve(settings: ApiSettings) -> None:
    """Serve the API until interrupted; on-demand slates use the newest model.

    On-demand slates also read the session-kNN index that a follower of the
    events topic fills, and the online signals of the learner's newest
    checkpoint, as the settings ask. A missing models or events topic does not
    stop the API: its reader waits for the topic in the background.

    Raises:
        InvalidSettingsError: the address cannot be bound. The message names
            ``CARTWHEEL_API_PORT`` and ``CARTWHEEL_API_HOST``.
    """
    listeners = _listen(settings.host, settings.port)
    verify_redis(settings.redis)
    watcher = ModelWatcher(
        settings.kafka,
        settings.topics.models,
        _MODEL_NAME,
        load_timeout_seconds=settings.scorer.model_load_timeout_seconds,
        retry_seconds=settings.scorer.model_retry_seconds,
        load_attempts=settings.scorer.model_load_attempts,
    )
    follower, signals = _on_demand_sources(settings)
    try:
        # Without a topic, each reader waits for it in its own thread, so an API
        # that starts before 'cartwheel topics create' picks the topics up.
        watcher.start(wait_for_topic=True)
        sessions = None
        if follower is not None:
            follower.start(wait_for_topic=True)
            sessions = follower.index
        if signals is not None:
            signals.start()
        app = build_app(settings, models=watcher, sessions=sessions, signals=signals)
        # Access lines stay off because /metrics counts every request.
        server = _Server(
            app.state.stop_request,
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                # uvicorn's lines follow the level that configure_logging
                # set, which 'cartwheel --log-level' chooses.
                log_level=logging.getLogger().getEffectiveLevel(),
                access_log=False,
            ),
        )
        # uvicorn prints no address for sockets it did not bind, so these
        # lines take its place, through its logger and format.
        for listener in listeners:
            host, port = listener.getsockname()[:2]
            logging.getLogger("uvicorn.error").info(
                "Cartwheel API running on http://%s (Press CTRL+C to quit)",
                _address(host, port),
            )
        server.run(sockets=listeners)
    finally:
        watcher.stop()
        if follower is not None:
            follower.stop()
        if signals is not None:
            signals.stop()
        for listener in listeners:
            listener.close()


def _on_demand_sources(
    settings: ApiSettings,
) -> tuple[SessionFollower | None, CheckpointSignals | None]:
    """Return the session follower and the signal source that settings ask for."""
    if not settings.is_on_demand_enabled:
        return None, None
    follower = None
    if settings.is_session_index_enabled:
        candidates = settings.scorer.candidates
        index = SharedSessionIndex(
            candidates.session_index_size,
            candidates.session_max_items,
            candidates.session_samples_per_item,
            max_total_items=candidates.session_index_items,
        )
        follower = SessionFollower(
            index,
            settings.kafka,
            settings.topics.events,
            warmup_events=candidates.session_warmup_events,
        )
    signals = None
    config = settings.signals
    if config.is_enabled:
        key = config.checkpoint_key
        signals = CheckpointSignals(
            config.checkpoint_dir,
            key.get_secret_value().encode() if key is not None else None,
            instance_name=config.instance_name,
            reload_interval_seconds=config.reload_interval_seconds,
        )
    return follower, signals


class _Server(uvicorn.Server):
    """A uvicorn server that returns after SIGINT or SIGTERM.

    uvicorn's ``Server.capture_signals`` (read in uvicorn 0.55) raises the
    captured signal again once the server has shut down, so the process would
    be killed by SIGTERM (exit status 143) or end with a KeyboardInterrupt
    traceback. The other services return after a graceful stop, and their
    entry points exit with 0, so the API does too. The signal also sets the
    app's stop request, from which the final flush of the producer counts
    its 10 s.
    """

    def __init__(self, stop_request: StopRequest, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stop_request = stop_request

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Only the main thread can set signal handlers, as in uvicorn.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            signum: signal.signal(signum, self._request_exit)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _request_exit(self, signum: int, frame: FrameType | None) -> None:
        logger.info("stop requested signal=%s", signal.Signals(signum).name)
        # cartwheel then ignores a repeated signal that comes after uvicorn returned.
        record_stop_signal(signum)
        self._stop_request.set()
        # A second SIGINT makes uvicorn stop without waiting for connections.
        # LIMITATION(L-93): it then skips the app's shutdown, and the dead
        # letters still queued in the producer may be lost.
        self.handle_exit(signum, frame)


def _listen(host: str, port: int) -> list[socket.socket]:
    """Bind a socket on every address ``host`` names, as uvicorn would.

    A name such as ``localhost`` may stand for 127.0.0.1 and ::1, and an empty
    host means every interface. A failure names the settings to change.
    """
    listeners: list[socket.socket] = []
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, address in dict.fromkeys(found):
            listener = socket.socket(family, kind, proto)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # Otherwise :: would also take the IPv4 port that 0.0.0.0 binds.
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
            listener.listen(2048)
    except OSError as exc:
        for listener in listeners:
            listener.close()
        raise InvalidSettingsError(
            f"cannot listen on {_address(host, port)}: {exc.strerror or exc}; set "
            "CARTWHEEL_API_PORT (or --port) to a free port, or CARTWHEEL_API_HOST "
            "(or --host) to an address of this machine"
        ) from exc
    return listeners


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
