"""The pricing engine and the Price schema: every model, matching, rounding, limits, validation.

Expected amounts are hand-computed; the arithmetic is in a comment next to each literal.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pydantic
import pytest

from walletflow.errors import ValidationError
from walletflow.ledger.schemas import MAX_AMOUNT
from walletflow.pricing.engine import (
    EventFee,
    FeeComponent,
    PriceBook,
    PricedEventInput,
    VendorCost,
    price_event,
    round_minor,
)
from walletflow.pricing.schemas import Price, PriceSet, validate_prices

# A ladder for tiered and volume tests: units 1-100 at 1, 101-1000 at 0.5, above at 0.1.
LADDER: list[dict[str, Any]] = [
    {"up_to": 100, "unit_price": "1"},
    {"up_to": 1000, "unit_price": "0.5"},
    {"up_to": None, "unit_price": "0.1"},
]
# The same ladder with flat amounts on the first two tiers.
LADDER_WITH_FLATS: list[dict[str, Any]] = [
    {"up_to": 100, "unit_price": "1", "flat_amount": 1000},
    {"up_to": 1000, "unit_price": "0.5", "flat_amount": 500},
    {"up_to": None, "unit_price": "0.1"},
]


def make_price(**fields: Any) -> Price:
    """A Price for event type "llm" in USD unless the test says otherwise."""
    return Price.model_validate({"event_type": "llm", "asset": "USD", **fields})


def fee(
    prices: list[Price],
    data: dict[str, Any] | None = None,
    *,
    event_type: str = "llm",
    costs: list[VendorCost] | None = None,
) -> EventFee:
    return PriceBook(prices).price(PricedEventInput(event_type, data or {}, costs))


def amount_of(price: Price, quantity: object, field: str = "units") -> int:
    """Price one event carrying ``quantity`` in ``data[field]`` and insist that it was priced."""
    result = fee([price], {field: quantity})
    assert result.status == "priced", result.error
    return result.amount


# --- per_unit and package -------------------------------------------------------------------


def test_per_unit_multiplies_quantity_by_unit_price() -> None:
    price = make_price(model="per_unit", quantity_field="tokens", unit_price="0.002")
    result = fee([price], {"tokens": 12345})
    # 12345 x 0.002 = 24.69 -> 25
    assert result == EventFee(
        "priced",
        "USD",
        25,
        (FeeComponent(price_index=0, quantity="12345", exact_amount="24.69", charged_amount="24.69"),),
    )


def test_per_unit_without_quantity_field_charges_one_unit_per_event() -> None:
    price = make_price(model="per_unit", unit_price="250")
    result = fee([price], {"tokens": 999})
    # 1 x 250 = 250, whatever the data says
    assert (result.status, result.amount, result.components[0].quantity) == ("priced", 250, "1")


def test_quantity_may_be_a_decimal_string_a_float_or_a_decimal() -> None:
    price = make_price(model="per_unit", quantity_field="gb_hours", unit_price="10")
    # 2.5 x 10 = 25, however the 2.5 arrives
    assert amount_of(price, "2.5", "gb_hours") == 25
    assert amount_of(price, 2.5, "gb_hours") == 25
    assert amount_of(price, Decimal("2.5"), "gb_hours") == 25
    # 0.1 x 10 = 1 exactly: the float is read by its repr, not as 0.1000000000000000055...
    assert amount_of(price, 0.1, "gb_hours") == 1


def test_package_is_prorated_not_rounded_up_to_whole_packages() -> None:
    # 15.00 USD per 1M tokens = 1500 cents per package of 1,000,000 tokens
    price = make_price(
        model="package", quantity_field="tokens", unit_price="1500", package_size=1_000_000
    )
    # 1500 / 1,000,000 x 1500 = 2.25 -> 2 (a whole package would have been 1500)
    assert amount_of(price, 1500, "tokens") == 2
    # 3,000,000 / 1,000,000 x 1500 = 4500
    assert amount_of(price, 3_000_000, "tokens") == 4500
    # 1,234,567 / 1,000,000 x 1500 = 1851.8505 -> 1852
    result = fee([price], {"tokens": 1_234_567})
    assert (result.amount, result.components[0].exact_amount) == (1852, "1851.8505")


def test_package_with_a_repeating_fraction_rounds_like_any_other_amount() -> None:
    price = make_price(model="package", quantity_field="units", unit_price="1", package_size=3)
    # 1 / 3 x 1 = 0.333... -> 0
    assert amount_of(price, 1) == 0
    # 2 / 3 x 1 = 0.666... -> 1
    assert amount_of(price, 2) == 1
    # 5 / 3 x 1 = 1.666... -> 2
    assert amount_of(price, 5) == 2


# --- tiered (graduated) ---------------------------------------------------------------------


def test_tiered_prices_each_unit_in_its_own_tier_at_the_boundaries() -> None:
    price = make_price(model="tiered", quantity_field="units", tiers=LADDER)
    # 100 x 1 = 100 (exactly at up_to: still the first tier)
    assert amount_of(price, 100) == 100
    # 100 x 1 + 1 x 0.5 = 100.5 -> 101 (one above: that unit is in the second tier)
    assert amount_of(price, 101) == 101
    # 100 x 1 + 900 x 0.5 = 550
    assert amount_of(price, 1000) == 550
    # 100 x 1 + 900 x 0.5 + 1 x 0.1 = 550.1 -> 550
    assert amount_of(price, 1001) == 550
    # 100 x 1 + 900 x 0.5 + 1000 x 0.1 = 650
    assert amount_of(price, 2000) == 650
    # 50 x 1 = 50
    assert amount_of(price, 50) == 50


def test_tiered_adds_a_flat_amount_once_per_tier_reached() -> None:
    price = make_price(model="tiered", quantity_field="units", tiers=LADDER_WITH_FLATS)
    # 1 x 1 + flat 1000 = 1001
    assert amount_of(price, 1) == 1001
    # 100 x 1 + flat 1000 = 1100 (no unit in the second tier, so no second flat)
    assert amount_of(price, 100) == 1100
    # 100 x 1 + 1000 + 1 x 0.5 + 500 = 1600.5 -> 1601
    assert amount_of(price, 101) == 1601
    # 100 + 1000 + 900 x 0.5 + 500 + 1 x 0.1 = 2050.1 -> 2050
    assert amount_of(price, 1001) == 2050


def test_tiered_quantity_zero_costs_nothing_not_even_a_flat_amount() -> None:
    price = make_price(model="tiered", quantity_field="units", tiers=LADDER_WITH_FLATS)
    result = fee([price], {"units": 0})
    assert (result.status, result.amount) == ("priced", 0)


def test_tiered_with_a_fractional_quantity_splits_at_the_boundary() -> None:
    price = make_price(model="tiered", quantity_field="units", tiers=LADDER)
    # 100 x 1 + 0.5 x 0.5 = 100.25 -> 100
    result = fee([price], {"units": "100.5"})
    assert (result.amount, result.components[0].exact_amount) == (100, "100.25")


# --- volume ---------------------------------------------------------------------------------


def test_volume_prices_all_units_at_the_tier_of_the_total() -> None:
    price = make_price(model="volume", quantity_field="units", tiers=LADDER)
    # 100 x 1 = 100 (exactly at up_to: first tier)
    assert amount_of(price, 100) == 100
    # 101 x 0.5 = 50.5 -> 51 (one above: every unit switches to the second tier)
    assert amount_of(price, 101) == 51
    # 1000 x 0.5 = 500
    assert amount_of(price, 1000) == 500
    # 1001 x 0.1 = 100.1 -> 100
    assert amount_of(price, 1001) == 100
    # 5000 x 0.1 = 500
    assert amount_of(price, 5000) == 500


def test_volume_adds_the_flat_amount_of_the_tier_reached_only() -> None:
    price = make_price(model="volume", quantity_field="units", tiers=LADDER_WITH_FLATS)
    # 100 x 1 + 1000 = 1100
    assert amount_of(price, 100) == 1100
    # 101 x 0.5 + 500 = 550.5 -> 551 (the first tier's flat no longer applies)
    assert amount_of(price, 101) == 551
    # 2000 x 0.1 + 0 (the last tier has no flat) = 200
    assert amount_of(price, 2000) == 200


def test_volume_quantity_zero_costs_nothing() -> None:
    price = make_price(model="volume", quantity_field="units", tiers=LADDER_WITH_FLATS)
    result = fee([price], {"units": 0})
    assert (result.status, result.amount) == ("priced", 0)


# --- percentage (cost-plus) -----------------------------------------------------------------


def test_percentage_of_the_vendor_costs_in_the_price_asset() -> None:
    price = make_price(model="percentage", percentage="120")
    costs = [
        VendorCost("openai", "USD", 1000),
        VendorCost("anthropic", "USD", 250),
        VendorCost("mistral", "EUR", 999),  # another asset: not part of this price's base
    ]
    result = fee([price], costs=costs)
    # (1000 + 250) x 120 / 100 = 1500
    assert result == EventFee(
        "priced",
        "USD",
        1500,
        (FeeComponent(price_index=0, quantity="1250", exact_amount="1500", charged_amount="1500"),),
    )


def test_percentage_without_costs_is_zero() -> None:
    price = make_price(model="percentage", percentage="120")
    # 0 x 120 / 100 = 0
    assert (fee([price]).status, fee([price]).amount) == ("priced", 0)
    # only costs in another asset: still 0
    assert fee([price], costs=[VendorCost("openai", "EUR", 500)]).amount == 0


def test_percentage_of_a_data_field() -> None:
    price = make_price(model="percentage", quantity_field="cost_minor", percentage="130")
    # 12.5 x 130 / 100 = 16.25 -> 16
    result = fee([price], {"cost_minor": "12.5"}, costs=[VendorCost("openai", "USD", 9999)])
    assert (result.amount, result.components[0].exact_amount) == (16, "16.25")


def test_percentage_rejects_a_malformed_cost() -> None:
    price = make_price(model="percentage", percentage="120")
    result = fee([price], costs=[VendorCost("openai", "USD", -5)])
    assert result.status == "rejected"
    assert result.error is not None and "costs[0].amount" in result.error


# --- rounding -------------------------------------------------------------------------------


def test_round_minor_rounds_half_up() -> None:
    assert round_minor(Decimal("2.5")) == 3  # banker's rounding would give 2
    assert round_minor(Decimal("3.5")) == 4
    assert round_minor(Decimal("0.5")) == 1
    assert round_minor(Decimal("2.4999999999")) == 2
    assert round_minor(Decimal("2.5000000001")) == 3
    assert round_minor(Decimal(7)) == 7
    assert round_minor(Decimal("0.4")) == 0


def test_the_engine_rounds_each_event_half_up() -> None:
    price = make_price(model="per_unit", quantity_field="units", unit_price="0.5")
    # 5 x 0.5 = 2.5 -> 3
    assert amount_of(price, 5) == 3
    # 4.9998 x 0.5 = 2.4999 -> 2
    assert amount_of(price, "4.9998") == 2
    # 1 x 0.5 = 0.5 -> 1
    assert amount_of(price, 1) == 1


def test_rounding_is_exact_for_amounts_beyond_28_digits_of_precision() -> None:
    # Python's default decimal context keeps 28 digits; this product needs 34.
    price = make_price(model="per_unit", quantity_field="units", unit_price="0.000000000000000001")
    # 999,999,999,999,999.5 x 1e-18 = 0.0009999999999999995 -> 0
    result = fee([price], {"units": "999999999999999.5"})
    assert (result.amount, result.components[0].exact_amount) == (0, "0.0009999999999999995")
    big = make_price(model="per_unit", quantity_field="units", unit_price="1.000000000000000001")
    # 10^14 x 1.000000000000000001 = 100,000,000,000,000.0001 -> 100,000,000,000,000
    result = fee([big], {"units": 10**14})
    assert (result.amount, result.components[0].exact_amount) == (
        100_000_000_000_000,
        "100000000000000.0001",
    )


# --- min and max ----------------------------------------------------------------------------


def test_min_amount_raises_a_small_fee_after_rounding() -> None:
    price = make_price(model="per_unit", quantity_field="units", unit_price="0.2", min_amount=5)
    result = fee([price], {"units": 1})
    # 1 x 0.2 = 0.2 -> 0 -> min 5
    assert result.amount == 5
    assert result.components[0].exact_amount == "0.2"  # the exact value stays unclamped
    # 100 x 0.2 = 20, above the minimum
    assert amount_of(price, 100) == 20
    # 0 x 0.2 = 0 -> min 5: the price matched, so its minimum applies
    assert amount_of(price, 0) == 5


def test_max_amount_caps_a_large_fee_after_rounding() -> None:
    price = make_price(model="per_unit", quantity_field="units", unit_price="10", max_amount=2500)
    # 1000 x 10 = 10000 -> max 2500
    assert amount_of(price, 1000) == 2500
    # 3 x 10 = 30, below the maximum
    assert amount_of(price, 3) == 30


def test_min_and_max_apply_per_price_not_per_event() -> None:
    prices = [
        make_price(model="per_unit", quantity_field="input_tokens", unit_price="1", max_amount=10),
        make_price(model="per_unit", quantity_field="output_tokens", unit_price="1", min_amount=7),
    ]
    # min(50, 10) + max(2, 7) = 10 + 7 = 17
    assert fee(prices, {"input_tokens": 50, "output_tokens": 2}).amount == 17


# --- matching -------------------------------------------------------------------------------


def by_model() -> list[Price]:
    return [
        make_price(model="per_unit", dimensions={"model": "*"}, unit_price="1"),
        make_price(model="per_unit", dimensions={"model": "gpt-4o"}, unit_price="3"),
        make_price(
            model="per_unit", dimensions={"model": "gpt-4o", "region": "eu"}, unit_price="4"
        ),
    ]


def test_most_specific_matching_price_wins() -> None:
    prices = by_model()
    # 1 x 4: both dimensions match
    assert fee(prices, {"model": "gpt-4o", "region": "eu"}).components[0].price_index == 2
    assert fee(prices, {"model": "gpt-4o", "region": "eu"}).amount == 4
    # 1 x 3: the region differs, so the one-dimension price applies
    assert fee(prices, {"model": "gpt-4o", "region": "us"}).amount == 3
    # 1 x 3: no region at all
    assert fee(prices, {"model": "gpt-4o"}).amount == 3


def test_wildcard_is_the_fallback_even_without_the_key() -> None:
    prices = by_model()
    # 1 x 1: unknown model falls back to "*"
    assert fee(prices, {"model": "gpt-4o-mini"}).amount == 1
    # 1 x 1: "*" also matches an event without a model field
    assert fee(prices, {}).amount == 1


def test_an_exact_dimension_needs_the_key_and_compares_as_a_string() -> None:
    price = make_price(model="per_unit", dimensions={"tier": "2"}, unit_price="9")
    assert fee([price], {}).status == "unmatched"
    assert fee([price], {"tier": "3"}).status == "unmatched"
    # str(2) == "2": 1 x 9 = 9
    assert fee([price], {"tier": 2}).amount == 9


def test_equally_specific_matches_are_settled_by_version_order() -> None:
    eu = make_price(model="per_unit", dimensions={"model": "*", "region": "eu"}, unit_price="7")
    gpt = make_price(
        model="per_unit", dimensions={"model": "gpt-4o", "region": "*"}, unit_price="9"
    )
    data = {"model": "gpt-4o", "region": "eu"}
    # both have one exact dimension: the earlier price wins
    assert fee([eu, gpt], data).amount == 7
    assert fee([gpt, eu], data).amount == 9


def test_two_metrics_are_summed_exactly_then_rounded_once() -> None:
    prices = [
        # 2.50 USD per 1M input tokens = 0.00025 cents per token
        make_price(model="per_unit", quantity_field="input_tokens", unit_price="0.00025"),
        # 10.00 USD per 1M output tokens = 0.001 cents per token
        make_price(model="per_unit", quantity_field="output_tokens", unit_price="0.001"),
    ]
    result = fee(prices, {"input_tokens": 10_000, "output_tokens": 2_500})
    # 10,000 x 0.00025 = 2.5 ; 2,500 x 0.001 = 2.5 ; 2.5 + 2.5 = 5, rounded once: 5
    # (rounding each price first would give 3 + 3 = 6)
    assert result == EventFee(
        "priced",
        "USD",
        5,
        (
            FeeComponent(price_index=0, quantity="10000", exact_amount="2.5", charged_amount="2.5"),
            FeeComponent(price_index=1, quantity="2500", exact_amount="2.5", charged_amount="2.5"),
        ),
    )


def test_each_metric_picks_its_own_most_specific_price() -> None:
    prices = [
        make_price(
            model="per_unit",
            quantity_field="input_tokens",
            dimensions={"model": "*"},
            unit_price="1",
        ),
        make_price(model="per_unit", quantity_field="output_tokens", unit_price="2"),
        make_price(
            model="per_unit",
            quantity_field="input_tokens",
            dimensions={"model": "big"},
            unit_price="10",
        ),
    ]
    result = fee(prices, {"model": "big", "input_tokens": 3, "output_tokens": 4})
    # input: 3 x 10 = 30 (prices[2]) ; output: 4 x 2 = 8 (prices[1]) ; 30 + 8 = 38
    assert result.amount == 38
    assert [c.price_index for c in result.components] == [2, 1]


def test_a_metric_without_a_matching_price_is_simply_not_charged() -> None:
    prices = [
        make_price(model="per_unit", quantity_field="input_tokens", unit_price="1"),
        make_price(
            model="per_unit",
            quantity_field="images",
            dimensions={"model": "dall-e"},
            unit_price="40",
        ),
    ]
    # 5 x 1 = 5; the images price needs model=dall-e, so its quantity is not even read
    result = fee(prices, {"model": "gpt-4o", "input_tokens": 5})
    assert (result.status, result.amount, len(result.components)) == ("priced", 5, 1)


def test_unmatched_event_type_and_unmatched_dimensions() -> None:
    price = make_price(model="per_unit", dimensions={"model": "gpt-4o"}, unit_price="1")
    unknown = fee([price], {"model": "gpt-4o"}, event_type="image")
    assert (unknown.status, unknown.asset, unknown.amount, unknown.components) == (
        "unmatched",
        None,
        0,
        (),
    )
    assert unknown.error is not None and "'image'" in unknown.error
    other = fee([price], {"model": "claude"})
    assert (other.status, other.amount) == ("unmatched", 0)


# --- rejected events ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({}, "missing"),
        ({"units": -1}, "negative"),
        ({"units": "-2.5"}, "negative"),
        ({"units": -0.5}, "negative"),
        ({"units": True}, "boolean"),
        ({"units": "abc"}, "decimal string"),
        ({"units": "1e3"}, "decimal string"),
        ({"units": float("nan")}, "finite"),
        ({"units": float("inf")}, "finite"),
        ({"units": None}, "must be a number"),
        ({"units": [1]}, "must be a number"),
        ({"units": 10**15 + 1}, "at most"),
        ({"units": "1000000000000000.5"}, "at most"),
        ({"units": "0." + "0" * 18 + "1"}, "decimal places"),
    ],
)
def test_bad_quantities_reject_the_event_with_a_reason(data: dict[str, Any], reason: str) -> None:
    price = make_price(model="per_unit", quantity_field="units", unit_price="1")
    result = fee([price], data)
    assert (result.status, result.asset, result.amount, result.components) == (
        "rejected",
        "USD",
        0,
        (),
    )
    assert result.error is not None and reason in result.error
    assert "data.units" in result.error


def test_the_largest_quantity_is_accepted() -> None:
    price = make_price(model="per_unit", quantity_field="units", unit_price="1")
    # 10^15 x 1 = 10^15, exactly the limit
    assert amount_of(price, 10**15) == MAX_AMOUNT


def test_a_fee_above_the_limit_is_rejected() -> None:
    price = make_price(model="per_unit", quantity_field="units", unit_price="2")
    # 10^15 x 2 = 2 x 10^15 > 10^15
    result = fee([price], {"units": 10**15})
    assert (result.status, result.amount) == ("rejected", 0)
    assert result.error is not None and "limit" in result.error


def test_a_sum_of_components_above_the_limit_is_rejected() -> None:
    prices = [
        make_price(model="per_unit", quantity_field="a", unit_price="1"),
        make_price(model="per_unit", quantity_field="b", unit_price="1"),
    ]
    # 10^15 + 1 > 10^15, though each component is within the limit
    result = fee(prices, {"a": 10**15, "b": 1})
    assert result.status == "rejected"


def test_a_max_amount_keeps_a_huge_exact_fee_within_the_limit() -> None:
    price = make_price(model="per_unit", quantity_field="units", unit_price="1000", max_amount=50)
    # 10^15 x 1000 = 10^18 -> max 50
    assert amount_of(price, 10**15) == 50


def test_one_bad_metric_rejects_the_whole_event() -> None:
    prices = [
        make_price(model="per_unit", quantity_field="input_tokens", unit_price="1"),
        make_price(model="per_unit", quantity_field="output_tokens", unit_price="1"),
    ]
    result = fee(prices, {"input_tokens": 10})
    assert (result.status, result.amount) == ("rejected", 0)
    assert result.error is not None and "data.output_tokens is missing" in result.error


# --- entry points ---------------------------------------------------------------------------


def test_price_event_matches_the_price_book() -> None:
    prices = by_model()
    event = PricedEventInput("llm", {"model": "gpt-4o"})
    assert price_event(prices, event) == PriceBook(prices).price(event)
    assert price_event(prices, event).amount == 3


def test_price_book_refuses_a_conflicting_version() -> None:
    with pytest.raises(ValidationError):
        PriceBook(
            [
                make_price(model="per_unit", unit_price="1"),
                make_price(model="per_unit", unit_price="2"),
            ]
        )


# --- price definitions ----------------------------------------------------------------------


def test_a_price_round_trips_through_json_with_decimal_strings() -> None:
    price = make_price(
        model="tiered",
        quantity_field="tokens",
        dimensions={"model": "gpt-4o"},
        tiers=LADDER_WITH_FLATS,
        min_amount=1,
    )
    dumped = price.model_dump(mode="json", exclude_none=True)
    assert dumped["tiers"][1] == {"up_to": 1000, "unit_price": "0.5", "flat_amount": 500}
    assert Price.model_validate_json(price.model_dump_json()) == price
    assert make_price(model="per_unit", unit_price="0.0002").unit_price == Decimal("0.0002")


BASE: dict[str, Any] = {"event_type": "llm", "asset": "USD"}
OPEN: dict[str, Any] = {"up_to": None, "unit_price": "0.1"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "per_unit"}, "requires unit_price"),
        ({"model": "package", "unit_price": "1500"}, "requires package_size"),
        ({"model": "package", "package_size": 1000}, "requires unit_price"),
        ({"model": "package", "unit_price": "1", "package_size": 0}, "greater than or equal to 1"),
        ({"model": "tiered"}, "requires tiers"),
        ({"model": "volume"}, "requires tiers"),
        ({"model": "percentage"}, "requires percentage"),
        ({"model": "per_unit", "unit_price": "1", "tiers": LADDER}, "tiers does not apply"),
        ({"model": "tiered", "tiers": LADDER, "unit_price": "1"}, "unit_price does not apply"),
        (
            {"model": "percentage", "percentage": "120", "package_size": 10},
            "package_size does not apply",
        ),
        ({"model": "tiered", "tiers": []}, "at least 1 item"),
        (
            {
                "model": "tiered",
                "tiers": [
                    {"up_to": 100, "unit_price": "1"},
                    {"up_to": 100, "unit_price": "1"},
                    OPEN,
                ],
            },
            "must be greater than the previous",
        ),
        (
            {
                "model": "volume",
                "tiers": [
                    {"up_to": 100, "unit_price": "1"},
                    {"up_to": 50, "unit_price": "1"},
                    OPEN,
                ],
            },
            "must be greater than the previous",
        ),
        ({"model": "tiered", "tiers": [{"up_to": 100, "unit_price": "1"}]}, "must have up_to null"),
        (
            {
                "model": "tiered",
                "tiers": [{"up_to": None, "unit_price": "1"}, {"up_to": None, "unit_price": "1"}],
            },
            "only the last tier",
        ),
        (
            {
                "model": "tiered",
                "tiers": [{"up_to": 0, "unit_price": "1"}, {"up_to": None, "unit_price": "1"}],
            },
            "up_to",
        ),
        ({"model": "tiered", "tiers": [{"up_to": None, "unit_price": 0.5}]}, "not a float"),
        (
            {"model": "tiered", "tiers": [{"up_to": None, "unit_price": "1", "flat_amount": -1}]},
            "flat_amount",
        ),
        ({"model": "per_unit", "unit_price": 0.0002}, "not a float"),
        ({"model": "per_unit", "unit_price": 2}, "must be a decimal string"),
        ({"model": "per_unit", "unit_price": "-1"}, "not a non-negative decimal string"),
        ({"model": "per_unit", "unit_price": "1e-4"}, "not a non-negative decimal string"),
        ({"model": "per_unit", "unit_price": "NaN"}, "not a non-negative decimal string"),
        (
            {"model": "per_unit", "unit_price": "0." + "0" * 18 + "1"},
            "not a non-negative decimal string",
        ),
        ({"model": "percentage", "percentage": 120.0}, "not a float"),
        (
            {"model": "per_unit", "unit_price": "1", "currency": "USD"},
            "Extra inputs are not permitted",
        ),
        (
            {"model": "per_unit", "unit_price": "1", "min_amount": 10, "max_amount": 5},
            "must not exceed max_amount",
        ),
        ({"model": "per_unit", "unit_price": "1", "min_amount": -1}, "min_amount"),
        ({"model": "per_unit", "unit_price": "1", "max_amount": 10**15 + 1}, "max_amount"),
        ({"model": "per_unit", "unit_price": "1", "min_amount": "5"}, "min_amount"),
        ({"model": "flat", "unit_price": "1"}, "model"),
        ({"model": "per_unit", "unit_price": "1", "event_type": ""}, "event_type"),
        ({"model": "per_unit", "unit_price": "1", "event_type": "e" * 101}, "event_type"),
        ({"model": "per_unit", "unit_price": "1", "asset": "usd"}, "asset"),
        ({"model": "per_unit", "unit_price": "1", "dimensions": {"model": 4}}, "dimensions"),
    ],
)
def test_bad_price_definitions_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        Price.model_validate({**BASE, **fields})
    assert message in str(caught.value)


def test_every_problem_of_a_definition_is_reported_at_once() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        Price.model_validate(
            {**BASE, "model": "per_unit", "tiers": LADDER, "min_amount": 2, "max_amount": 1}
        )
    text = str(caught.value)
    assert "requires unit_price" in text
    assert "tiers does not apply" in text
    assert "must not exceed max_amount" in text


def test_ambiguous_duplicate_prices_are_refused() -> None:
    first = make_price(
        model="per_unit", quantity_field="tokens", dimensions={"model": "gpt-4o"}, unit_price="1"
    )
    twin = make_price(
        model="per_unit", quantity_field="tokens", dimensions={"model": "gpt-4o"}, unit_price="2"
    )
    with pytest.raises(ValidationError) as caught:
        validate_prices([first, twin])
    assert "prices[0] and prices[1] are ambiguous" in caught.value.detail


def test_a_wildcard_dimension_collides_with_no_dimension() -> None:
    bare = make_price(model="per_unit", unit_price="1")
    star = make_price(model="per_unit", dimensions={"model": "*"}, unit_price="2")
    with pytest.raises(ValidationError, match="ambiguous"):
        validate_prices([bare, star])


def test_prices_that_differ_in_metric_dimensions_or_event_type_are_fine() -> None:
    validate_prices(
        [
            make_price(model="per_unit", quantity_field="input_tokens", unit_price="1"),
            make_price(model="per_unit", quantity_field="output_tokens", unit_price="1"),
            make_price(
                model="per_unit",
                quantity_field="input_tokens",
                dimensions={"model": "a"},
                unit_price="1",
            ),
            make_price(
                model="per_unit",
                quantity_field="input_tokens",
                dimensions={"model": "b"},
                unit_price="1",
            ),
            make_price(model="per_unit", event_type="image", asset="CREDITS", unit_price="1"),
        ]
    )


def test_one_event_type_cannot_mix_assets() -> None:
    usd = make_price(model="per_unit", quantity_field="input_tokens", unit_price="1")
    credits = make_price(
        model="per_unit", quantity_field="output_tokens", asset="CREDITS", unit_price="1"
    )
    with pytest.raises(ValidationError) as caught:
        validate_prices([usd, credits])
    assert "one asset" in caught.value.detail
    assert caught.value.code == "validation_error"


def test_price_set_reports_conflicts_as_a_pydantic_error() -> None:
    body = {
        "prices": [
            {**BASE, "model": "per_unit", "unit_price": "1"},
            {**BASE, "model": "per_unit", "unit_price": "2"},
        ]
    }
    with pytest.raises(pydantic.ValidationError, match="ambiguous"):
        PriceSet.model_validate(body)
    assert len(PriceSet.model_validate({"prices": body["prices"][:1]}).prices) == 1
