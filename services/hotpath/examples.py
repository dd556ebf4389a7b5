"""The training example that the hot path emits for every applied event."""

from __future__ import annotations

from schemas.training import TrainingExample
from services.common.redis_features import AppliedResult

__all__ = ["training_example"]


def training_example(result: AppliedResult) -> TrainingExample:
    """Build the example of one applied event from its before-snapshot.

    The features are those from before the event, as the scorer read them
    when the event arrived. The event's own price is used when it has one,
    and the catalog's price otherwise.
    """
    event = result.event
    attributes = result.item_attributes
    price = event.price
    if price is None and attributes is not None:
        price = attributes.price
    return TrainingExample(
        event_id=event.event_id,
        event_type=event.event_type,
        user_id=event.user_id,
        item_id=event.item_id,
        session_id=event.session_id,
        event_time=event.event_time,
        category_id=attributes.category_id if attributes else None,
        brand=attributes.brand if attributes else None,
        price=price,
        user_features=result.user_features,
        item_features=result.item_features,
    )
