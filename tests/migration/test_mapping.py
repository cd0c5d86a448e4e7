"""The mapping rules on Stripe's shapes (no I/O), and the client-side rate limiter."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from walletflow.migration import mapping
from walletflow.migration.stripe_source import TokenBucket

NOW = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)
LATER = int((NOW + dt.timedelta(days=30)).timestamp())
EARLIER = int((NOW - dt.timedelta(days=1)).timestamp())
METERS = {"mtr_1": {"id": "mtr_1", "event_name": "tokens", "default_aggregation": {"formula": "sum"},
                    "value_settings": {"event_payload_key": "input_tokens"}},
          "mtr_c": {"id": "mtr_c", "event_name": "calls", "default_aggregation": {"formula": "count"}},
          "mtr_l": {"id": "mtr_l", "event_name": "seats", "default_aggregation": {"formula": "last"}}}


def grant(**over: object) -> dict[str, object]:
    return {"id": "credgr_1", "customer": "cus_1", "category": "paid", "priority": 20, "expires_at": LATER,
            "effective_at": EARLIER, "voided_at": None,
            "amount": {"type": "monetary", "monetary": {"value": 1000, "currency": "usd"}}, **over}


def test_a_negative_balance_is_credit_and_a_positive_one_is_debt_not_imported() -> None:
    plan, debt = mapping.plan_balance({"id": "cus_1", "balance": -1234, "currency": "usd"}, "cbtxn_9")
    assert debt is None and plan is not None
    assert (plan.key, plan.asset, plan.amount, plan.source, plan.priority, plan.expires_at) == (
        "migration:stripe:balance:cus_1", "USD", 1234, "migrated", mapping.BALANCE_PRIORITY, None)
    plan, debt = mapping.plan_balance({"id": "cus_2", "balance": 500, "currency": "eur"}, None)
    assert plan is None and debt == {"reason": "debt", "asset": "EUR", "amount": 500}
    assert mapping.plan_balance({"id": "cus_3", "balance": 0}, None) == (None, None)
    assert mapping.plan_balance({"id": "cus_4", "balance": -5, "currency": "jpy"}, None)[0].asset == "JPY"  # type: ignore[union-attr]


def test_a_credit_grant_keeps_what_is_left_its_expiry_priority_and_category() -> None:
    plan, reason = mapping.plan_credit_grant(grant(category="promotional", priority=None), {"usd": 700}, NOW)
    assert reason is None and plan is not None
    assert (plan.key, plan.amount, plan.source, plan.priority, plan.expires_at, plan.effective_at) == (
        "migration:stripe:credit_grant:credgr_1", 700, "promotional", 50,
        dt.datetime.fromtimestamp(LATER, dt.UTC), None)
    assert plan.metadata["stripe_amount"] == 1000
    future = int((NOW + dt.timedelta(days=2)).timestamp())
    scheduled, _ = mapping.plan_credit_grant(grant(effective_at=future), {"usd": 1000}, NOW)
    assert scheduled is not None and scheduled.effective_at == dt.datetime.fromtimestamp(future, dt.UTC)


@pytest.mark.parametrize(("over", "available", "reason"), [
    ({"voided_at": EARLIER}, {"usd": 1000}, "skipped: voided"),
    ({"expires_at": EARLIER}, {"usd": 1000}, "skipped: expired"),
    ({}, {"usd": 0}, "skipped: used up"),
    ({"amount": {"type": "custom_pricing_unit", "custom_pricing_unit": {"value": "5"}}}, None,
     "unmapped: not a monetary grant"),
])
def test_grants_that_are_not_imported_say_why(over: dict[str, object], available: dict[str, int] | None,
                                              reason: str) -> None:
    assert mapping.plan_credit_grant(grant(**over), available, NOW) == (None, reason)


def price(**over: object) -> dict[str, object]:
    return {"id": "price_1", "currency": "usd", "product": "prod_1", "billing_scheme": "per_unit",
            "unit_amount": None, "unit_amount_decimal": "0.0025", "transform_quantity": None,
            "recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_1"}, **over}


def test_metered_prices_map_to_walletflow_prices() -> None:
    assert mapping.map_price(price(), METERS) == ({
        "event_type": "tokens", "asset": "USD", "quantity_field": "input_tokens", "model": "per_unit",
        "unit_price": "0.0025"}, None)
    counted, _ = mapping.map_price(price(recurring={"interval": "month", "usage_type": "metered", "meter": "mtr_c"},
                                         unit_amount_decimal="5.000"), METERS)
    assert counted == {"event_type": "calls", "asset": "USD", "model": "per_unit", "unit_price": "5"}
    tiers = [{"up_to": 1000, "unit_amount": 2, "unit_amount_decimal": "2", "flat_amount": None},
             {"up_to": None, "unit_amount": None, "unit_amount_decimal": "1.5", "flat_amount": 100}]
    graduated, _ = mapping.map_price(price(billing_scheme="tiered", tiers_mode="graduated", tiers=tiers), METERS)
    assert graduated is not None and graduated["model"] == "tiered"
    assert graduated["tiers"] == [{"up_to": 1000, "unit_price": "2"}, {"up_to": None, "unit_price": "1.5", "flat_amount": 100}]
    volume, _ = mapping.map_price(price(billing_scheme="tiered", tiers_mode="volume", tiers=tiers), METERS)
    assert volume is not None and volume["model"] == "volume"


@pytest.mark.parametrize(("over", "reason"), [
    ({"recurring": {"interval": "month", "usage_type": "licensed"}}, "licensed price (not metered)"),
    ({"recurring": None}, "one-time price (not metered)"),
    ({"recurring": {"interval": "month", "usage_type": "metered"}},
     "metered price without a billing meter: no event name to map usage to"),
    ({"transform_quantity": {"divide_by": 1000, "round": "up"}}, "transform_quantity is not supported"),
    ({"recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_l"}},
     "meter aggregation 'last' is not supported"),
    ({"recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_x"}}, "meter mtr_x not found"),
])
def test_prices_that_cannot_be_mapped_are_reported_with_the_reason(over: dict[str, object], reason: str) -> None:
    assert mapping.map_price(price(**over), METERS) == (None, reason)


def test_product_codes_are_valid_and_distinct_for_ids_that_differ_only_in_case() -> None:
    a, b = mapping.product_code_for("prod_AbC"), mapping.product_code_for("prod_abc")
    assert a != b and a.startswith("stripe-prod_abc-") and a == a.lower() and len(a) <= 64


def test_the_token_bucket_keeps_to_its_rate() -> None:
    now = [0.0]
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        assert len(sleeps) < 10_000, "the bucket spins"
        now[0] += seconds

    async def run() -> None:
        bucket = TokenBucket(25, clock=lambda: now[0])
        original = asyncio.sleep
        asyncio.sleep = fake_sleep  # type: ignore[assignment]
        try:
            for _ in range(125):
                await bucket.acquire()
        finally:
            asyncio.sleep = original  # type: ignore[assignment]

    asyncio.run(run())
    # A burst of 25, then 100 more at 25 a second: four seconds of waiting, no less.
    assert now[0] == pytest.approx(4.0, abs=0.05)
    assert len(sleeps) < 200
