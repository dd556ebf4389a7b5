"""Settings of the scoring stage: candidate sources, score weights, rules, surfaces.

Every value is read from ``CARTWHEEL_SCORER_*`` variables (nested blocks use
``__`` as the delimiter, e.g. ``CARTWHEEL_SCORER_RULES__MAX_PER_CATEGORY=3``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.events import EventType
from schemas.recommendations import CandidateSource
from services.common.settings import (
    MAX_REDIS_TTL_SECONDS,
    KafkaSettings,
    PlainIntegers,
    RedisSettings,
    TopicSettings,
)

__all__ = [
    "CandidateSettings",
    "RuleSettings",
    "ScoreWeights",
    "ScorerSettings",
    "SurfaceSettings",
]

# The candidate sources of each surface, by the field of their weight. A
# surface whose sources all weigh 0 gets no candidates, so its slates are
# always empty.
_SURFACE_SOURCES = {
    "products": (
        "covisitation_weight",
        "session_knn_weight",
        "category_trending_weight",
        "trending_weight",
    ),
    "bundles": ("co_cart_weight", "co_purchase_weight"),
}

# Other fields that turn a source off at 0, by the field of its weight:
# category trending reads the trending items of the user's top categories.
_SOURCE_SWITCHES = {"category_trending_weight": "top_categories"}


class CandidateSettings(PlainIntegers):
    """How many candidates each source proposes and how recency is weighted."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    recent_items: int = Field(
        default=10, ge=1, le=50, description="recent items of the user used as seeds"
    )
    recency_decay: float = Field(
        default=0.75,
        gt=0.0,
        le=1.0,
        description="weight multiplier per step back in the user's history",
    )
    neighbours_per_item: int = Field(
        default=30, ge=1, le=200, description="co-visited neighbours read per seed"
    )
    session_neighbours: int = Field(
        default=50, ge=1, le=500, description="neighbour sessions kept by session-kNN"
    )
    session_samples_per_item: int = Field(
        default=200,
        ge=1,
        le=5000,
        description="most recent sessions looked up per item of the current session",
    )
    session_index_size: int = Field(
        default=100_000,
        ge=100,
        le=10_000_000,
        description="sessions kept by the in-process session-kNN index",
    )
    session_max_items: int = Field(
        default=50, ge=2, le=500, description="items kept per indexed session"
    )
    # The index takes 0.3 to 0.6 kB per item (docs/benchmarks/sessions.md).
    # The default keeps 100,000 sessions of REES46 length (2.3 items on
    # average). With 50-item sessions it took at most 215 MiB, against
    # 1.5 GiB without this bound, more than the API's 1 GiB limit.
    session_index_items: int = Field(
        default=500_000,
        ge=500,
        le=100_000_000,
        description=(
            "items kept by the session-kNN index over all its sessions; the "
            "least recently updated sessions are evicted beyond it, which bounds "
            "its memory when sessions are long"
        ),
    )
    session_warmup_events: int = Field(
        default=20_000,
        ge=0,
        le=1_000_000,
        description=(
            "events read back into the session-kNN index per partition: by the "
            "hot path from before where it resumes on each partition it is "
            "assigned, and by the API from before each partition's end when it "
            "starts; 0 turns the warm-up off"
        ),
    )
    session_half_life_seconds: float = Field(
        default=86_400.0,
        gt=0.0,
        description="age at which a neighbour session counts half",
    )
    session_position_decay: float = Field(
        default=2.0,
        gt=0.0,
        le=1000.0,
        description="positions from the end of the current session over which "
        "an item's weight in session-kNN falls by a factor of e",
    )
    session_neighbour_position_decay: float = Field(
        default=3.0,
        gt=0.0,
        le=1000.0,
        description="positions from a neighbour session's latest shared item "
        "over which its vote for an item falls by a factor of e",
    )
    top_categories: int = Field(
        default=3,
        ge=0,
        le=20,
        description="user categories whose trending items are read; 0 turns "
        "the category trending source off, like its weight at 0",
    )
    trending_per_category: int = Field(default=20, ge=1, le=200)
    trending: int = Field(default=50, ge=1, le=500)
    max_candidates: int = Field(
        default=100, ge=1, le=1000, description="candidates kept for ranking per event"
    )
    covisitation_weight: float = Field(
        default=1.0,
        ge=0.0,
        le=100.0,
        description="score of the best co-visited item in the merged candidate "
        "list, or 0 to turn the source off",
    )
    session_knn_weight: float = Field(
        default=1.0,
        ge=0.0,
        le=100.0,
        description="score of the best session-kNN item in the merged candidate "
        "list, or 0 to turn the source off",
    )
    co_cart_weight: float = Field(
        default=1.0,
        ge=0.0,
        le=100.0,
        description="score of the best co-carted item in the merged bundle list, "
        "or 0 to turn the source off",
    )
    co_purchase_weight: float = Field(
        default=1.2,
        ge=0.0,
        le=100.0,
        description="score of the best co-purchased item in the merged bundle "
        "list, or 0 to turn the source off",
    )
    category_trending_weight: float = Field(
        default=0.4,
        ge=0.0,
        le=100.0,
        description="score of the best trending item of the user's top category "
        "in the merged candidate list, or 0 to turn the source off",
    )
    trending_weight: float = Field(
        default=0.02,
        ge=0.0,
        le=100.0,
        description="score of the best trending item of the shop in the merged "
        "candidate list, or 0 to turn the source off",
    )

    @model_validator(mode="after")
    def _check_surfaces_have_sources(self) -> CandidateSettings:
        errors = []
        for surface, fields in _SURFACE_SOURCES.items():
            if any(self._is_source_on(field) for field in fields):
                continue
            names = [field.removesuffix("_weight") for field in fields]
            listed = f"{', '.join(names[:-1])} or {names[-1]}"
            message = (
                f"expected the {listed} weight above 0, because with "
                f"{'both' if len(names) == 2 else 'all'} at 0 {surface} slates "
                "are always empty"
            )
            # The switches that turn off a source whose weight is above 0.
            switches = {
                weight: switch
                for weight, switch in _SOURCE_SWITCHES.items()
                if weight in fields and getattr(self, weight) > 0.0
            }
            for weight, switch in switches.items():
                message += (
                    f"; {_variable(weight)} counts as 0 while {_variable(switch)} is 0"
                )
            # One error per field, at that field, so that the loader names
            # each variable. A ValueError raised here would name none.
            errors += [
                InitErrorDetails(
                    type=PydanticCustomError("value_error", message),
                    loc=(field,),
                    input=getattr(self, field),
                )
                for field in (*fields, *switches.values())
            ]
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def _is_source_on(self, weight: str) -> bool:
        """Return whether the source of the weight field ``weight`` proposes items."""
        switch = _SOURCE_SWITCHES.get(weight)
        return getattr(self, weight) > 0.0 and (
            switch is None or getattr(self, switch) > 0
        )

    def source_weights(self) -> dict[CandidateSource, float]:
        """Return each candidate source's weight in the merged lists."""
        return {
            CandidateSource.COVISITATION: self.covisitation_weight,
            CandidateSource.SESSION_KNN: self.session_knn_weight,
            CandidateSource.CO_CART: self.co_cart_weight,
            CandidateSource.CO_PURCHASE: self.co_purchase_weight,
            CandidateSource.CATEGORY_TRENDING: self.category_trending_weight,
            CandidateSource.TRENDING: self.trending_weight,
        }


def _variable(field: str) -> str:
    """Return the variable of a candidate setting, for error messages."""
    return f"CARTWHEEL_SCORER_CANDIDATES__{field.upper()}"


class ScoreWeights(PlainIntegers):
    """Weights that combine task probabilities and online signals into one score.

    ``engagement`` scores ``w_click*p(click) + w_cart*p(cart) + w_purchase*p(purchase)
    + w_affinity*affinity``. ``expected_value`` scores ``p(purchase)*price +
    w_affinity*affinity``, so it orders by expected revenue; the click, cart
    and purchase weights are not used, and a missing price counts as the
    median known price of the candidates. The online River
    probabilities are blended into the ranker's cart and purchase probabilities
    with weight ``online_blend``.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    # LIMITATION(L-59): the defaults favour the next click, the most common next
    # event, and were chosen on six small public samples (docs/evaluation.md).
    # On OTTO plain co-visitation still finds more next items, and on three
    # samples more in its first five places.
    objective: Literal["engagement", "expected_value"] = Field(
        default="engagement",
        description="engagement (weighted task probabilities) or expected_value "
        "(p(purchase) times price, plus the weighted affinity)",
    )
    click: float = Field(default=1.0, ge=0.0, description="weight of p(click)")
    cart_add: float = Field(default=0.1, ge=0.0, description="weight of p(cart_add)")
    purchase: float = Field(default=0.05, ge=0.0, description="weight of p(purchase)")
    affinity: float = Field(
        default=0.0,
        ge=0.0,
        description="weight of the user's online affinity to the item in the "
        "products and bundles score",
    )
    promotion_affinity: float = Field(
        default=0.1,
        ge=0.0,
        description="weight of the user's online affinity to an item against its "
        "p(purchase) when promotions are ranked",
    )
    popularity: float = Field(
        default=0.0,
        ge=0.0,
        le=10.0,
        description="weight of log(1 + the item's views in 24 h) in the heuristic "
        "ranker's click logit",
    )
    online_blend: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="weight of the online River cart and purchase probabilities "
        "against the ranker's",
    )
    ranker_blend: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="weight of the trained ranker's cart and purchase "
        "probabilities against the heuristic's",
    )
    ranker_click_blend: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="weight of the trained ranker's click probability against "
        "the heuristic's",
    )


class RuleSettings(PlainIntegers):
    """Switches and parameters of the slate rules."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    exclude_trigger: bool = Field(
        default=True, description="leave the item that triggered a slate out of it"
    )
    exclude_purchased: bool = Field(
        default=True,
        description="leave items the user bought out of slates (see "
        "CARTWHEEL_SCORER_RULES__ALLOW_CONSUMABLES)",
    )
    allow_consumables: bool = Field(
        default=True, description="let consumable items return after a purchase"
    )
    exclude_out_of_stock: bool = Field(
        default=True, description="leave items with a stock of 0 or less out of slates"
    )
    diversity: Literal["none", "per_category", "mmr"] = Field(
        default="per_category", description="none, per_category or mmr"
    )
    # On the same replay a cap of 10 per category gave HR@20 0.137 against
    # 0.174 at 20, because co-visited items often share a category.
    max_per_category: int = Field(
        default=20, ge=1, le=200, description="an integer from 1 to 200"
    )
    mmr_lambda: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="weight of the score against the similarity to the items "
        "already picked",
    )
    new_item_slots: int = Field(
        default=1, ge=0, le=20, description="slots reserved for little-seen items"
    )
    new_item_max_views: float = Field(
        default=5.0, ge=0.0, description="7-day views under which an item counts as new"
    )


_EVENT_TYPES = [f'"{kind.value}"' for kind in EventType]
_EVENT_TYPE_CHOICES = f"{', '.join(_EVENT_TYPES[:-1])} or {_EVENT_TYPES[-1]}"


class SurfaceSettings(PlainIntegers):
    """Slate sizes and the events that trigger each surface."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    products_size: int = Field(default=20, ge=1, le=200, description="slate size")
    bundles_size: int = Field(default=10, ge=1, le=200, description="slate size")
    promotions_size: int = Field(default=5, ge=1, le=200, description="slate size")
    reviews_size: int = Field(default=5, ge=1, le=200, description="slate size")
    promotion_events: frozenset[EventType] = Field(
        default=frozenset({EventType.CLICK, EventType.CART_ADD, EventType.PURCHASE}),
        description="a JSON list of the event types that trigger a promotions "
        f"slate, each one of {_EVENT_TYPE_CHOICES}",
    )
    promotion_items_per_rule: int = Field(
        default=5, ge=1, le=100, description="eligible items scored per promotion"
    )
    review_half_life_days: float = Field(default=180.0, gt=0.0)

    @field_serializer("promotion_events")
    def _sorted_events(self, events: frozenset[EventType]) -> list[str]:
        # A set would be written in hash order, which changes from run to run.
        return sorted(event.value for event in events)


class ScorerSettings(PlainIntegers, BaseSettings):
    """Settings of the scoring stage of the hot path."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_SCORER_",
        env_nested_delimiter="__",
        frozen=True,
        allow_inf_nan=False,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    candidates: CandidateSettings = Field(default_factory=CandidateSettings)
    weights: ScoreWeights = Field(default_factory=ScoreWeights)
    rules: RuleSettings = Field(default_factory=RuleSettings)
    surfaces: SurfaceSettings = Field(default_factory=SurfaceSettings)
    item_cache_ttl_seconds: float = Field(
        default=5.0, ge=0.0, description="how long item features stay cached in process"
    )
    item_cache_size: int = Field(default=50_000, ge=0, le=10_000_000)
    latest_slate_ttl_seconds: int = Field(
        default=86_400,
        ge=1,
        le=MAX_REDIS_TTL_SECONDS,
        description="TTL of the latest slate kept in Redis, in seconds; capped "
        "at ten years so that Redis accepts it",
    )
    producer_linger_ms: int = Field(default=2, ge=0, le=1000)
    model_load_timeout_seconds: float = Field(
        default=60.0,
        gt=0.0,
        le=3600.0,
        description="seconds that loading one announced ranker version may take "
        "before it counts as timed out, like a failed load",
    )
    model_retry_seconds: float = Field(
        default=300.0,
        ge=1.0,
        le=86_400.0,
        description="seconds after a failed or timed-out load before the newest "
        "announced ranker version is tried again",
    )
    model_load_attempts: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="failed or timed-out loads of one announced ranker version, "
        "the first included, before it is skipped until the next announcement",
    )
