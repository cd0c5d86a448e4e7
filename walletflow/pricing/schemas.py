"""Price definitions: the public ``Price`` shape inside a product version's ``prices``.

Every check that can be made on the definition alone happens here, once, when a version is
written, so the engine can trust its input and price events without validating them again.
Rates are decimal *strings* (``"0.0002"``) and are stored as :class:`decimal.Decimal`; floats are
refused because ``0.1`` as a float is not 0.1 and the error would end up on invoices. Amounts are
integers in the asset's minor unit, bounded by :data:`walletflow.ledger.schemas.MAX_AMOUNT`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from walletflow.errors import ValidationError
from walletflow.ledger.schemas import MAX_AMOUNT

PriceModel = Literal["per_unit", "package", "tiered", "volume", "percentage"]

#: A dimension value that matches any value of the event's field, including an absent field.
WILDCARD = "*"
#: Bounds that keep a version small enough to price in microseconds and to review by eye.
MAX_PRICES = 1000
MAX_TIERS = 100
MAX_DIMENSIONS = 16
#: Same rule as ``walletflow.ledger.service.ASSET_CODE``, repeated so that pricing imports no
#: database code.
ASSET_CODE_PATTERN = r"^[A-Z][A-Z0-9_]{1,15}$"

# At most 16 integer digits (rates above MAX_AMOUNT make no sense) and 18 fractional digits
# (far below any real per-token price). Bounded inputs keep every product of a quantity and a rate
# exact in the engine's decimal context. No sign, exponent, NaN or Infinity.
_DECIMAL_STRING = re.compile(r"^\d{1,16}(\.\d{1,18})?$")


def _parse_decimal_string(value: object) -> Decimal:
    """Turn a non-negative decimal string into a Decimal; anything else is a clear error.

    Raises ValueError even for a wrong type: pydantic turns only ValueError and AssertionError
    into a ValidationError, and a TypeError would escape as a 500.
    """
    if isinstance(value, float):
        raise ValueError(  # noqa: TRY004 (see the docstring)
            f"must be a decimal string such as {str(value)!r}, not a float: floats round in binary"
        )
    if not isinstance(value, str):
        raise ValueError('must be a decimal string such as "0.0002"')  # noqa: TRY004
    if not _DECIMAL_STRING.match(value):
        raise ValueError(
            f'{value!r} is not a non-negative decimal string such as "0.0002" '
            "(digits with an optional fraction: no sign, exponent or spaces; "
            "at most 16 integer and 18 fractional digits)"
        )
    return Decimal(value)


#: A non-negative rate: a decimal string on the wire, a Decimal in Python, a string again on output.
DecimalString = Annotated[
    Decimal,
    PlainValidator(_parse_decimal_string),
    PlainSerializer(lambda value: format(value, "f"), return_type=str),
    WithJsonSchema({"type": "string", "pattern": _DECIMAL_STRING.pattern, "examples": ["0.0002"]}),
]
#: An amount in minor units. Strict: ``"5"``, ``5.0`` and ``True`` are refused, not coerced.
MinorAmount = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT)]
_Name = Annotated[str, Field(strict=True, min_length=1, max_length=100)]
_DimensionValue = Annotated[str, Field(strict=True, min_length=1, max_length=200)]
_Dimensions = Annotated[dict[_Name, _DimensionValue], Field(max_length=MAX_DIMENSIONS)]

#: The fields that configure a pricing model, and which of them each model needs. Every other
#: field of this list must be absent, so a definition never carries a setting that is silently
#: ignored (a ``unit_price`` on a tiered price would look like it does something).
_MODEL_FIELDS: tuple[str, ...] = ("unit_price", "package_size", "tiers", "percentage")
_REQUIRED_FIELDS: dict[str, frozenset[str]] = {
    "per_unit": frozenset({"unit_price"}),
    "package": frozenset({"unit_price", "package_size"}),
    "tiered": frozenset({"tiers"}),
    "volume": frozenset({"tiers"}),
    "percentage": frozenset({"percentage"}),
}


class Tier(BaseModel):
    """One tier of a ``tiered`` or ``volume`` price.

    A tier with ``up_to=N`` covers the units above the previous tier's ``up_to`` up to and
    including N; the last tier has ``up_to=None`` and covers everything above.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Defaults to None (the open-ended last tier) so prices stored without nulls read back.
    up_to: Annotated[int, Field(strict=True, ge=1, le=MAX_AMOUNT)] | None = None
    unit_price: DecimalString
    flat_amount: MinorAmount | None = None


class Price(BaseModel):
    """How one metric of one event type is charged. See ``/work/shared/API.md``, "Price"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: _Name
    asset: Annotated[str, Field(strict=True, pattern=ASSET_CODE_PATTERN)]
    model: PriceModel
    #: Exact string values, or ``"*"`` for any value; None or ``{}``: matches every event.
    dimensions: _Dimensions | None = None
    #: The event ``data`` field holding the quantity; None: 1 per event (or, for ``percentage``,
    #: the event's vendor costs in this asset).
    quantity_field: _Name | None = None
    #: Minor units per unit; for ``package``, the price of one whole package.
    unit_price: DecimalString | None = None
    package_size: Annotated[int, Field(strict=True, ge=1, le=MAX_AMOUNT)] | None = None
    tiers: Annotated[list[Tier], Field(min_length=1, max_length=MAX_TIERS)] | None = None
    #: ``"120"`` charges 120 % of the quantity (cost-plus 20 %).
    percentage: DecimalString | None = None
    min_amount: MinorAmount | None = None
    max_amount: MinorAmount | None = None

    @model_validator(mode="after")
    def _check_model_fields(self) -> Price:
        problems: list[str] = []
        required = _REQUIRED_FIELDS[self.model]
        for name in _MODEL_FIELDS:
            present = getattr(self, name) is not None
            if name in required and not present:
                problems.append(f"model {self.model!r} requires {name}")
            elif name not in required and present:
                problems.append(f"{name} does not apply to model {self.model!r}; remove it")
        if self.tiers is not None:
            problems.extend(_tier_problems(self.tiers))
        if (
            self.min_amount is not None
            and self.max_amount is not None
            and self.min_amount > self.max_amount
        ):
            problems.append(
                f"min_amount ({self.min_amount}) must not exceed max_amount ({self.max_amount})"
            )
        if problems:
            # One message listing every problem, so a caller fixes a definition in one round trip.
            raise ValueError("; ".join(problems))
        return self

    @property
    def specificity(self) -> int:
        """How many dimensions name an exact value (``"*"`` does not count)."""
        return len(concrete_dimensions(self))


def _tier_problems(tiers: Sequence[Tier]) -> list[str]:
    problems: list[str] = []
    last = len(tiers) - 1
    previous = 0
    for position, tier in enumerate(tiers):
        if position == last:
            if tier.up_to is not None:
                problems.append(f"the last tier (tiers[{position}]) must have up_to null")
        elif tier.up_to is None:
            problems.append(f"only the last tier may have up_to null, not tiers[{position}]")
        elif tier.up_to <= previous:
            problems.append(
                f"tiers[{position}].up_to ({tier.up_to}) must be greater than the previous "
                f"tier's ({previous})"
            )
        else:
            previous = tier.up_to
    return problems


def concrete_dimensions(price: Price) -> frozenset[tuple[str, str]]:
    """The dimensions a price actually constrains: ``"*"`` matches like an absent dimension."""
    if not price.dimensions:
        return frozenset()
    return frozenset((key, value) for key, value in price.dimensions.items() if value != WILDCARD)


def price_set_problem(prices: Sequence[Price]) -> str | None:
    """Why a version's prices cannot be used together, or None when they can.

    Two rules on top of each price being valid on its own:

    * two prices of one event type and one ``quantity_field`` must not constrain exactly the same
      dimensions, or nothing would say which of them applies (``{"model": "*"}`` constrains
      nothing, so it collides with a price without dimensions);
    * every price of an event type uses the same asset, so an event is charged in one asset.
    """
    if len(prices) > MAX_PRICES:
        return f"a version holds at most {MAX_PRICES} prices, not {len(prices)}"
    seen: dict[tuple[str, str | None, frozenset[tuple[str, str]]], int] = {}
    assets: dict[str, tuple[str, int]] = {}
    for index, price in enumerate(prices):
        key = (price.event_type, price.quantity_field, concrete_dimensions(price))
        if key in seen:
            return (
                f"prices[{seen[key]}] and prices[{index}] are ambiguous: same event_type "
                f"{price.event_type!r}, quantity_field {price.quantity_field!r} and dimensions "
                f"{dict(sorted(key[2]))}"
            )
        seen[key] = index
        first_asset, first_index = assets.setdefault(price.event_type, (price.asset, index))
        if price.asset != first_asset:
            return (
                f"event_type {price.event_type!r} is priced in {first_asset} by "
                f"prices[{first_index}] and in {price.asset} by prices[{index}]; "
                "all prices of one event type must use one asset"
            )
    return None


def validate_prices(prices: Sequence[Price]) -> None:
    """Check that a version's prices can be used together (see :func:`price_set_problem`).

    Raises:
        ValidationError: two prices are ambiguous, an event type mixes assets, or there are too
            many prices.
    """
    problem = price_set_problem(prices)
    if problem is not None:
        raise ValidationError(problem, field="prices")


class PriceSet(BaseModel):
    """A version's prices, checked together; for request bodies (errors surface as a 422)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prices: Annotated[list[Price], Field(max_length=MAX_PRICES)]

    @model_validator(mode="after")
    def _check_together(self) -> PriceSet:
        problem = price_set_problem(self.prices)
        if problem is not None:
            raise ValueError(problem)
        return self
