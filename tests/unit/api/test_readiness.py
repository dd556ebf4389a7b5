"""/readyz: a Redis that never replies, and the outcomes of Kafka deliveries."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from confluent_kafka import KafkaError

from services.api.app import create_app
from services.api.readiness import DeliveryOutcomes
from services.api.server import build_app
from services.api.settings import ApiSettings
from services.common.settings import KafkaSettings, RedisSettings
from tests.asgi import call_app


@pytest.fixture
def silent_redis_port() -> Iterator[int]:
    # The kernel completes the handshake for the backlog, and nothing reads.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_readyz_keeps_its_timeout_on_silent_redis(silent_redis_port: int) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        broker_port = closed.getsockname()[1]
    settings = ApiSettings(
        redis=RedisSettings(url=f"redis://127.0.0.1:{silent_redis_port}/0"),
        kafka=KafkaSettings(bootstrap=f"127.0.0.1:{broker_port}"),
        readiness_timeout_seconds=0.5,
        is_on_demand_enabled=False,
    )
    app = build_app(settings)

    async def get_readyz() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api"
        ) as client:
            return await client.get("/readyz")

    started = time.monotonic()
    answer = asyncio.run(get_readyz())
    elapsed = time.monotonic() - started

    assert answer.status_code == 503
    assert answer.json()["redis"].startswith("unreachable")
    # 0.5 s for Redis and 0.5 s for the broker, with room for a slow machine.
    assert elapsed < 3.0


class _Clock:
    """Monotonic seconds that move only when a test advances them."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_delivery_outcomes_have_no_problem_at_start() -> None:
    outcomes = DeliveryOutcomes(30.0, _Clock())

    assert outcomes.problem() is None


def test_delivery_failure_names_reason_and_age() -> None:
    clock = _Clock()
    outcomes = DeliveryOutcomes(30.0, clock)
    outcomes.record_failure("Local: Message timed out")
    clock.now += 4.0

    problem = outcomes.problem()

    assert problem == (
        "the latest delivery to Kafka failed 4 s ago (Local: Message timed out); "
        "this check passes once a delivery succeeds, or after 26 s without "
        "another failure"
    )


def test_delivery_success_clears_failure() -> None:
    outcomes = DeliveryOutcomes(30.0, _Clock())
    outcomes.record_failure("Local: Message timed out")

    outcomes.record_success()

    assert outcomes.problem() is None


def test_delivery_failure_ages_out_after_window() -> None:
    clock = _Clock()
    outcomes = DeliveryOutcomes(30.0, clock)
    outcomes.record_failure("Local: Message timed out")

    clock.now += 29.0
    problem_inside = outcomes.problem()
    clock.now += 1.0
    problem_after = outcomes.problem()

    assert problem_inside is not None
    assert problem_after is None


def test_later_failure_renews_window() -> None:
    clock = _Clock()
    outcomes = DeliveryOutcomes(30.0, clock)
    outcomes.record_failure("first")
    clock.now += 20.0
    outcomes.record_failure("second")
    clock.now += 20.0

    problem = outcomes.problem()

    assert problem is not None
    assert "(second)" in problem


class _PingingRedis:
    def ping(self) -> bool:
        return True

    def get(self, key: str) -> Any:
        return None


class _Broker:
    """A producer whose broker lists the events topic and reports as configured.

    ``outcome`` is ``"confirm"``, ``"fail"`` or ``"silent"``; a silent broker
    keeps each report until :meth:`confirm_late` serves it.
    """

    def __init__(self, outcome: str) -> None:
        self.outcome = outcome
        self.pending: list[Callable[..., None]] = []

    def list_topics(self, timeout: float) -> Any:
        return SimpleNamespace(topics={"events": SimpleNamespace(error=None)})

    def produce(self, topic: str, **kwargs: Any) -> None:
        report = kwargs["on_delivery"]
        message = SimpleNamespace(
            topic=lambda: topic, partition=lambda: 0, offset=lambda: 7
        )
        if self.outcome == "confirm":
            report(None, message)
        elif self.outcome == "fail":
            report(KafkaError(KafkaError._MSG_TIMED_OUT), message)
        else:
            self.pending.append(lambda: report(None, message))

    def confirm_late(self) -> None:
        for report in self.pending:
            report()
        self.pending.clear()

    def poll(self, timeout: float = 0.0) -> int:
        time.sleep(timeout)
        return 0


_CLICK = json.dumps(
    {
        "event_id": "e1",
        "event_type": "click",
        "user_id": "u1",
        "item_id": "i1",
        "event_time": "2019-10-01T00:00:00Z",
    }
)


def _api(broker: _Broker, clock: _Clock) -> Any:
    return create_app(
        ApiSettings(is_on_demand_enabled=False, ingest_timeout_seconds=0.2),
        redis_client=_PingingRedis(),  # type: ignore[arg-type]
        producer=broker,  # type: ignore[arg-type]
        clock=clock,
    )


def test_readyz_is_ready_after_confirmed_event() -> None:
    app = _api(_Broker("confirm"), _Clock())

    posted = call_app(app, "POST", "/v1/events", content=_CLICK)
    ready = call_app(app, "GET", "/readyz")

    assert posted.status_code == 202
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "kafka": "ok", "redis": "ok"}


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        ("fail", "(Local: Message timed out)"),
        ("silent", "(not confirmed by the broker within 0.2 s)"),
    ],
)
def test_readyz_is_503_after_failed_event_delivery(outcome: str, reason: str) -> None:
    app = _api(_Broker(outcome), _Clock())

    posted = call_app(app, "POST", "/v1/events", content=_CLICK)
    ready = call_app(app, "GET", "/readyz")

    assert posted.status_code == 503
    assert ready.status_code == 503
    assert ready.json()["status"] == "not_ready"
    assert ready.json()["redis"] == "ok"
    assert ready.json()["kafka"].startswith("the latest delivery to Kafka failed")
    assert reason in ready.json()["kafka"]


def test_readyz_is_503_after_failed_dead_letter_delivery() -> None:
    app = _api(_Broker("fail"), _Clock())

    posted = call_app(app, "POST", "/v1/events", content=b'{"event_type": "hover"}')
    ready = call_app(app, "GET", "/readyz")

    assert posted.status_code == 422
    assert ready.status_code == 503


def test_readyz_is_ready_after_later_delivery_succeeds() -> None:
    broker = _Broker("fail")
    app = _api(broker, _Clock())
    call_app(app, "POST", "/v1/events", content=_CLICK)
    broker.outcome = "confirm"

    posted = call_app(app, "POST", "/v1/events", content=_CLICK)
    ready = call_app(app, "GET", "/readyz")

    assert posted.status_code == 202
    assert ready.status_code == 200


def test_readyz_is_ready_after_late_confirmation() -> None:
    broker = _Broker("silent")
    app = _api(broker, _Clock())
    posted = call_app(app, "POST", "/v1/events", content=_CLICK)
    unready = call_app(app, "GET", "/readyz")

    broker.confirm_late()
    ready = call_app(app, "GET", "/readyz")

    assert posted.status_code == 503
    assert unready.status_code == 503
    assert ready.status_code == 200


def test_readyz_checks_topics_again_once_failure_ages_out() -> None:
    clock = _Clock()
    app = _api(_Broker("fail"), clock)
    call_app(app, "POST", "/v1/events", content=_CLICK)

    clock.now += 29.0
    inside = call_app(app, "GET", "/readyz")
    clock.now += 1.0
    after = call_app(app, "GET", "/readyz")

    assert inside.status_code == 503
    assert after.status_code == 200
    assert after.json()["kafka"] == "ok"


def test_openapi_describes_delivery_readiness() -> None:
    app = _api(_Broker("confirm"), _Clock())

    operation = app.openapi()["paths"]["/readyz"]["get"]

    assert "CARTWHEEL_API_READINESS_FAILURE_SECONDS" in operation["description"]
    assert "503" in operation["responses"]
