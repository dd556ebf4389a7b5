"""The slate that ``GET /v1/users/{user_id}/slates/{surface}`` returns.

It is the latest slate that the hot path stored for the user, without the
items that went out of stock since, or else one computed now by
:class:`~services.api.ondemand.OnDemandSlates`. A stored slate is returned as
the JSON text that the hot path wrote, unless items were left out.

A stored slate is read in strict JSON mode, as sites read slates from Kafka.
One that is not valid, such as a slate with a number sent as text, counts as
none stored: the request gets a slate computed now, or a 404. So does a valid
slate of another user or surface than the key it was read from. Each one is
counted in ``cartwheel_api_invalid_slates_total`` and logged as a WARNING.

A catalog stock that is not a finite number counts as unknown, so its item
stays on the slate. Each one is counted in
``cartwheel_api_invalid_stocks_total`` and logged as a WARNING. WARNING lines
of either kind pass once per surface every 10 s.
"""

from __future__ import annotations

import logging
import math
import re

import redis
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from schemas.features import FeatureKeys
from schemas.recommendations import Slate, Surface
from services.api.metrics import INVALID_SLATES, INVALID_STOCKS
from services.api.ondemand import OnDemandSlates
from services.common.logging import RepeatFilter
from services.scorer.publisher import latest_slate_key

__all__ = ["SlateLookup"]

# One line of each kind per surface passes every 10 s, whatever the user, item
# or count, with the count of those held back.
_invalid_logger = logging.getLogger(f"{__name__}.invalid")
_VARYING = re.compile(r"(?:user_id|item_id)=\S+|\d+")
_invalid_logger.addFilter(RepeatFilter(interval_seconds=10.0, varying=_VARYING))


class _MisplacedSlateError(Exception):
    """Raised when a valid stored slate names another user or surface than its key.

    Args:
        field: the slate's field that does not match the key.
        message: what was found instead.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class SlateLookup:
    """Find a user's slate on one surface: the stored one, else one computed now.

    Calls block on Redis, so they run in the worker threads.

    Args:
        client: where the hot path stores the latest slates.
        prefix: the Redis key prefix.
        on_demand: computes slates for users without one; None disables it.
        is_dropping_out_of_stock: leave out the items of a stored slate that
            went out of stock since it was built.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        on_demand: OnDemandSlates | None,
        *,
        is_dropping_out_of_stock: bool,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._keys = FeatureKeys(prefix)
        self._on_demand = on_demand
        self._is_dropping_out_of_stock = is_dropping_out_of_stock

    async def stored(self, user_id: str, surface: Surface) -> bytes | str | None:
        """Return the JSON text of the stored slate, or None when there is none.

        A stored value that is not a valid slate, or a slate of another user
        or surface, is counted, logged and treated as none.

        Raises:
            redis.RedisError: Redis failed.
        """
        try:
            return await run_in_threadpool(self._read, user_id, surface)
        except ValidationError as exc:
            error = exc.errors()[0]
            location = ".".join(str(part) for part in error["loc"]) or "slate"
            _skip_invalid(user_id, surface, exc.error_count(), location, error["msg"])
        except _MisplacedSlateError as exc:
            _skip_invalid(user_id, surface, 1, exc.field, str(exc))
        return None

    async def computed(self, user_id: str, surface: Surface) -> Slate | None:
        """Return a slate computed now, or None when none can be computed.

        Raises:
            redis.RedisError: Redis failed.
        """
        if self._on_demand is None:
            return None
        return await run_in_threadpool(self._on_demand.compute, user_id, surface)

    def _read(self, user_id: str, surface: Surface) -> bytes | str | None:
        """Return the stored slate's JSON text, or None when there is none.

        Raises:
            redis.RedisError: Redis failed.
            ValidationError: the stored value is not a valid slate.
            _MisplacedSlateError: the slate is of another user or surface.
        """
        key = latest_slate_key(self._prefix, user_id, surface)
        raw: bytes | str | None = self._client.get(key)
        if raw is None:
            return None
        slate = Slate.model_validate_json(raw, strict=True)
        if slate.user_id != user_id:
            raise _MisplacedSlateError("user_id", "another user's slate is stored here")
        if slate.surface is not surface:
            raise _MisplacedSlateError(
                "surface", f"a slate of surface {slate.surface.value!r} is stored here"
            )
        if not self._is_dropping_out_of_stock:
            return raw
        return _without_out_of_stock(raw, slate, self._client, self._keys)


def _skip_invalid(
    user_id: str, surface: Surface, errors: int, location: str, message: str
) -> None:
    """Count and log a stored slate that is treated as none."""
    INVALID_SLATES.labels(surface.value).inc()
    _invalid_logger.warning(
        "invalid stored slate skipped user_id=%s surface=%s errors=%d "
        "first_error=%s: %s",
        user_id,
        surface.value,
        errors,
        location,
        message,
    )


def _without_out_of_stock(
    raw: bytes | str, slate: Slate, client: redis.Redis, keys: FeatureKeys
) -> bytes | str:
    """Drop the items of a stored slate that went out of stock since it was built.

    A slate is stored when its user's event arrives, so without this an item
    sold out since then stays on it until the user's next event. The other
    items keep their order and are ranked from 1 again. A stock that is not a
    finite number counts as unknown, so its item stays, and it is counted and
    logged.

    Args:
        raw: the slate's JSON text as stored.
        slate: the slate that ``raw`` contains.
        client: the Redis that contains the catalog's stock.
        keys: the Redis key layout.
    """
    if slate.surface is Surface.REVIEWS or not slate.items:
        return raw
    pipe = client.pipeline(transaction=False)
    for entry in slate.items:
        pipe.hget(keys.item_catalog(entry.item_id), "stock")
    in_stock = []
    invalid_item_ids = []
    for entry, stored in zip(slate.items, pipe.execute(), strict=True):
        stock = _stock(stored)
        if stored is not None and stock is None:
            invalid_item_ids.append(entry.item_id)
        if stock is None or stock > 0:
            in_stock.append(entry)
    if invalid_item_ids:
        _report_invalid_stocks(slate, invalid_item_ids)
    if len(in_stock) == len(slate.items):
        return raw
    items = [
        entry.model_copy(update={"rank": rank})
        for rank, entry in enumerate(in_stock, 1)
    ]
    return slate.model_copy(update={"items": items}).model_dump_json().encode()


def _stock(stored: bytes | str | None) -> float | None:
    """Return a stored catalog stock, or None when it is missing or no finite number."""
    if stored is None:
        return None
    try:
        stock = float(stored)
    except ValueError:
        return None
    return stock if math.isfinite(stock) else None


def _report_invalid_stocks(slate: Slate, item_ids: list[str]) -> None:
    INVALID_STOCKS.labels(slate.surface.value).inc(len(item_ids))
    _invalid_logger.warning(
        "invalid catalog stock read as unknown user_id=%s surface=%s items=%d "
        "first_item_id=%s; write a whole number to the stock field of its "
        "catalog record",
        slate.user_id,
        slate.surface.value,
        len(item_ids),
        item_ids[0],
    )
