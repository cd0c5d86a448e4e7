"""Usage scoring: the rules check, and freezing a spiking wallet exactly once per period."""

from __future__ import annotations

import datetime as dt
import random
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import unique_code
from tests.settlement.helpers import events_with_key, insert_event, ledger_at
from walletflow.errors import WalletFrozen
from walletflow.ledger.service import Ledger
from walletflow.risk.usage import UsageThresholds
from walletflow.settlement.periods import Period
from walletflow.settlement.scoring import (
    AssetUsage,
    CustomerUsage,
    SpikeRules,
    apply_decisions,
    collect_usage,
    combine,
    risk_flags,
    usage_reviews,
)


def _usage(spend: int, baseline_total: int, periods: int = 7) -> CustomerUsage:
    return CustomerUsage(uuid.uuid4(), "2026-11-27", "active", (AssetUsage("USD", spend, baseline_total, periods),))


def test_the_rules_flag_a_spike_against_the_customers_own_baseline() -> None:
    rules = SpikeRules(factor=10, min_amount=10_000)
    steady, spike, small, newcomer = _usage(12_000, 7 * 10_000), _usage(200_000, 7 * 10_000), _usage(9_999, 0), _usage(10_000, 0)
    decisions = {d.customer_id: d for d in rules.score_usage([steady, spike, small, newcomer])}
    assert decisions[steady.customer_id].action == "ok" and decisions[steady.customer_id].score < 50
    assert decisions[spike.customer_id].action == "freeze" and decisions[spike.customer_id].score == 100
    assert "more than 10x" in decisions[spike.customer_id].reasons[0]
    assert decisions[small.customer_id].action == "ok"  # under the floor: no spike however new
    assert decisions[newcomer.customer_id].action == "freeze"  # no history and at the floor


def test_exactly_the_factor_is_not_a_spike() -> None:
    rules = SpikeRules(factor=10, min_amount=1)
    # An average of 7,000 per period over 7 periods: 70,000 is exactly 10x, 70,001 is above.
    at_factor, above = _usage(70_000, 49_000), _usage(70_001, 49_000)
    assert rules.score_usage([at_factor])[0].action == "ok"
    assert rules.score_usage([above])[0].action == "freeze"


@pytest.mark.asyncio(loop_scope="session")
async def test_a_spiking_wallet_is_frozen_once_and_a_steady_one_is_not(engine: AsyncEngine) -> None:
    day = Period(dt.datetime(2018, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=random.randrange(365)), "day")
    usd = unique_code("U")
    setup = ledger_at(engine, day.shift(-8).start)
    await setup.create_asset(usd, "Test dollars", 2, "fiat")
    steady = (await setup.create_customer(f"steady-{uuid.uuid4().hex}")).id
    leaked = (await setup.create_customer(f"leaked-{uuid.uuid4().hex}")).id
    for customer in (steady, leaked):
        await setup.credit(customer, usd, 1_000_000, f"fund-{customer}")
    # A week of 1,000 a day each, then the period: 1,500 (steady) and 60,000 (a leaked key).
    for back in range(1, 8):
        at = day.shift(-back).start + dt.timedelta(hours=3)
        for customer in (steady, leaked):
            await ledger_at(engine, at).debit(customer, usd, 1_000, f"u-{customer}-{back}")
    at = day.start + dt.timedelta(hours=5)
    await ledger_at(engine, at).debit(steady, usd, 1_500, f"u-{steady}-now")
    await ledger_at(engine, at).debit(leaked, usd, 60_000, f"u-{leaked}-now")

    usage = [u for u in await collect_usage(engine, day, 7) if u.customer_id in (steady, leaked)]
    by_id = {u.customer_id: u for u in usage}
    assert by_id[leaked].assets == (AssetUsage(usd, 60_000, 7_000, 7),)
    assert by_id[steady].assets == (AssetUsage(usd, 1_500, 7_000, 7),)

    rules = SpikeRules(factor=10, min_amount=10_000)
    decisions = rules.score_usage(usage)
    ledger = Ledger(engine)
    now = dt.datetime.now(dt.UTC)
    for _ in range(2):  # a retried activity: nothing twice
        flags = await apply_decisions(engine, ledger, day, usage, decisions, now)
        assert [(f.customer_id, f.action) for f in flags] == [(str(leaked), "frozen")]

    assert (await ledger.get_customer(leaked)).status == "frozen"
    assert (await ledger.get_customer(steady)).status == "active"
    with pytest.raises(WalletFrozen):
        await ledger.debit(leaked, usd, 1, f"after-{uuid.uuid4().hex}")
    frozen_events = await events_with_key(engine, f"wallet.frozen:usage:{day.key}:{leaked}")
    review_events = await events_with_key(engine, f"review.required:usage:{day.key}:{leaked}")
    assert len(frozen_events) == 1 and len(review_events) == 1
    assert review_events[0].data["kind"] == "usage_spike" and review_events[0].data["score"] == 100
    async with engine.connect() as conn:
        reviews = (await conn.execute(select(usage_reviews).where(usage_reviews.c.period == day.key))).all()
    assert [(r.customer_id, r.frozen_at is not None) for r in reviews] == [(leaked, True)]

    # An operator unfreezes after review: settling the same period again does not refreeze.
    await ledger.unfreeze(leaked)
    await apply_decisions(engine, ledger, day, usage, decisions, now)
    assert (await ledger.get_customer(leaked)).status == "active"


async def test_the_risk_usage_scorer_freezes_what_the_spend_rules_miss(engine: AsyncEngine) -> None:
    """A spike under the rules' floor (10,000) but 60x the customer's own hourly baseline, on
    events: the risk module's scorer flags it and settlement freezes the wallet."""
    hour = Period(dt.datetime(2017, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=random.randrange(365 * 24)), "hour")
    usd = unique_code("U")
    setup = ledger_at(engine, hour.start - dt.timedelta(days=11))
    await setup.create_asset(usd, "Test dollars", 2, "fiat")
    customer = (await setup.create_customer(f"spiky-{uuid.uuid4().hex}")).id
    await setup.credit(customer, usd, 1_000_000, f"fund-{customer}")
    for n in range(120):  # ten days of one 100-cent call every two hours
        await insert_event(engine, customer, usd, 100, hour.start - dt.timedelta(hours=2 * n + 2))
    at = hour.start + dt.timedelta(minutes=20)
    await ledger_at(engine, at).debit(customer, usd, 3_000, f"u-{customer}-spike")  # 30 calls in the hour
    for _ in range(30):
        await insert_event(engine, customer, usd, 100, at)

    usage = [u for u in await collect_usage(engine, hour, 7) if u.customer_id == customer]
    rules = SpikeRules(factor=10, min_amount=10_000).score_usage(usage)
    assert [d.action for d in rules] == ["ok"]  # under the rules' floor
    flagged = await risk_flags(engine, hour, usage, UsageThresholds(review_ratio=5, reject_ratio=20, min_spend=1_000))
    decisions = combine(rules, flagged)
    assert [d.action for d in decisions] == ["freeze"] and decisions[0].score == 100
    assert any("60.0x the baseline" in reason for reason in decisions[0].reasons), decisions[0].reasons

    ledger = Ledger(engine)
    flags = await apply_decisions(engine, ledger, hour, usage, decisions, dt.datetime.now(dt.UTC))
    assert [(f.customer_id, f.action) for f in flags] == [(str(customer), "frozen")]
    assert (await ledger.get_customer(customer)).status == "frozen"
