"""Usage scoring on a real database (PostgreSQL and SQLite): a planted leaked-key spike is
caught, a normal customer is not. Usage goes in through the real ingest path (priced and debited)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.catalog.service import Catalog
from walletflow.db.types import utcnow
from walletflow.ledger.service import Ledger
from walletflow.risk.usage import UsageThresholds, score_usage, usage_features
from walletflow.usage.service import Usage

pytestmark = pytest.mark.asyncio(loop_scope="session")

DAY = dt.timedelta(days=1)


async def _setup(engine: AsyncEngine, ledger: Ledger, usd: str) -> tuple[Usage, str]:
    """A product charging 10 minor units per call, for an event type no other test uses."""
    catalog = Catalog(engine)
    event_type = f"llm.call.{uuid.uuid4().hex[:8]}"
    code = f"risk-{uuid.uuid4().hex[:8]}"
    await catalog.create_product(code, code)
    version = await catalog.create_version(
        code, [{"event_type": event_type, "asset": usd, "model": "per_unit", "unit_price": "10"}]
    )
    await catalog.publish(code, version.version)
    return Usage(engine, catalog), event_type


async def _customer_with_history(ledger: Ledger, usage: Usage, usd: str, event_type: str, period_start: dt.datetime,
                                 calls_per_day: int = 20) -> uuid.UUID:
    customer = (await ledger.create_customer(f"usage-{uuid.uuid4().hex}")).id
    await ledger.credit(customer, usd, 10_000_000, f"fund-{customer}")
    events = []
    for day in range(1, 11):  # ten ordinary days before the period, all on model "small"
        for i in range(calls_per_day):
            at = period_start - day * DAY + dt.timedelta(minutes=30 * i)
            events.append({"id": f"b-{day}-{i}", "customer_id": customer, "event_type": event_type,
                           "occurred_at": at, "data": {"model": "small"}})
    results = await usage.ingest(events)
    assert {r.status for r in results} == {"debited"}
    return customer


async def test_a_leaked_key_spike_is_rejected_and_a_normal_day_approved(engine: AsyncEngine, ledger: Ledger, usd: str) -> None:
    usage, event_type = await _setup(engine, ledger, usd)
    period_start = (utcnow() - DAY).replace(microsecond=0)
    period_end = period_start + DAY
    normal = await _customer_with_history(ledger, usage, usd, event_type, period_start)
    leaked = await _customer_with_history(ledger, usage, usd, event_type, period_start)

    # The normal customer: an ordinary day (a little busier than usual).
    await usage.ingest([{"id": f"p-{i}", "customer_id": normal, "event_type": event_type,
                         "occurred_at": period_start + dt.timedelta(minutes=40 * i), "data": {"model": "small"}}
                        for i in range(25)])
    # The leaked key: 30x the calls, on a model the customer never used, at night.
    await usage.ingest([{"id": f"p-{i}", "customer_id": leaked, "event_type": event_type,
                         "occurred_at": period_start + dt.timedelta(seconds=140 * i), "data": {"model": "large"}}
                        for i in range(600)])

    async with engine.connect() as conn:
        calm = await usage_features(conn, normal, usd, period_start, period_end)
        spike = await usage_features(conn, leaked, usd, period_start, period_end)

    assert (calm.spend, calm.events, calm.new_models) == (250, 25, 0)
    assert calm.baseline_spend == pytest.approx(200) and calm.baseline_events == pytest.approx(20)
    assert calm.history_days >= 9.9
    assert (spike.spend, spike.events, spike.new_models, spike.event_types) == (6000, 600, 1, 1)

    thresholds = UsageThresholds(review_ratio=5, reject_ratio=20, min_spend=100)
    approved = score_usage(calm, thresholds)
    assert (approved.decision, approved.reasons) == ("approve", [])
    rejected = score_usage(spike, thresholds)
    assert rejected.decision == "reject" and rejected.reasons[0] == "usage_spike"
    assert "new_models" in rejected.reasons and "event_rate_spike" in rejected.reasons
    assert "30.0x the baseline" in rejected.explanations[0]
    assert rejected.features["spend"] == 6000  # stored with the decision for the operator

    # Under the reject ratio, the spike alone is a review; corroborated (new model, event rate)
    # it adds up to a reject. Below the spend floor it is nothing at all.
    lenient = UsageThresholds(review_ratio=5, reject_ratio=50, min_spend=100)
    alone = score_usage(replace(spike, new_models=0, events=30), lenient)
    assert (alone.decision, alone.reasons) == ("review", ["usage_spike"])
    assert score_usage(spike, lenient).decision == "reject"
    assert score_usage(spike, UsageThresholds(min_spend=10_000)).decision == "approve"


async def test_a_new_customer_without_a_baseline_is_not_called_a_spike(engine: AsyncEngine, ledger: Ledger, usd: str) -> None:
    usage, event_type = await _setup(engine, ledger, usd)
    period_start = (utcnow() - DAY).replace(microsecond=0)
    customer = (await ledger.create_customer(f"usage-{uuid.uuid4().hex}")).id
    await ledger.credit(customer, usd, 1_000_000, f"fund-{customer}")
    await usage.ingest([{"id": f"p-{i}", "customer_id": customer, "event_type": event_type,
                         "occurred_at": period_start + dt.timedelta(minutes=2 * i)} for i in range(300)])
    async with engine.connect() as conn:
        features = await usage_features(conn, customer, usd, period_start, period_start + DAY)
    assert (features.spend, features.baseline_spend, features.history_days) == (3000, 0.0, 0.0)
    assert score_usage(features, UsageThresholds(min_spend=100)).decision == "approve"
