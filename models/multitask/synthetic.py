"""Generated training examples with a planted signal, for tests and benchmarks.

Real samples are small, so tests and the speed benchmark use this generator.
Every user prefers a few categories; clicks land mostly there, and cheap
items and frequent users convert more, so a model that learns anything beats
chance on every task. The data is labelled as generated wherever it is used.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from schemas.events import EventType
from schemas.training import TrainingExample

__all__ = ["generate_examples"]

_START = datetime(2026, 1, 1, tzinfo=UTC)


def generate_examples(
    event_count: int,
    *,
    user_count: int = 200,
    item_count: int = 500,
    category_count: int = 20,
    seed: int = 0,
    start: datetime = _START,
    seconds_between_events: float = 1.0,
) -> list[TrainingExample]:
    """Return ``event_count`` examples in event time order.

    The user and item features are simple running counts kept by the
    generator itself, taken just before each event, like the hot path does.
    """
    rng = random.Random(seed)
    item_category = [rng.randrange(category_count) for _ in range(item_count)]
    item_price = [round(rng.lognormvariate(3.0, 1.0), 2) for _ in range(item_count)]
    by_category: dict[int, list[int]] = {}
    for item, category in enumerate(item_category):
        by_category.setdefault(category, []).append(item)
    favourites = [
        rng.sample(range(category_count), k=min(3, category_count))
        for _ in range(user_count)
    ]
    user_events = [0.0] * user_count
    user_carts = [0.0] * user_count
    item_events = [0.0] * item_count
    item_carts = [0.0] * item_count
    examples = []
    for index in range(event_count):
        user = rng.randrange(user_count)
        if rng.random() < 0.8:
            category = rng.choice(favourites[user])
            item = rng.choice(by_category.get(category) or [0])
        else:
            item = rng.randrange(item_count)
        affinity = 0.2 + 0.6 * (item_category[item] in favourites[user])
        cheapness = 1.0 / (1.0 + item_price[item] / 50.0)
        conversion = affinity * cheapness * (1.0 + min(user_events[user], 20) / 20)
        roll = rng.random()
        if roll < 0.15 * conversion:
            event_type = EventType.PURCHASE
        elif roll < 0.5 * conversion:
            event_type = EventType.CART_ADD
        else:
            event_type = EventType.CLICK
        examples.append(
            TrainingExample(
                event_id=f"e{index}",
                event_type=event_type,
                user_id=f"u{user}",
                item_id=f"i{item}",
                session_id=f"s{user}-{index // 400}",
                event_time=start + timedelta(seconds=index * seconds_between_events),
                category_id=f"c{item_category[item]}",
                brand=f"b{item % 37}",
                price=item_price[item],
                user_features={
                    "user_event_count_1h": user_events[user],
                    "user_cart_add_count_1h": user_carts[user],
                },
                item_features={
                    "item_event_count_1h": item_events[item],
                    "item_cart_add_count_1h": item_carts[item],
                },
            )
        )
        user_events[user] += 1
        item_events[item] += 1
        if event_type != EventType.CLICK:
            user_carts[user] += 1
            item_carts[item] += 1
    return examples
