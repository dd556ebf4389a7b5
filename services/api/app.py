"""The HTTP API: latest slates, event ingestion, health, readiness and metrics.

Routes:

- ``GET /v1/users/{user_id}/slates/{surface}``: the latest slate stored by
  the hot path, without the items that went out of stock since, or one
  computed now for a user who has none. Slates on the Kafka topics stay as
  they were computed. A slate without items, stored or computed, is a 200
  with an empty list; 404 means that there is no slate at all, and 503 that
  Redis failed. A stored slate that is not valid counts as none (see
  :mod:`services.api.slates`).
- ``POST /v1/events``: one event for producers that cannot speak Kafka. It is
  validated like any ``events`` message; a rejection goes to the dead-letter
  topic and the response is 422 with the reason, or 413 for a body over
  ``MAX_EVENT_BYTES``, whose first ``MAX_EVENT_BYTES`` make the dead letter
  (reason ``payload_too_large``). A body whose ``Content-Length`` is already
  over ``MAX_EVENT_BYTES`` gets its 413 within half a second, and its dead
  letter keeps only what arrived by then. The dead letter is keyed by
  the body's ``user_id`` when the body is a JSON object with a valid one, as
  the event would have been, and has no key otherwise. A dead letter that the
  broker does not confirm within ``CARTWHEEL_API_INGEST_TIMEOUT_SECONDS``
  changes no status: the event can never be accepted, so a 503 would only make
  clients send it again. The body's ``detail`` states what became of the dead
  letter instead. After a timeout, the producer keeps it queued and keeps
  trying to send it. Delivery is acknowledged
  (202) only after the broker stored the event; without an acknowledgement
  within ``CARTWHEEL_API_INGEST_TIMEOUT_SECONDS`` the response is 503. The
  event may have been stored all the same, so the client retries with the
  same ``event_id`` and the hot path drops the duplicate. A waiting post
  blocks no worker thread, so slate reads do not wait for the broker. A
  client that disconnects before the end of the body gets nothing stored or
  dead-lettered: the request is logged at DEBUG and measured with status 499.
- ``GET /healthz`` (the process runs, and its Kafka producer has not failed
  fatally), ``GET /readyz`` (Kafka and Redis respond, and no delivery failed
  recently; see :mod:`services.api.readiness`), ``GET /metrics`` (Prometheus
  text format). ``HEAD /healthz`` and ``HEAD /readyz`` return the status of
  their GET without a body.

Requests that Redis or the broker fail are logged per dependency through an
:class:`~services.common.outage.OutageLog`: a WARNING when the first one
fails, sparse reminders while they keep failing, and an INFO at the next
success. Each failed request's ids and error are logged at DEBUG.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

import redis
from confluent_kafka import KafkaException, Producer
from fastapi import FastAPI, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from schemas.deadletters import RejectionReason
from schemas.events import ID_PATTERN, MAX_ID_LENGTH, Event
from schemas.recommendations import Slate, Surface
from schemas.validation import MAX_EVENT_BYTES, Rejection, parse_event
from services.api.delivery import (
    Deliveries,
    TopicCheck,
    dead_letter_unconfirmed,
    delivery_state,
    flush_on_stop,
    unconfirmed,
)
from services.api.inputs import (
    DECLARED_TOO_LARGE_WAIT_SECONDS,
    dead_letter_key,
    read_capped,
    require_utf8_path,
)
from services.api.metrics import EVENTS_INGESTED, REQUEST_SECONDS, SLATE_READS
from services.api.ondemand import OnDemandSlates
from services.api.readiness import DeliveryOutcomes, Readiness, check_readiness
from services.api.settings import ApiSettings
from services.api.slates import SlateLookup
from services.common.deadletters import DeadLetterWriter
from services.common.kafka import is_fatal
from services.common.outage import OutageLog
from services.common.stop_request import StopRequest

__all__ = ["EventAccepted", "EventRejected", "Problem", "create_app"]

logger = logging.getLogger(__name__)

_HTTP_SOURCE_TOPIC = "http"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The status that nginx logs for a client that closed the connection before
# the response. No client reads it, so it only labels the request's metrics.
_CLIENT_CLOSED_REQUEST = 499
# uvicorn times out only idle keep-alive connections, so without this limit a
# client that sends its headers and then stalls would hold a request open.
_BODY_TIMEOUT_SECONDS = 30.0


_EVENT_UNCONFIRMED = (
    "The broker did not confirm the event within "
    "CARTWHEEL_API_INGEST_TIMEOUT_SECONDS, or the events topic is missing. "
    "An event whose delivery timed out may still be stored, so retry with "
    "the same event_id: the hot path drops duplicates."
)


_READINESS = (
    "Returns 200 when the API can serve slates and store events, and 503 "
    "with the reason in `kafka` or `redis` otherwise: Redis does not answer "
    "a PING, the broker does not list the events topic, or the latest "
    "delivery of an event or a dead letter failed or went unconfirmed less "
    "than `CARTWHEEL_API_READINESS_FAILURE_SECONDS` ago. A broker can list "
    "its topics and still confirm no write, so the last check takes such an "
    "instance out of rotation. It passes again as soon as a delivery "
    "succeeds, the late confirmation of an earlier event included, or once "
    "the failure is older than that window: an instance without traffic "
    "then comes back, and leaves again at the next failed delivery."
)


_DEAD_LETTER_UNCONFIRMED = (
    "The answer is the same when the broker does not confirm the dead letter "
    "within CARTWHEEL_API_INGEST_TIMEOUT_SECONDS, and its `detail` then says "
    "what became of the dead letter: after a timeout, the API's producer keeps "
    "it queued and keeps trying to send it. Fix the event rather than sending "
    "it again."
)
_EVENT_INVALID = (
    "The event failed validation and went to the dead-letter topic. The "
    "reason names the kind of fault and the message the field, the value and "
    f"the expected form. {_DEAD_LETTER_UNCONFIRMED}"
)
_EVENT_TOO_LARGE = (
    f"The body is larger than {MAX_EVENT_BYTES} bytes. Its first "
    f"{MAX_EVENT_BYTES} bytes went to the dead-letter topic with the reason "
    "payload_too_large. A body whose Content-Length is over the limit gets "
    f"its 413 within {DECLARED_TOO_LARGE_WAIT_SECONDS:g} s, and its dead letter "
    f"keeps only the bytes that arrived by then. {_DEAD_LETTER_UNCONFIRMED}"
)


class Problem(BaseModel):
    """An error response: what failed and what to do about it."""

    detail: str


class EventAccepted(BaseModel):
    """An event stored on the ``events`` topic."""

    event_id: str
    topic: str
    partition: int
    offset: int


class EventRejected(BaseModel):
    """An event that failed validation and went to the dead-letter topic."""

    reason: RejectionReason
    message: str
    detail: str | None = Field(
        default=None,
        description="Present only when the broker did not confirm the dead "
        "letter: what became of it.",
    )


class Health(BaseModel):
    """Liveness of the process."""

    status: Literal["ok"]


def create_app(
    settings: ApiSettings,
    *,
    redis_client: redis.Redis,
    producer: Producer,
    on_demand: OnDemandSlates | None = None,
    readiness_redis: redis.Redis | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """Build the FastAPI application over existing Redis and Kafka clients.

    Args:
        settings: the API settings.
        redis_client: where the hot path stores the latest slates.
        producer: the producer for ingested events and dead letters.
        on_demand: computes slates for users without one; None disables it.
        readiness_redis: the client that /readyz pings, whose socket timeouts
            should be ``readiness_timeout_seconds``; ``redis_client`` when None.
        clock: monotonic seconds, for the age of a failed delivery and the
            length of an outage.
    """
    # The handlers run on the event loop, and only they touch these two logs.
    redis_outage = OutageLog(
        logger,
        "redis",
        "slate request",
        consequence="slate requests answer 503",
        clock=clock,
    )
    kafka_outage = OutageLog(
        logger,
        "kafka",
        "event post",
        consequence=(
            "event posts go unconfirmed, and /readyz returns 503 until a "
            f"delivery succeeds or {settings.readiness_failure_seconds:g} s "
            "pass without another failure"
        ),
        clock=clock,
    )
    outcomes = DeliveryOutcomes(settings.readiness_failure_seconds, clock)
    deliveries = Deliveries(producer, outcomes, kafka_outage)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Serving reports from the start also serves librdkafka's log lines,
        # which reach the log only when the producer is polled.
        deliveries.start()
        yield
        deliveries.stop()
        await run_in_threadpool(flush_on_stop, producer, app.state.stop_request)

    app = FastAPI(
        title="Cartwheel",
        version="1",
        description="Real-time recommendations for online shops.",
        lifespan=lifespan,
    )
    # The server sets it on SIGINT or SIGTERM, so the flush at the end of the
    # lifespan counts its wait from the signal.
    app.state.stop_request = StopRequest(settings.kafka)
    dead_letters = DeadLetterWriter(producer, settings.topics.dead_letters, "api")
    topic_check = TopicCheck(
        producer,
        settings.topics.events,
        settings.readiness_timeout_seconds,
        kafka_outage,
    )
    # The first fatal producer error. Once there is one, /healthz fails so
    # that the process is restarted with a new producer.
    fatal_errors: list[str] = []

    def note_fatal(exc: Exception) -> None:
        if is_fatal(exc) and not fatal_errors:
            logger.critical("kafka producer failed fatally error=%s", exc)
            fatal_errors.append(str(exc))

    slates = SlateLookup(
        redis_client,
        settings.redis.key_prefix,
        on_demand if settings.is_on_demand_enabled else None,
        is_dropping_out_of_stock=settings.scorer.rules.exclude_out_of_stock,
    )

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
        finally:
            # An unhandled error becomes a 500 response outside this
            # middleware, so it is recorded as 500 here.
            route = request.scope.get("route")
            # Any text can be a method, so unknown ones share one label value.
            method = request.method if request.method in _METHODS else "other"
            REQUEST_SECONDS.labels(
                getattr(route, "path_format", "unmatched"), method, status
            ).observe(time.perf_counter() - started)
        return response

    @app.get(
        "/v1/users/{user_id:path}/slates/{surface}",
        response_model=Slate,
        responses={
            404: {
                "model": Problem,
                "description": "No slate: the hot path stored no valid one for "
                "the user on this surface, and none can be computed now",
            },
            503: {
                "model": Problem,
                "description": "Redis failed while reading the stored slate or "
                "computing one; retry",
            },
        },
        summary="Latest slate of a user on one surface",
        description="Returns the latest slate that the hot path stored, or one "
        "computed now when on-demand slates are on. A computed slate anchors on "
        "the user's newest event (the newest cart add for bundles, the newest "
        "click for reviews), or on the top trending item for a user without "
        "history, which gets products and promotions only.\n\n"
        "A slate may have no items, stored or computed alike, and is then "
        "answered with 200 and an empty `items` list. Promotions, for example, "
        "have items only while a promotion's time window contains the trigger's "
        "time, which is the user's newest event time or, without history, the "
        "time of the request, and the items of a stored slate that went out of "
        "stock since are left out.\n\n"
        "404 means that there is no slate: the hot path stored no valid one for "
        "the user on this surface, and none can be computed now, because on-demand "
        "slates are off (`CARTWHEEL_API_IS_ON_DEMAND_ENABLED`) or nothing "
        "anchors one, such as bundles for a user without a cart add, or reviews "
        "of an item that has none.",
    )
    async def latest_slate(
        request: Request,
        user_id: Annotated[
            str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
        ],
        surface: Surface,
    ) -> Any:
        require_utf8_path(request, user_id)
        try:
            raw = await slates.stored(user_id, surface)
            slate = None if raw is not None else await slates.computed(user_id, surface)
        except redis.RedisError as exc:
            logger.debug(
                "slate request failed user_id=%s surface=%s error=%s",
                user_id,
                surface.value,
                exc,
            )
            redis_outage.failed(exc)
            return JSONResponse(
                status_code=503,
                content={"detail": f"Redis did not answer: {exc}; retry"},
            )
        redis_outage.recovered()
        if raw is not None:
            SLATE_READS.labels(surface.value, "stored").inc()
            return Response(content=raw, media_type="application/json")
        if slate is not None:
            SLATE_READS.labels(surface.value, "computed").inc()
            return slate
        SLATE_READS.labels(surface.value, "none").inc()
        return JSONResponse(
            status_code=404,
            content={
                "detail": f"no {surface.value} slate for user {user_id!r}: the hot "
                "path has stored no valid one and none could be computed now"
            },
        )

    @app.post(
        "/v1/events",
        status_code=202,
        response_model=EventAccepted,
        responses={
            408: {
                "model": Problem,
                "description": "The request body did not arrive within "
                f"{_BODY_TIMEOUT_SECONDS:g} s. Nothing was published; send "
                "the event again.",
            },
            413: {"model": EventRejected, "description": _EVENT_TOO_LARGE},
            422: {"model": EventRejected, "description": _EVENT_INVALID},
            503: {"model": Problem, "description": _EVENT_UNCONFIRMED},
        },
        summary="Publish one shop event",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/Event"}
                    }
                },
            }
        },
    )
    async def post_event(request: Request) -> Any:
        try:
            raw, size = await asyncio.wait_for(
                read_capped(request, MAX_EVENT_BYTES), _BODY_TIMEOUT_SECONDS
            )
        except TimeoutError:
            logger.info(
                "event post dropped, the body did not arrive within %g s "
                "content_length=%s",
                _BODY_TIMEOUT_SECONDS,
                request.headers.get("content-length"),
            )
            return JSONResponse(
                status_code=408,
                content={
                    "detail": "the request body did not arrive within "
                    f"{_BODY_TIMEOUT_SECONDS:g} s; send it again, whole"
                },
            )
        except ClientDisconnect:
            # The body is incomplete and no client waits for a response, so the
            # event is neither published nor dead-lettered.
            logger.debug(
                "event post dropped, the client disconnected before the end of "
                "the body content_length=%s",
                request.headers.get("content-length"),
            )
            return Response(status_code=_CLIENT_CLOSED_REQUEST)
        if size is None:
            result = parse_event(raw)
        else:
            dead_letter_note = (
                f"the dead letter keeps the first {len(raw)}"
                if raw
                else "none of it arrived in time, so the dead letter is empty"
            )
            result = Rejection(
                RejectionReason.PAYLOAD_TOO_LARGE,
                f"request body is {size}; expected at most {MAX_EVENT_BYTES} "
                f"bytes ({dead_letter_note})",
            )
        if isinstance(result, Rejection):
            # raw_key records the input's own key, and a request has none.
            # A body cut at the size limit is not searched for a key.
            key = dead_letter_key(raw) if size is None else None
            letter = dead_letters.encode(
                result,
                raw_key=None,
                raw_value=raw,
                source_topic=_HTTP_SOURCE_TOPIC,
                source_partition=-1,
                source_offset=-1,
            )
            body = {"reason": result.reason.value, "message": result.message}
            try:
                await deliveries.deliver(
                    dead_letters.topic, key, letter, settings.ingest_timeout_seconds
                )
            except (KafkaException, BufferError) as exc:
                note_fatal(exc)
                logger.debug(
                    "dead letter %s reason=%s error=%s",
                    delivery_state(exc),
                    result.reason.value,
                    exc,
                )
                body["detail"] = dead_letter_unconfirmed(
                    exc, settings.ingest_timeout_seconds
                )
            else:
                dead_letters.record(result, _HTTP_SOURCE_TOPIC, -1, -1)
            EVENTS_INGESTED.labels("rejected").inc()
            return JSONResponse(status_code=_rejection_status(result), content=body)
        topic_problem = await topic_check.problem()
        if topic_problem is not None:
            EVENTS_INGESTED.labels("failed").inc()
            return JSONResponse(status_code=503, content={"detail": topic_problem})
        try:
            message = await deliveries.deliver(
                settings.topics.events,
                result.user_id.encode(),
                raw,
                settings.ingest_timeout_seconds,
            )
        except (KafkaException, BufferError) as exc:
            note_fatal(exc)
            EVENTS_INGESTED.labels("failed").inc()
            logger.debug(
                "event %s event_id=%s error=%s",
                delivery_state(exc),
                result.event_id,
                exc,
            )
            return JSONResponse(
                status_code=503,
                content={
                    "detail": unconfirmed(
                        "the event", exc, settings.ingest_timeout_seconds
                    )
                    + "; retry with the same event_id (duplicates are dropped)"
                },
            )
        EVENTS_INGESTED.labels("accepted").inc()
        return EventAccepted(
            event_id=result.event_id,
            topic=message.topic() or settings.topics.events,
            partition=message.partition() or 0,
            offset=message.offset() or 0,
        )

    @app.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Problem}},
        summary="Liveness",
    )
    async def healthz() -> Any:
        if fatal_errors:
            return JSONResponse(
                status_code=503,
                content={
                    "detail": f"the Kafka producer failed fatally ({fatal_errors[0]}); "
                    "restart the process"
                },
            )
        return Health(status="ok")

    @app.head(
        "/healthz",
        **_head_probe_docs(
            "/healthz", "Live", "The Kafka producer failed fatally; restart the process"
        ),
    )
    async def healthz_head() -> Response:
        return Response(status_code=503 if fatal_errors else 200)

    async def check_ready() -> Readiness:
        return await run_in_threadpool(
            check_readiness,
            settings,
            readiness_redis or redis_client,
            producer,
            outcomes,
        )

    @app.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness}},
        summary="Readiness: Kafka and Redis answer, and deliveries succeed",
        description=_READINESS,
    )
    async def readyz() -> Any:
        readiness = await check_ready()
        return JSONResponse(
            status_code=_readiness_status(readiness), content=readiness.model_dump()
        )

    @app.head(
        "/readyz",
        **_head_probe_docs(
            "/readyz", "Ready", "Not ready, and `GET /readyz` returns the reason"
        ),
    )
    async def readyz_head() -> Response:
        return Response(status_code=_readiness_status(await check_ready()))

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        summary="Prometheus metrics",
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        return Response(content=generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        # The event body is read raw (to dead-letter the exact bytes), so
        # FastAPI does not see its model; add it for the documented request body.
        event_schema = Event.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(event_schema.pop("$defs", {}))
        components["Event"] = event_schema
        app.openapi_schema = schema
    return app.openapi_schema


def _head_probe_docs(path: str, passed: str, failed: str) -> dict[str, Any]:
    """Return the OpenAPI options of a HEAD probe: statuses 200 and 503, no body."""
    return {
        "response_class": Response,
        "responses": {200: {"description": passed}, 503: {"description": failed}},
        "summary": f"Status of GET {path} without a body",
        "description": f"Runs the checks of `GET {path}` and returns its status "
        "without a body, for monitors that check with HEAD.",
    }


def _readiness_status(readiness: Readiness) -> int:
    """Return the HTTP status of a readiness check: 200 when ready, else 503."""
    return 200 if readiness.status == "ready" else 503


def _rejection_status(rejection: Rejection) -> int:
    """Return the status of a rejected event: 413 for its size, else 422."""
    if rejection.reason is RejectionReason.PAYLOAD_TOO_LARGE:
        return 413
    return 422
