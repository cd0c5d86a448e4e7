"""Pure pricing: turn one usage event into a fee, with exact decimal arithmetic and no I/O.

Matching
    Only prices of the event's ``event_type`` apply. They are grouped by ``quantity_field``: each
    group is one metric (an LLM call may be charged for ``input_tokens`` and for
    ``output_tokens``). In each group the most specific price whose dimensions all match wins. A
    dimension matches when the price says ``"*"`` (any value, or no value at all) or when its
    value equals ``str(event.data[key])``; a price naming an exact value for a key the event lacks
    does not match. Specificity is the number of non-``"*"`` dimensions. Two equally specific
    matches (``{"model": "*", "region": "eu"}`` and ``{"model": "gpt-4o", "region": "*"}``) are
    settled by the order of the prices in the version: the earlier one wins. The event's fee is
    the sum over the groups that matched; when none did, the event is ``unmatched``.

Quantity
    ``data[quantity_field]``: a non-negative int, a decimal string (``"2.5"``) or a finite float
    (taken by its shortest repr, so ``0.1`` is 0.1), at most :data:`MAX_QUANTITY` and with at most
    18 decimal places; ``True``/``False`` are not numbers. Without ``quantity_field`` the quantity
    is 1 per event, except for ``percentage``, which then uses the sum of the event's vendor costs
    in the price's asset (0 without such costs). A missing or invalid quantity makes the whole
    event ``rejected`` with the reason: charging only the metrics that could be read would
    silently under-bill.

Models (all in exact :class:`~decimal.Decimal` arithmetic, never floats)
    * ``per_unit``: quantity x unit_price.
    * ``package``: unit_price buys ``package_size`` units and is prorated,
      quantity / package_size x unit_price, so 1,500 tokens at "15.00 per 1M" cost a fraction of
      a package, not a whole one.
    * ``tiered`` (graduated): each tier prices only the units that fall inside it (a tier with
      ``up_to=N`` covers units up to and including N), plus its ``flat_amount`` once if any unit
      falls into it. Quantity 0 touches no tier and costs 0.
    * ``volume``: every unit at the rate of the tier the total quantity falls in, plus that tier's
      ``flat_amount``. Quantity 0 costs 0: no usage, no flat fee.
    * ``percentage`` (cost-plus): quantity x percentage / 100.

Rounding: the one rule
    Each matched price gives an exact amount, clamped (still exact) to its ``min_amount`` and
    ``max_amount`` (a matched price charges its ``min_amount`` even for quantity 0). The event's
    fee is the sum of those, rounded **once per event** by :func:`round_minor`: half up
    (``ROUND_HALF_UP``) to a whole minor unit, so 2.5 becomes 3 and 2.4999 becomes 2, and two
    metrics of 2.5 each cost 5, not 6. The exact values stay in :class:`FeeComponent` (as
    strings) for audits. A product whose typical event costs a fraction of a cent should not rely
    on rounding: use a custom asset with a larger scale (for example credits worth 1/10,000 USD)
    so that one minor unit is small enough.

Limits
    A quantity above :data:`MAX_QUANTITY`, or a fee above
    :data:`walletflow.ledger.schemas.MAX_AMOUNT`, rejects the event instead of reaching the ledger.

Speed
    :class:`PriceBook` compiles a version once (index by event type, groups presorted by
    specificity, rates already Decimals) so :meth:`PriceBook.price` does no validation of the
    prices and no pydantic work per event; it is meant for tens of thousands of events a second.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Any, Literal

from walletflow.ledger.schemas import MAX_AMOUNT
from walletflow.pricing.schemas import Price, PriceModel, concrete_dimensions, validate_prices

FeeStatus = Literal["priced", "unmatched", "rejected"]

#: Largest quantity one event may report for one metric.
MAX_QUANTITY = 10**15
#: Finer quantities than 1e-18 are noise, and bounding them keeps products exact (see _CONTEXT).
MAX_QUANTITY_DECIMALS = 18

# Quantities and rates have at most 16 integer and 18 fractional digits, so a product has at most
# 68 significant digits and a sum of them a few more: 100 digits keep every result exact. Python's
# default context (28 digits) would silently round a large product. Only the package division can
# be inexact (1/3), and 100 digits are far finer than the half-unit that rounding looks at.
_CONTEXT = Context(
    prec=100, rounding=ROUND_HALF_UP, traps=[InvalidOperation, DivisionByZero, Overflow]
)
_ZERO = Decimal(0)
_ONE = Decimal(1)
_MAX_QUANTITY = Decimal(MAX_QUANTITY)
# Mirrors the schema's decimal strings but allows a sign, so "-5" is reported as negative rather
# than as unreadable.
_QUANTITY_STRING = re.compile(r"^-?\d{1,40}(\.\d{1,40})?$")


@dataclass(frozen=True, slots=True)
class VendorCost:
    """What a vendor charged the platform for the work behind an event, in minor units."""

    vendor: str
    asset: str
    amount: int


@dataclass(frozen=True, slots=True)
class PricedEventInput:
    """The part of an ingested event that pricing reads. Validated by the caller, not here."""

    event_type: str
    data: Mapping[str, Any]
    costs: Sequence[VendorCost] | None = None


@dataclass(frozen=True, slots=True)
class FeeComponent:
    """The charge of one matched price (one metric) for one event.

    Attributes:
        price_index: Position of the price in the version's ``prices``.
        quantity: The quantity priced, as a plain decimal string.
        exact_amount: The exact amount the price gives, as a plain decimal string.
        charged_amount: ``exact_amount`` after the price's min/max clamp, still exact (the
            event's fee rounds the sum of these once).
    """

    price_index: int
    quantity: str
    exact_amount: str
    charged_amount: str


@dataclass(frozen=True, slots=True)
class EventFee:
    """The outcome of pricing one event.

    Attributes:
        status: ``priced``; ``unmatched`` when no price applies; ``rejected`` when a price applies
            but the event cannot be priced (bad quantity, absurd amount).
        asset: The asset the fee is in; None when unmatched.
        amount: Minor units; 0 unless priced.
        components: One per matched price, in version order of their metric; empty unless priced.
        error: Why the event is unmatched or rejected; None when priced.
    """

    status: FeeStatus
    asset: str | None
    amount: int
    components: tuple[FeeComponent, ...] = ()
    error: str | None = None


def pricing_context() -> AbstractContextManager[Context]:
    """The decimal context pricing computes in (100 digits, half-up, traps on), for a caller
    pricing many events: enter it once and pass ``in_context=True`` to :meth:`PriceBook.price`."""
    return localcontext(_CONTEXT)


def round_minor(value: Decimal) -> int:
    """Round an exact amount to a whole minor unit, half up: the only rounding pricing does.

    ``ROUND_HALF_UP`` sends ties away from zero (2.5 -> 3); pricing never produces negative
    amounts, so for it this is plain "half up".
    """
    return int(value.to_integral_value(rounding=ROUND_HALF_UP, context=_CONTEXT))


class _Rejected(Exception):
    """Internal: an event that matched but cannot be priced. Never escapes PriceBook.price."""


@dataclass(frozen=True, slots=True)
class _Tier:
    up_to: Decimal | None
    unit_price: Decimal
    flat_amount: Decimal


@dataclass(frozen=True, slots=True)
class _CompiledPrice:
    """A Price reduced to what the hot path reads, with every rate already a Decimal."""

    index: int
    model: PriceModel
    asset: str
    quantity_field: str | None
    match: tuple[tuple[str, str], ...]  # the non-"*" dimensions, the only ones worth checking
    unit_price: Decimal
    package_size: Decimal
    tiers: tuple[_Tier, ...]
    percentage: Decimal
    min_amount: int | None
    max_amount: int | None

    @classmethod
    def of(cls, index: int, price: Price) -> _CompiledPrice:
        return cls(
            index=index,
            model=price.model,
            asset=price.asset,
            quantity_field=price.quantity_field,
            match=tuple(sorted(concrete_dimensions(price))),
            unit_price=price.unit_price if price.unit_price is not None else _ZERO,
            package_size=Decimal(price.package_size or 1),
            tiers=tuple(
                _Tier(
                    Decimal(tier.up_to) if tier.up_to is not None else None,
                    tier.unit_price,
                    Decimal(tier.flat_amount or 0),
                )
                for tier in price.tiers or ()
            ),
            percentage=price.percentage if price.percentage is not None else _ZERO,
            min_amount=price.min_amount,
            max_amount=price.max_amount,
        )


@dataclass(frozen=True, slots=True)
class _Metric:
    """The prices of one event type and one quantity_field, most specific first."""

    quantity_field: str | None
    candidates: tuple[_CompiledPrice, ...]

    def select(self, data: Mapping[str, Any]) -> _CompiledPrice | None:
        """The first candidate whose exact dimensions all equal the event's values, if any."""
        # Hot path: the loop is inlined rather than calling a method per candidate.
        for candidate in self.candidates:
            for key, value in candidate.match:
                if key not in data or str(data[key]) != value:
                    break
            else:
                return candidate
        return None


@dataclass(frozen=True, slots=True)
class _EventTypePrices:
    asset: str
    metrics: tuple[_Metric, ...]


class PriceBook:
    """A version's prices compiled for fast, repeated pricing. Build once per version."""

    def __init__(self, prices: Sequence[Price]) -> None:
        """Check the prices together and index them.

        Raises:
            walletflow.errors.ValidationError: the prices are ambiguous or mix assets within an
                event type (see :func:`walletflow.pricing.schemas.validate_prices`).
        """
        validate_prices(prices)
        groups: dict[str, dict[str | None, list[_CompiledPrice]]] = {}
        for index, price in enumerate(prices):
            compiled = _CompiledPrice.of(index, price)
            # dicts keep insertion order, so metrics come out in the order of their first price.
            groups.setdefault(price.event_type, {}).setdefault(price.quantity_field, []).append(
                compiled
            )
        self._by_event_type: dict[str, _EventTypePrices] = {}
        for event_type, metrics in groups.items():
            compiled_metrics = tuple(
                # Most specific first; among equals, the earlier price in the version wins.
                _Metric(field, tuple(sorted(candidates, key=lambda c: (-len(c.match), c.index))))
                for field, candidates in metrics.items()
            )
            asset = compiled_metrics[0].candidates[0].asset
            self._by_event_type[event_type] = _EventTypePrices(asset, compiled_metrics)

    def price(self, event: PricedEventInput, *, explain: bool = True, in_context: bool = False) -> EventFee:
        """Price one event. Never raises for bad event data: that comes back as ``rejected``.

        Args:
            event: The event's type, data and vendor costs.
            explain: Fill ``components`` (simulate shows them). Ingestion only needs the fee and
                passes False: formatting three decimals per component was a tenth of its CPU.
            in_context: The caller already runs inside :func:`pricing_context` (ingestion, for a
                whole batch: entering the decimal context once per event was about a tenth of
                the API server's CPU per usage batch).
        """
        if not in_context:
            with localcontext(_CONTEXT):
                return self.price(event, explain=explain, in_context=True)
        entry = self._by_event_type.get(event.event_type)
        if entry is None:
            return EventFee(
                "unmatched", None, 0, error=f"no price for event_type {event.event_type!r}"
            )
        data = event.data
        components: list[FeeComponent] = []
        matched = False
        try:
            exact_total = _ZERO
            for metric in entry.metrics:
                price = metric.select(data)
                if price is None:
                    continue
                matched = True
                quantity, exact, charged = _charge(price, event)
                exact_total += charged
                if explain:
                    components.append(
                        FeeComponent(price.index, _plain(quantity), _plain(exact), _plain(charged))
                    )
            total = round_minor(exact_total)  # the one rounding, once per event
        except _Rejected as rejection:
            return EventFee("rejected", entry.asset, 0, error=str(rejection))
        if not matched:
            return EventFee(
                "unmatched",
                None,
                0,
                error=f"no price of event_type {event.event_type!r} matches the event's dimensions",
            )
        if total > MAX_AMOUNT:
            return EventFee("rejected", entry.asset, 0, error=_too_large(total))
        return EventFee("priced", entry.asset, total, tuple(components))


def price_event(prices: Sequence[Price], event: PricedEventInput) -> EventFee:
    """Price one event against a version's prices (builds a :class:`PriceBook` each call).

    Raises:
        walletflow.errors.ValidationError: the prices cannot be used together.
    """
    return PriceBook(prices).price(event)


def _charge(price: _CompiledPrice, event: PricedEventInput) -> tuple[Decimal, Decimal, Decimal]:
    """One matched price's quantity, exact amount and exact, clamped charge. Runs inside
    ``_CONTEXT``."""
    if price.quantity_field is not None:
        quantity = _read_quantity(event.data, price.quantity_field)
    elif price.model == "percentage":
        quantity = _cost_total(event.costs, price.asset)
    else:
        quantity = _ONE
    exact = _exact_amount(price, quantity)
    charged = exact
    if price.min_amount is not None and charged < price.min_amount:
        charged = Decimal(price.min_amount)
    if price.max_amount is not None and charged > price.max_amount:
        charged = Decimal(price.max_amount)
    if charged > MAX_AMOUNT:
        raise _Rejected(_too_large(round_minor(charged)))
    return quantity, exact, charged


def _exact_amount(price: _CompiledPrice, quantity: Decimal) -> Decimal:
    model = price.model
    if model == "per_unit":
        return quantity * price.unit_price
    if model == "package":
        # Multiply first: the product is exact, so only the final division can round, and that
        # at 100 digits.
        return quantity * price.unit_price / price.package_size
    if model == "percentage":
        return quantity * price.percentage / 100
    if model == "tiered":
        return _graduated(price.tiers, quantity)
    return _volume(price.tiers, quantity)


def _graduated(tiers: tuple[_Tier, ...], quantity: Decimal) -> Decimal:
    total = _ZERO
    lower = _ZERO
    for tier in tiers:
        if quantity <= lower:
            break
        upper = quantity if tier.up_to is None or quantity < tier.up_to else tier.up_to
        total += (upper - lower) * tier.unit_price + tier.flat_amount
        if tier.up_to is None:
            break
        lower = tier.up_to
    return total


def _volume(tiers: tuple[_Tier, ...], quantity: Decimal) -> Decimal:
    if quantity == 0:
        return _ZERO
    for tier in tiers:
        if tier.up_to is None or quantity <= tier.up_to:
            return quantity * tier.unit_price + tier.flat_amount
    # Unreachable: the schema guarantees the last tier is open-ended.
    raise AssertionError("volume tiers without an open-ended last tier")


def _read_quantity(data: Mapping[str, Any], field: str) -> Decimal:
    """Read ``data[field]`` as a quantity or raise _Rejected with a reason a caller can act on."""
    if field not in data:
        raise _Rejected(f"data.{field} is missing; it holds this event's quantity")
    raw = data[field]
    # bool is a subclass of int: without this check True would be billed as 1 unit.
    if isinstance(raw, bool):
        raise _Rejected(f"data.{field} must be a number, not a boolean")
    if isinstance(raw, int):
        if raw < 0:
            raise _Rejected(f"data.{field} must not be negative, got {raw}")
        if raw > MAX_QUANTITY:
            raise _Rejected(f"data.{field} must be at most {MAX_QUANTITY}, got {raw}")
        return Decimal(raw)
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise _Rejected(f"data.{field} must be a finite number, got {raw}")
        # repr gives the shortest string that round-trips, i.e. what the sender wrote in JSON.
        value = Decimal(repr(raw))
    elif isinstance(raw, Decimal):
        if not raw.is_finite():
            raise _Rejected(f"data.{field} must be a finite number, got {raw}")
        value = raw
    elif isinstance(raw, str):
        if not _QUANTITY_STRING.match(raw):
            raise _Rejected(
                f'data.{field} must be a non-negative number or decimal string such as "2.5", '
                f"got {raw[:50]!r}"
            )
        value = Decimal(raw)
    else:
        raise _Rejected(f"data.{field} must be a number, got {type(raw).__name__}")
    if value < 0:
        raise _Rejected(f"data.{field} must not be negative, got {raw}")
    if value > _MAX_QUANTITY:
        raise _Rejected(f"data.{field} must be at most {MAX_QUANTITY}, got {raw}")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_QUANTITY_DECIMALS:
        # Trailing zeros count too ("1.0000000000000000000"); reject rather than guess.
        raise _Rejected(f"data.{field} has more than {MAX_QUANTITY_DECIMALS} decimal places")
    return value


def _cost_total(costs: Sequence[VendorCost] | None, asset: str) -> Decimal:
    """Sum of the event's vendor costs in ``asset``: the base of a cost-plus price."""
    total = 0
    for position, cost in enumerate(costs or ()):
        if cost.asset != asset:
            continue
        amount = cost.amount
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_AMOUNT:
            raise _Rejected(
                f"costs[{position}].amount must be an integer number of minor units between 0 "
                f"and {MAX_AMOUNT}"
            )
        total += amount
    if total > MAX_QUANTITY:
        raise _Rejected(f"the event's costs in {asset} add up to more than {MAX_QUANTITY}")
    return Decimal(total)


def _plain(value: Decimal) -> str:
    """A Decimal as plain notation without trailing zeros: "1500", "0.3", never "1.5E+3"."""
    if not value:
        return "0"
    return format(value.normalize(_CONTEXT), "f")


def _too_large(amount: int) -> str:
    return f"the fee ({amount} minor units) is above the limit of {MAX_AMOUNT}"
