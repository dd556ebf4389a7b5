"""The API's log lines and responses while Redis or the broker fails requests.

Stub clients stand in for Redis and the broker, and an injected clock for time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from confluent_kafka import KafkaError, KafkaException
from fastapi import FastAPI

from schemas.recommendations import Slate, Surface
from services.api.app import create_app
from services.api.settings import ApiSettings
from tests.asgi import call_app

LOGGER = "services.api.app"
REFUSED = "Error 111 connecting to 127.0.0.1:6390. Connection refused."

_CLICK = json.dumps(
    {
        "event_id": "kout-1",
        "event_type": "click",
        "user_id": "u1",
        "item_id": "i1",
        "event_time": "2019-10-01T00:00:00Z",
    }
)
_INVALID = b'{"event_id": "dlqtest-1", "event_type": "clack"}'
_SLATES = "/v1/users/u1/slates/products"
_EVENTS = "/v1/events"


class _Clock:
    """Monotonic seconds that move only when a test moves them."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class _Redis:
    """A Redis without slates that refuses connections while ``is_down``."""

    def __init__(self) -> None:
        self.is_down = True

    def get(self, key: str) -> Any:
        if self.is_down:
            raise redis.ConnectionError(REFUSED)
        return None


class _Broker:
    """A producer that lists the events topic and confirms, fails or stays silent.

    ``outcome`` is ``"confirm"``, ``"fail"`` or ``"silent"``.
    """

    def __init__(self, outcome: str) -> None:
        self.outcome = outcome
        self.topics: list[str] = []

    def list_topics(self, timeout: float) -> Any:
        return SimpleNamespace(topics={"events": SimpleNamespace(error=None)})

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.topics.append(topic)
        message = SimpleNamespace(
            topic=lambda: topic, partition=lambda: 0, offset=lambda: 7
        )
        if self.outcome == "confirm":
            kwargs["on_delivery"](None, message)
        elif self.outcome == "fail":
            error = KafkaError(KafkaError._MSG_TIMED_OUT, "Local: Message timed out")
            kwargs["on_delivery"](error, message)

    def poll(self, timeout: float = 0.0) -> int:
        time.sleep(timeout)
        return 0


class _OnDemand:
    """On-demand slates whose every computation fails to connect to Redis."""

    def compute(self, user_id: str, surface: Surface) -> Slate | None:
        raise redis.ConnectionError(REFUSED)


def _app(
    *,
    redis_client: object = None,
    producer: object = None,
    on_demand: object = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    return create_app(
        ApiSettings(
            is_on_demand_enabled=on_demand is not None, ingest_timeout_seconds=0.2
        ),
        redis_client=redis_client or _Redis(),  # type: ignore[arg-type]
        producer=producer or _Broker("confirm"),  # type: ignore[arg-type]
        on_demand=on_demand,  # type: ignore[arg-type]
        clock=clock,
    )


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == level
    ]


def test_slate_requests_during_redis_outage_warn_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = _app()

    with caplog.at_level(logging.INFO, logger=LOGGER):
        answers = [call_app(app, "GET", _SLATES) for _ in range(5)]

    assert [answer.status_code for answer in answers] == [503] * 5
    assert answers[0].json() == {"detail": f"Redis did not answer: {REFUSED}; retry"}
    assert _lines(caplog, logging.WARNING) == [
        f"redis failed, slate requests answer 503 error={REFUSED}"
    ]
    assert _lines(caplog, logging.ERROR) == []


def test_slate_request_failure_names_user_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = _app()

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        call_app(app, "GET", "/v1/users/u7/slates/bundles")

    assert f"slate request failed user_id=u7 surface=bundles error={REFUSED}" in _lines(
        caplog, logging.DEBUG
    )


def test_slate_outage_of_a_minute_logs_reminder(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    app = _app(clock=clock)
    call_app(app, "GET", _SLATES)
    clock.now += 60.0
    caplog.clear()

    with caplog.at_level(logging.INFO, logger=LOGGER):
        call_app(app, "GET", _SLATES)

    assert _lines(caplog, logging.WARNING) == [
        "redis still failing, slate requests answer 503 failing_seconds=60.0 "
        f"failed_attempts=2 error={REFUSED}"
    ]


def test_slate_request_after_redis_outage_logs_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    redis_client = _Redis()
    app = _app(redis_client=redis_client, clock=clock)
    for _ in range(3):
        call_app(app, "GET", _SLATES)
    clock.now += 12.5
    redis_client.is_down = False
    caplog.clear()

    with caplog.at_level(logging.INFO, logger=LOGGER):
        answers = [call_app(app, "GET", _SLATES) for _ in range(2)]

    assert [answer.status_code for answer in answers] == [404, 404]
    assert _lines(caplog, logging.INFO) == [
        "redis recovered, slate request succeeded failing_seconds=12.5 "
        "failed_attempts=3"
    ]


def test_on_demand_slate_without_redis_is_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis_client = _Redis()
    redis_client.is_down = False
    app = _app(redis_client=redis_client, on_demand=_OnDemand())

    with caplog.at_level(logging.INFO, logger=LOGGER):
        answers = [call_app(app, "GET", _SLATES) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [503] * 3
    assert answers[0].json()["detail"].startswith("Redis did not answer")
    assert _lines(caplog, logging.WARNING) == [
        f"redis failed, slate requests answer 503 error={REFUSED}"
    ]


def test_event_posts_during_broker_outage_warn_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = _app(producer=_Broker("fail"))

    with caplog.at_level(logging.INFO, logger=LOGGER):
        answers = [call_app(app, "POST", _EVENTS, content=_CLICK) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [503] * 3
    [warning] = _lines(caplog, logging.WARNING)
    assert warning.startswith(
        "kafka failed, event posts go unconfirmed, and /readyz returns 503 until a "
        "delivery succeeds or 30 s pass without another failure error="
    )
    assert "Local: Message timed out" in warning
    assert _lines(caplog, logging.ERROR) == []


def test_unconfirmed_event_logged_as_maybe_stored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = _app(producer=_Broker("silent"))

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        call_app(app, "POST", "/v1/events", content=_CLICK)

    [line] = [m for m in _lines(caplog, logging.DEBUG) if "event_id=" in m]
    assert line.startswith(
        "event not confirmed, may or may not be stored event_id=kout-1 error="
    )
    assert "_MSG_TIMED_OUT" in line
    assert "not confirmed by the broker within 0.2 s" in line


def test_event_post_after_broker_outage_logs_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    broker = _Broker("fail")
    app = _app(producer=broker, clock=clock)
    call_app(app, "POST", "/v1/events", content=_CLICK)
    call_app(app, "POST", "/v1/events", content=_INVALID)
    clock.now += 8.0
    broker.outcome = "confirm"
    caplog.clear()

    with caplog.at_level(logging.INFO, logger=LOGGER):
        accepted = call_app(app, "POST", "/v1/events", content=_CLICK)

    assert accepted.status_code == 202
    assert _lines(caplog, logging.INFO) == [
        "kafka recovered, event post succeeded failing_seconds=8.0 failed_attempts=2"
    ]


def test_invalid_event_with_unconfirmed_dead_letter_is_422(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = _Broker("silent")
    app = _app(producer=broker)

    with caplog.at_level(logging.INFO, logger=LOGGER):
        answer = call_app(app, "POST", "/v1/events", content=_INVALID)

    assert answer.status_code == 422
    assert answer.json()["reason"] == "unknown_event_type"
    assert "'clack'" in answer.json()["message"]
    assert answer.json()["detail"] == (
        "the broker did not confirm the dead letter within 0.2 s, so it may or "
        "may not be stored; the API's producer keeps it queued and keeps trying "
        "to send it"
    )
    assert broker.topics == ["events.dlq"]
    [warning] = _lines(caplog, logging.WARNING)
    assert warning.startswith(
        "kafka failed, event posts go unconfirmed, and /readyz returns 503 until a "
        "delivery succeeds or 30 s pass without another failure error="
    )


def test_confirmed_dead_letter_adds_no_detail() -> None:
    app = _app(producer=_Broker("confirm"))

    answer = call_app(app, "POST", "/v1/events", content=_INVALID)

    assert answer.status_code == 422
    assert set(answer.json()) == {"reason", "message"}


def test_unconfirmed_dead_letter_logged_with_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = _app(producer=_Broker("silent"))

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        call_app(app, "POST", "/v1/events", content=_INVALID)

    [line] = [m for m in _lines(caplog, logging.DEBUG) if "reason=" in m]
    assert line.startswith(
        "dead letter not confirmed, may or may not be stored "
        "reason=unknown_event_type error="
    )


def test_openapi_documents_unconfirmed_dead_letter() -> None:
    app = _app()

    responses = app.openapi()["paths"]["/v1/events"]["post"]["responses"]

    for status in ("413", "422"):
        assert "does not confirm the dead letter" in responses[status]["description"]
    rejected = app.openapi()["components"]["schemas"]["EventRejected"]
    assert "detail" in rejected["properties"]
    assert "detail" not in rejected.get("required", [])


class _SilentMetadataBroker(_Broker):
    """A broker that responds to no metadata request, so no topic check passes."""

    def list_topics(self, timeout: float) -> Any:
        raise KafkaException(
            KafkaError(
                KafkaError._TIMED_OUT, "Failed to get metadata: Local: Timed out"
            )
        )


def test_topic_checks_during_broker_outage_warn_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = _app(producer=_SilentMetadataBroker("confirm"))

    with caplog.at_level(logging.INFO):
        answers = [call_app(app, "POST", _EVENTS, content=_CLICK) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [503] * 3
    assert [m for m in caplog.messages if "metadata" in m] == [
        "kafka failed, event posts go unconfirmed, and /readyz returns 503 until a "
        "delivery succeeds or 30 s pass without another failure "
        "error=KafkaError{code=_TIMED_OUT,"
        'val=-185,str="Failed to get metadata: Local: Timed out"}'
    ]
