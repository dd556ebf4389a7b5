"""reject: pydantic errors named as one reason and one message."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.deadletters import RejectionReason
from schemas.rejections import ID_FORM, RejectionRules, reject

RULES = RejectionRules(
    document="parcel",
    expected_forms={"weight": "a number of 0 or more"},
    kind_fields={"parcel_type": RejectionReason.UNKNOWN_RECORD_TYPE},
)


class Parcel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    parcel_type: Literal["box"] = "box"
    parcel_id: Annotated[str, Field(min_length=1)] = "p"
    weight: Annotated[float, Field(ge=0)] = 0.0
    label: Annotated[str, Field(max_length=3)] = ""
    low: int = 0
    high: int = 1

    @model_validator(mode="after")
    def _check_bounds(self) -> Parcel:
        if self.high <= self.low:
            raise ValueError(f"parcel high={self.high} is not above low={self.low}")
        return self


def _errors(raw: str) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        Parcel.model_validate_json(raw, strict=True)
    return raised.value


@pytest.mark.parametrize(
    ("raw", "reason", "message"),
    [
        (
            '{"parcel_type": "crate"}',
            RejectionReason.UNKNOWN_RECORD_TYPE,
            "field 'parcel_type' has value 'crate'; expected a value that "
            "matches the parcel schema",
        ),
        (
            '{"parcel_type": 3}',
            RejectionReason.WRONG_TYPE,
            "field 'parcel_type' has value 3; expected a value that matches "
            "the parcel schema",
        ),
        (
            '{"parcel_id": ""}',
            RejectionReason.INVALID_ID,
            f"field 'parcel_id' has value ''; expected {ID_FORM}",
        ),
        (
            '{"weight": -2}',
            RejectionReason.NEGATIVE_VALUE,
            "field 'weight' has value -2; expected a number of 0 or more",
        ),
        (
            '{"label": "long"}',
            RejectionReason.OUT_OF_RANGE,
            "field 'label' has value 'long'; expected a value that matches the "
            "parcel schema",
        ),
        (
            '{"low": 5}',
            RejectionReason.OUT_OF_RANGE,
            "parcel high=1 is not above low=5",
        ),
        (
            "7",
            RejectionReason.NOT_AN_OBJECT,
            "message value is 7; expected a JSON object with the parcel's fields",
        ),
    ],
    ids=["unknown_kind", "kind_number", "id", "negative", "long", "bounds", "number"],
)
def test_reject_names_reason_and_message(
    raw: str, reason: RejectionReason, message: str
) -> None:
    rejection = reject(_errors(raw), RULES)

    assert rejection.reason is reason
    assert rejection.message == message


def test_reject_leads_with_schema_version() -> None:
    rejection = reject(_errors('{"weight": -1, "schema_version": 2}'), RULES)

    assert rejection.reason is RejectionReason.UNSUPPORTED_SCHEMA_VERSION
    assert rejection.message.endswith("(and 1 more problem(s))")
