"""The API's metrics and liveness, with stub clients: no broker or Redis is reached."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import redis
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import REGISTRY

from schemas.deadletters import DeadLetter
from schemas.events import MAX_ID_LENGTH, Event, EventType
from schemas.recommendations import Slate, Surface
from schemas.validation import MAX_EVENT_BYTES
from services.api import app as app_module
from services.api import slates as slates_module
from services.api.app import create_app
from services.api.metrics import INVALID_SLATES
from services.api.settings import ApiSettings
from tests.slate_messages import slate_document


class _BrokenRedis:
    def get(self, key: str) -> Any:
        raise RuntimeError("storage failed")


def _count(status: str) -> float:
    value = REGISTRY.get_sample_value(
        "cartwheel_api_request_seconds_count",
        {
            "route": "/v1/users/{user_id}/slates/{surface}",
            "method": "GET",
            "status": status,
        },
    )
    return value or 0.0


class _FailedProducer:
    """A producer whose every delivery fails with a fatal error."""

    def __init__(self) -> None:
        self._callbacks: list[Any] = []

    def list_topics(self, timeout: float) -> Any:
        return SimpleNamespace(topics={"events": SimpleNamespace(error=None)})

    def produce(self, topic: str, **kwargs: Any) -> None:
        self._callbacks.append(kwargs["on_delivery"])

    def poll(self, timeout: float = 0.0) -> int:
        time.sleep(timeout)
        return self.flush()

    def flush(self, timeout: float = 0.0) -> int:
        fatal = KafkaError(KafkaError._FATAL, "sequence numbers lost", fatal=True)
        for callback in self._callbacks:
            callback(fatal, SimpleNamespace(topic=lambda: "events"))
        self._callbacks.clear()
        return 0


_CLICK = Event(
    event_id="e1",
    event_type=EventType.CLICK,
    user_id="u1",
    item_id="i1",
    event_time=datetime(2019, 10, 1, tzinfo=UTC),
).model_dump_json()


async def _request(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        return await client.request(method, path, **kwargs)


def test_unhandled_error_is_counted_as_500() -> None:
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_BrokenRedis(),  # type: ignore[arg-type]
        producer=object(),  # type: ignore[arg-type]
    )
    before = _count("500")

    answer = asyncio.run(_request(app, "GET", "/v1/users/u1/slates/products"))

    assert answer.status_code == 500
    assert _count("500") == before + 1


def test_fatal_producer_error_fails_liveness() -> None:
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_BrokenRedis(),  # type: ignore[arg-type]
        producer=_FailedProducer(),  # type: ignore[arg-type]
    )
    posted = asyncio.run(_request(app, "POST", "/v1/events", content=_CLICK))
    health = asyncio.run(_request(app, "GET", "/healthz"))

    assert posted.status_code == 503
    assert health.status_code == 503
    assert "restart the process" in health.json()["detail"]


class _DownRedis:
    def get(self, key: str) -> Any:
        raise redis.ConnectionError("Connection refused")


def test_slate_read_without_redis_is_503() -> None:
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_DownRedis(),  # type: ignore[arg-type]
        producer=object(),  # type: ignore[arg-type]
    )

    answer = asyncio.run(_request(app, "GET", "/v1/users/u1/slates/products"))

    assert answer.status_code == 503
    assert "Redis did not answer" in answer.json()["detail"]


def test_unknown_methods_share_one_label() -> None:
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_BrokenRedis(),  # type: ignore[arg-type]
        producer=object(),  # type: ignore[arg-type]
    )

    asyncio.run(_request(app, "BREW", "/healthz"))

    labels = {"route": "/healthz", "method": "BREW", "status": "405"}
    assert (
        REGISTRY.get_sample_value("cartwheel_api_request_seconds_count", labels) is None
    )
    assert REGISTRY.get_sample_value(
        "cartwheel_api_request_seconds_count", {**labels, "method": "other"}
    )


class _SilentProducer:
    """A producer whose broker is silent: no delivery is ever reported."""

    def __init__(self) -> None:
        self.topic_checks = 0

    def list_topics(self, timeout: float) -> Any:
        self.topic_checks += 1
        time.sleep(0.2)
        return SimpleNamespace(topics={"events": SimpleNamespace(error=None)})

    def produce(self, topic: str, **kwargs: Any) -> None:
        pass

    def poll(self, timeout: float = 0.0) -> int:
        time.sleep(timeout)
        return 0


class _EmptyRedis:
    def get(self, key: str) -> Any:
        return None


def test_waiting_event_posts_leave_threads_for_slate_reads() -> None:
    # More posts than the worker threads (40) wait for the silent broker at once.
    producer = _SilentProducer()
    app = create_app(
        ApiSettings(is_on_demand_enabled=False, ingest_timeout_seconds=3.0),
        redis_client=_EmptyRedis(),  # type: ignore[arg-type]
        producer=producer,  # type: ignore[arg-type]
    )

    async def scenario() -> tuple[list[int], int, bool]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            posts = [
                asyncio.create_task(c.post("/v1/events", content=_CLICK))
                for _ in range(60)
            ]
            await asyncio.sleep(0.5)
            read = await c.get("/v1/users/u1/slates/products")
            posts_pending = not any(post.done() for post in posts)
            answers = await asyncio.gather(*posts)
        return [a.status_code for a in answers], read.status_code, posts_pending

    statuses, read_status, posts_pending = asyncio.run(scenario())

    assert read_status == 404
    assert posts_pending
    assert statuses == [503] * 60
    assert producer.topic_checks == 1


def test_event_post_timeout_message() -> None:
    app = create_app(
        ApiSettings(is_on_demand_enabled=False, ingest_timeout_seconds=0.2),
        redis_client=_EmptyRedis(),  # type: ignore[arg-type]
        producer=_SilentProducer(),  # type: ignore[arg-type]
    )

    answer = asyncio.run(_request(app, "POST", "/v1/events", content=_CLICK))

    assert answer.status_code == 503
    assert answer.json()["detail"] == (
        "the broker did not confirm the event within 0.2 s, so it may or may "
        "not be stored; retry with the same event_id (duplicates are dropped)"
    )


def test_event_post_failure_message() -> None:
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_EmptyRedis(),  # type: ignore[arg-type]
        producer=_FailedProducer(),  # type: ignore[arg-type]
    )

    answer = asyncio.run(_request(app, "POST", "/v1/events", content=_CLICK))

    detail = answer.json()["detail"]
    assert detail.startswith("the broker did not confirm the event (")
    assert "sequence numbers lost" in detail
    assert detail.endswith(
        "so it may or may not be stored; retry with the same event_id "
        "(duplicates are dropped)"
    )


class _RecordingProducer:
    """A producer whose broker stores every message at once."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes | None, bytes]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.messages.append((topic, kwargs["key"], kwargs["value"]))
        kwargs["on_delivery"](None, SimpleNamespace())

    def poll(self, timeout: float = 0.0) -> int:
        time.sleep(timeout)
        return 0


def _dead_letter_of(body: bytes) -> tuple[bytes | None, DeadLetter]:
    """Post ``body`` and return the key and value of the dead letter produced."""
    producer = _RecordingProducer()
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_EmptyRedis(),  # type: ignore[arg-type]
        producer=producer,  # type: ignore[arg-type]
    )

    answer = asyncio.run(_request(app, "POST", "/v1/events", content=body))

    assert answer.status_code == (413 if len(body) > MAX_EVENT_BYTES else 422)
    [(topic, key, value)] = producer.messages
    assert topic == "events.dlq"
    return key, DeadLetter.model_validate_json(value)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"user_id": "u1", "event_type": "hover"}', b"u1"),
        (b'{"user_id": "caf\\u00e9"}', "café".encode()),
        (f'{{"user_id": "{"u" * MAX_ID_LENGTH}"}}'.encode(), b"u" * MAX_ID_LENGTH),
    ],
    ids=["invalid_event", "escaped_non_ascii", "longest_id"],
)
def test_dead_letter_keyed_by_user_id(body: bytes, key: bytes) -> None:
    dead_letter_key, letter = _dead_letter_of(body)

    assert dead_letter_key == key
    assert letter.raw_key_base64 is None


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"",
        b'["u1"]',
        b'"u1"',
        b'{"event_type": "click"}',
        b'{"user_id": 42}',
        b'{"user_id": null}',
        b'{"user_id": ""}',
        f'{{"user_id": "{"u" * (MAX_ID_LENGTH + 1)}"}}'.encode(),
        b'{"user_id": "\\ud800"}',
        b"[" * 5000,
        # Valid JSON in the kept prefix, but the body is over the size limit.
        b'{"user_id": "u1"}' + b" " * 20_000,
        b'{"user_id": "first", "user_id": "second"}',
        b'{"user_id": "u1", "user_\\u0069d": "u2"}',
        b'{"user_id": "u\\u001f1"}',
        b'{"user_id": "u1\\n"}',
        b'{"user_id": "   "}',
    ],
    ids=[
        "not_json",
        "not_utf8",
        "empty",
        "array",
        "string",
        "missing",
        "number",
        "null",
        "empty_id",
        "id_too_long",
        "lone_surrogate",
        "deep_nesting",
        "too_large",
        "repeated_id",
        "repeated_escaped_id",
        "control_character_id",
        "id_with_newline",
        "blank_id",
    ],
)
def test_dead_letter_unkeyed_without_valid_user_id(body: bytes) -> None:
    dead_letter_key, letter = _dead_letter_of(body)

    assert dead_letter_key is None
    assert letter.raw_key_base64 is None


def test_oversized_event_post_is_413_with_reason() -> None:
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_EmptyRedis(),  # type: ignore[arg-type]
        producer=_RecordingProducer(),  # type: ignore[arg-type]
    )
    body = b'{"event_id": "' + b"x" * MAX_EVENT_BYTES + b'"}'

    answer = asyncio.run(_request(app, "POST", "/v1/events", content=body))

    assert answer.status_code == 413
    assert answer.json() == {
        "reason": "payload_too_large",
        "message": f"request body is {len(body)} bytes; expected at most "
        f"{MAX_EVENT_BYTES} bytes (the dead letter keeps the first "
        f"{MAX_EVENT_BYTES})",
    }


def test_oversized_content_length_is_413() -> None:
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_EmptyRedis(),  # type: ignore[arg-type]
        producer=_RecordingProducer(),  # type: ignore[arg-type]
    )
    declared = "99999999999999999999"

    answer = asyncio.run(
        _request(
            app,
            "POST",
            "/v1/events",
            content=b'{"user_id": "u1"}',
            headers={"Content-Length": declared},
        )
    )

    assert answer.status_code == 413
    assert answer.json()["reason"] == "payload_too_large"
    assert f"request body is {declared} bytes" in answer.json()["message"]


def test_oversized_event_post_dead_letters_first_bytes() -> None:
    body = b'{"event_id": "' + b"x" * MAX_EVENT_BYTES + b'"}'

    _, letter = _dead_letter_of(body)

    assert letter.reason == "payload_too_large"
    assert letter.raw_value_base64 is not None
    assert base64.b64decode(letter.raw_value_base64) == body[:MAX_EVENT_BYTES]


def test_event_post_names_lone_surrogate_escape() -> None:
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_EmptyRedis(),  # type: ignore[arg-type]
        producer=_RecordingProducer(),  # type: ignore[arg-type]
    )

    answer = asyncio.run(
        _request(app, "POST", "/v1/events", content=b'{"user_id": "\\ud800"}')
    )

    assert answer.status_code == 422
    assert answer.json()["reason"] == "invalid_json"
    assert "lone surrogate at line 1 column 20" in answer.json()["message"]


def test_blank_event_id_post_is_422() -> None:
    producer = _RecordingProducer()
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_EmptyRedis(),  # type: ignore[arg-type]
        producer=producer,  # type: ignore[arg-type]
    )
    body = json.dumps({**json.loads(_CLICK), "event_id": "   "})

    answer = asyncio.run(_request(app, "POST", "/v1/events", content=body))

    assert answer.status_code == 422
    assert answer.json()["reason"] == "invalid_id"
    assert "'event_id'" in answer.json()["message"]
    assert [topic for topic, _, _ in producer.messages] == ["events.dlq"]


def test_openapi_documents_413_and_422_for_event_posts() -> None:
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_EmptyRedis(),  # type: ignore[arg-type]
        producer=object(),  # type: ignore[arg-type]
    )

    responses = app.openapi()["paths"]["/v1/events"]["post"]["responses"]

    rejected = {"$ref": "#/components/schemas/EventRejected"}
    assert responses["413"]["content"]["application/json"]["schema"] == rejected
    assert "payload_too_large" in responses["413"]["description"]
    assert responses["422"]["content"]["application/json"]["schema"] == rejected


# A newline ends the route's path pattern, so that request matches no route.
@pytest.mark.parametrize(
    ("user_id", "status"),
    [
        ("u%001", 422),
        ("u%1F1", 422),
        ("u%7F", 422),
        ("u%C2%85", 422),
        ("u1%0A", 404),
        ("%20%20%20", 422),
        ("a%FF", 422),
        ("caf%C3%A9", 404),
    ],
)
def test_slate_control_character_id_rejected(user_id: str, status: int) -> None:
    answer = _slate_without_redis_keys(user_id)

    assert answer.status_code == status


def _slate_without_redis_keys(user_id: str) -> httpx.Response:
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_EmptyRedis(),  # type: ignore[arg-type]
        producer=object(),  # type: ignore[arg-type]
    )
    path = f"/v1/users/{user_id}/slates/products"
    return asyncio.run(_request(app, "GET", path))


def test_slate_id_escapes_must_be_utf8() -> None:
    answer = _slate_without_redis_keys("a%FF")

    [error] = answer.json()["detail"]
    assert error["loc"] == ["path", "user_id"]
    assert "percent-escapes are not UTF-8" in error["msg"]


class _TopicListingProducer:
    """A producer whose topic listing fails with ``error`` or lacks every topic."""

    def __init__(self, error: KafkaError | None) -> None:
        self._error = error
        self.produced = 0

    def list_topics(self, timeout: float) -> Any:
        if self._error is not None:
            raise KafkaException(self._error)
        return SimpleNamespace(topics={})

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.produced += 1

    def poll(self, timeout: float = 0.0) -> int:
        time.sleep(timeout)
        return 0


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (None, "topic 'events' is missing; create it with 'cartwheel topics create'"),
        (
            KafkaError(
                KafkaError._TIMED_OUT, "Failed to get metadata: Local: Timed out"
            ),
            "the broker did not list its topics within 2 s (Failed to get "
            "metadata: Local: Timed out); retry",
        ),
    ],
    ids=["missing-topic", "silent-broker"],
)
def test_event_post_names_topic_problem(
    error: KafkaError | None, expected: str
) -> None:
    producer = _TopicListingProducer(error)
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_EmptyRedis(),  # type: ignore[arg-type]
        producer=producer,  # type: ignore[arg-type]
    )

    answer = asyncio.run(_request(app, "POST", "/v1/events", content=_CLICK))

    assert answer.status_code == 503
    assert expected in answer.json()["detail"]
    assert producer.produced == 0


def _empty_slate(surface: Surface) -> Slate:
    return Slate.model_validate(slate_document(surface=surface.value))


class _RawRedis:
    """A Redis that returns one stored value for every key."""

    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    def get(self, key: str) -> Any:
        return self._raw


class _OnDemandStub:
    """Computes ``slate`` for every user, or nothing when it is None."""

    def __init__(self, slate: Slate | None) -> None:
        self._slate = slate

    def compute(self, user_id: str, surface: Surface) -> Slate | None:
        return self._slate


def _slate_answer(
    redis_client: object, on_demand: _OnDemandStub | None
) -> httpx.Response:
    app = create_app(
        ApiSettings(),
        redis_client=redis_client,  # type: ignore[arg-type]
        producer=object(),  # type: ignore[arg-type]
        on_demand=on_demand,  # type: ignore[arg-type]
    )
    return asyncio.run(_request(app, "GET", "/v1/users/u1/slates/promotions"))


def test_stored_slate_without_items_is_200() -> None:
    stored = _empty_slate(Surface.PROMOTIONS)

    answer = _slate_answer(_RawRedis(stored.model_dump_json().encode()), None)

    assert answer.status_code == 200
    assert answer.json()["items"] == []


def test_computed_slate_without_items_is_200() -> None:
    computed = _empty_slate(Surface.PROMOTIONS)

    answer = _slate_answer(_EmptyRedis(), _OnDemandStub(computed))

    assert answer.status_code == 200
    assert answer.json()["items"] == []
    assert Slate.model_validate(answer.json()) == computed


_LATENCY_AS_TEXT = json.dumps(slate_document(surface="promotions", latency_ms="1.0"))


@pytest.mark.parametrize("is_dropping_out_of_stock", [True, False])
def test_invalid_stored_slate_falls_back_to_computed(
    is_dropping_out_of_stock: bool,
) -> None:
    computed = _empty_slate(Surface.PROMOTIONS)
    rules = {"exclude_out_of_stock": is_dropping_out_of_stock}
    app = create_app(
        ApiSettings(scorer={"rules": rules}),  # type: ignore[arg-type]
        redis_client=_RawRedis(_LATENCY_AS_TEXT.encode()),  # type: ignore[arg-type]
        producer=object(),  # type: ignore[arg-type]
        on_demand=_OnDemandStub(computed),  # type: ignore[arg-type]
    )
    invalid = INVALID_SLATES.labels("promotions")
    before = invalid._value.get()

    answer = asyncio.run(_request(app, "GET", "/v1/users/u1/slates/promotions"))

    assert answer.status_code == 200
    assert Slate.model_validate(answer.json()) == computed
    assert invalid._value.get() == before + 1


def test_invalid_stored_slate_logs_field(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without its repeat filter, so that a line from an earlier test does not
    # suppress this one.
    monkeypatch.setattr(slates_module._invalid_logger, "filters", [])

    _slate_answer(_RawRedis(_LATENCY_AS_TEXT.encode()), None)

    assert "invalid stored slate skipped user_id=u1 surface=promotions" in caplog.text
    assert "first_error=latency_ms: Input should be a valid number" in caplog.text


def test_invalid_stored_slate_without_on_demand_is_404() -> None:
    answer = _slate_answer(_RawRedis(_LATENCY_AS_TEXT.encode()), None)

    assert answer.status_code == 404


def test_missing_slate_is_404() -> None:
    answer = _slate_answer(_EmptyRedis(), _OnDemandStub(None))

    assert answer.status_code == 404
    assert answer.json()["detail"] == (
        "no promotions slate for user 'u1': the hot path has stored no valid "
        "one and none could be computed now"
    )


def test_openapi_says_empty_slates_are_200() -> None:
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_EmptyRedis(),  # type: ignore[arg-type]
        producer=object(),  # type: ignore[arg-type]
    )

    operation = app.openapi()["paths"]["/v1/users/{user_id}/slates/{surface}"]["get"]

    assert "200 and an empty `items` list" in operation["description"]
    assert operation["responses"]["404"]["description"].startswith("No slate")


def _post_partial_body(
    app: Any, partial_body: bytes, *, is_stalled: bool = False
) -> list[dict[str, Any]]:
    """Send ``app`` the first part of an event post's body and nothing more.

    The client then disconnects, or with ``is_stalled`` waits without end.
    Returns the ASGI messages that the app sent.
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"api"), (b"content-length", b"100")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []
    is_first = True

    async def receive() -> dict[str, Any]:
        nonlocal is_first
        if is_first:
            is_first = False
            return {"type": "http.request", "body": partial_body, "more_body": True}
        if is_stalled:
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_stalled_body_is_408(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "_BODY_TIMEOUT_SECONDS", 0.05)
    producer = _RecordingProducer()
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_EmptyRedis(),  # type: ignore[arg-type]
        producer=producer,  # type: ignore[arg-type]
    )

    with caplog.at_level(logging.INFO, logger="services.api.app"):
        sent = _post_partial_body(app, b'{"event_id":', is_stalled=True)

    assert sent[0]["status"] == 408
    assert b"did not arrive within 0.05 s" in sent[1]["body"]
    assert producer.messages == []
    assert "body did not arrive" in caplog.text


def test_client_disconnect_mid_body_stores_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = _RecordingProducer()
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_EmptyRedis(),  # type: ignore[arg-type]
        producer=producer,  # type: ignore[arg-type]
    )
    labels = {"route": "/v1/events", "method": "POST", "status": "499"}
    metric = "cartwheel_api_request_seconds_count"
    before = REGISTRY.get_sample_value(metric, labels) or 0.0

    with caplog.at_level(logging.DEBUG, logger="services.api.app"):
        _post_partial_body(app, b'{"event_id":')

    assert producer.messages == []
    assert REGISTRY.get_sample_value(metric, labels) == before + 1
    assert [record.levelno for record in caplog.records] == [logging.DEBUG]
    assert "client disconnected" in caplog.records[0].getMessage()
    assert "content_length=100" in caplog.records[0].getMessage()


class _PingingRedis:
    def __init__(self, error: redis.RedisError | None = None) -> None:
        self._error = error

    def ping(self) -> bool:
        if self._error is not None:
            raise self._error
        return True


class _ListingProducer:
    def list_topics(self, timeout: float) -> Any:
        return SimpleNamespace(topics={"events": SimpleNamespace(error=None)})


def _probe_app(redis_client: Any, producer: Any) -> Any:
    return create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=redis_client,
        producer=producer,
    )


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_probe_matches_get_status(path: str) -> None:
    app = _probe_app(_PingingRedis(), _ListingProducer())

    got = asyncio.run(_request(app, "GET", path))
    head = asyncio.run(_request(app, "HEAD", path))

    assert got.status_code == 200
    assert head.status_code == 200
    assert head.content == b""


def test_head_readyz_fails_with_get() -> None:
    down = _PingingRedis(redis.ConnectionError("Connection refused"))
    app = _probe_app(down, _ListingProducer())

    got = asyncio.run(_request(app, "GET", "/readyz"))
    head = asyncio.run(_request(app, "HEAD", "/readyz"))

    assert got.status_code == 503
    assert head.status_code == 503
    assert head.content == b""


def test_head_healthz_fails_after_fatal_producer_error() -> None:
    app = _probe_app(_BrokenRedis(), _FailedProducer())
    asyncio.run(_request(app, "POST", "/v1/events", content=_CLICK))

    got = asyncio.run(_request(app, "GET", "/healthz"))
    head = asyncio.run(_request(app, "HEAD", "/healthz"))

    assert got.status_code == 503
    assert head.status_code == 503
    assert head.content == b""


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_openapi_documents_head_probe_without_body(path: str) -> None:
    app = _probe_app(_EmptyRedis(), object())

    responses = app.openapi()["paths"][path]["head"]["responses"]

    assert sorted(responses) == ["200", "503"]
    assert all("content" not in response for response in responses.values())
