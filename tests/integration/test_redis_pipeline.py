"""Raw pipelined replies against a real redis-server, in RESP2 and RESP3."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from schemas.catalog import ItemRecord, ReviewRecord
from schemas.events import Event, EventType
from services.common.redis_features import (
    FeatureStore,
    decode_hash,
    decode_hash_reply,
)
from services.common.redis_pipeline import run_pipelined
from services.features.catalog import CatalogWriter
from services.scorer.protocols import Relation
from services.scorer.store import RedisCandidateStore

pytestmark = pytest.mark.integration

START = datetime(2019, 10, 1, tzinfo=UTC)


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def client(request: pytest.FixtureRequest, redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, protocol=request.param)
    yield connection
    connection.close()


@pytest.fixture
def prefix(redis_settings: Any, redis_client: redis.Redis) -> Iterator[str]:
    yield redis_settings.key_prefix
    for key in redis_client.scan_iter(f"{redis_settings.key_prefix}:*"):
        redis_client.delete(key)


def test_replies_come_back_in_order(client: redis.Redis, prefix: str) -> None:
    client.hset(f"{prefix}:h", mapping={"a": "1", "b": "x"})
    client.zadd(f"{prefix}:z", {"m1": 1.5, "m2": 2.5})

    replies = run_pipelined(
        client,
        [
            ("SET", f"{prefix}:s", "v", "EX", 60),
            ("GET", f"{prefix}:s"),
            ("HGETALL", f"{prefix}:h"),
            ("HGETALL", f"{prefix}:missing"),
            ("HVALS", f"{prefix}:h"),
            ("ZREVRANGE", f"{prefix}:z", 0, -1, "WITHSCORES"),
        ],
    )

    assert replies[1] == b"v"
    assert decode_hash_reply(replies[2]) == {"a": "1", "b": "x"}
    assert decode_hash_reply(replies[3]) == {}
    assert sorted(replies[4]) == [b"1", b"x"]
    # RESP3 replies [member, score] pairs; RESP2 alternates member and score.
    pairs = replies[5]
    flat = [part for pair in pairs for part in pair] if _is_resp3(client) else pairs
    assert [flat[0], float(flat[1]), flat[2], float(flat[3])] == [
        b"m2",
        2.5,
        b"m1",
        1.5,
    ]


def test_decoded_reply_equals_redis_py_decoding(
    client: redis.Redis, prefix: str
) -> None:
    # Chunked fields, as the user script stores long values, and a value that
    # is not UTF-8 (dedupe digests).
    fields = {"lt": "12.5", "r#1": "abc", "r#2": "def", "d": b"\xff\x00"}
    client.hset(f"{prefix}:u", mapping=fields)

    (reply,) = run_pipelined(client, [("HGETALL", f"{prefix}:u")])

    assert decode_hash_reply(reply) == decode_hash(client.hgetall(f"{prefix}:u"))
    assert decode_hash_reply(reply)["r"] == "abcdef"


def test_error_reply_raises_after_reading_every_reply(
    client: redis.Redis, prefix: str
) -> None:
    client.set(f"{prefix}:plain", "1")

    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        run_pipelined(
            client,
            [("HGETALL", f"{prefix}:plain"), ("GET", f"{prefix}:plain")],
        )

    # The connection went back to the pool with no reply left unread.
    assert run_pipelined(client, [("GET", f"{prefix}:plain")]) == [b"1"]


def test_no_commands_sends_nothing(client: redis.Redis) -> None:
    assert run_pipelined(client, []) == []


def test_killed_connection_is_replaced(
    client: redis.Redis, redis_client: redis.Redis, prefix: str
) -> None:
    client.set(f"{prefix}:k", "1")
    redis_client.client_kill_filter(_id=client.client_id())

    assert run_pipelined(client, [("GET", f"{prefix}:k")]) == [b"1"]


def _is_resp3(client: redis.Redis) -> bool:
    return str(client.connection_pool.connection_kwargs.get("protocol")) == "3"


def _event(index: int, user_id: str, item_id: str, event_type: str) -> Event:
    return Event(
        event_id=f"e{index}",
        event_type=EventType(event_type),
        user_id=user_id,
        item_id=item_id,
        event_time=START + timedelta(seconds=30 * index),
        price=10.0 + index,
    )


def test_candidate_store_reads_the_same_in_both_protocols(
    redis_url: str, prefix: str
) -> None:
    writer = redis.Redis.from_url(redis_url)
    store = FeatureStore(writer, prefix)
    store.load_scripts()
    catalog = CatalogWriter(writer, prefix)
    for item_id, category in [("a", "phones"), ("b", "phones"), ("c", "cases")]:
        catalog.write(
            ItemRecord(
                item_id=item_id,
                updated_at=START,
                category_id=category,
                brand="acme",
                price=5.0,
                stock=3,
            )
        )
    catalog.write(
        ReviewRecord(
            review_id="r1",
            item_id="a",
            rating=4,
            helpful_votes=2,
            created_at=START,
            updated_at=START,
        )
    )
    script = [
        ("u1", "a", "click"),
        ("u1", "b", "click"),
        ("u1", "b", "cart_add"),
        ("u2", "a", "click"),
        ("u2", "c", "click"),
        ("u2", "c", "purchase"),
    ]
    store.apply_batch([_event(index, *entry) for index, entry in enumerate(script)])

    seen = []
    for protocol in (2, 3):
        reader = redis.Redis.from_url(redis_url, protocol=protocol)
        candidates = RedisCandidateStore(
            FeatureStore(reader, prefix), cache_ttl_seconds=0.0
        )
        candidates.begin_batch(START.timestamp() + 600)
        vectors = candidates.read_features([("u1", ["a", "b", "c"]), ("u2", ["a"])])
        seen.append(
            (
                candidates.user_histories(["u1", "u2"]),
                candidates.neighbours(Relation.COVISITATION, ["a", "b", "c"], 10),
                candidates.neighbours(Relation.CO_PURCHASE, ["c"], 10),
                candidates.trending([None, "phones"], 10),
                candidates.reviews(["a", "b"]),
                [
                    (v.user, v.items.item_ids, v.items.array.tolist(), v.attributes)
                    for v in vectors
                ],
            )
        )
        reader.close()
    writer.close()

    assert seen[0] == seen[1]
    histories, covisited, _, trending, reviews, _ = seen[1]
    assert [item.item_id for item in histories["u1"].recent] == ["b", "b", "a"]
    assert {item_id for item_id, _ in covisited["a"]} == {"b", "c"}
    assert trending[None]
    assert [review.review_id for review in reviews["a"]] == ["r1"]
